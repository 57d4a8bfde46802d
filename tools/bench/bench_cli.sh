#!/bin/sh
# bench_cli.sh - times the kjournal read commands on a large journal.
#
#   tools/bench/bench_cli.sh [BUILD_DIR] [JOURNAL]
#
# BUILD_DIR (default ./build-rel) holds a Release build with kjournal and
# gen_journal; JOURNAL (default /tmp/kjournal-bench/journal.db) is built with
# gen_journal (1,000,000 sessions, 2,000,000 events) when it does not exist.
# Each figure is the median wall time of RUNS runs of the whole process
# (start, open, query, print to /dev/null, exit) after one warm-up run, so
# the journal is in the page cache: what an operator sees on a second try.
# Memory: VmRSS / VmHWM sampled from /proc while events -o json streams the
# whole journal (flat: the same at 10% and at 90%).
set -eu

BUILD=${1:-./build-rel}
JOURNAL=${2:-/tmp/kjournal-bench/journal.db}
RUNS=${RUNS:-7}
KJ=$BUILD/tools/kjournal/kjournal
GEN=$BUILD/tools/bench/gen_journal

[ -x "$KJ" ] || { echo "bench_cli: no $KJ; build with -DCMAKE_BUILD_TYPE=Release" >&2; exit 2; }
if [ ! -f "$JOURNAL" ]; then
    mkdir -p "$(dirname "$JOURNAL")"
    "$GEN" "$JOURNAL"
fi

exec python3 - "$KJ" "$JOURNAL" "$RUNS" <<'PY'
import json, os, statistics, subprocess, sys, time

kj, journal, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])

def run(args, stdout=subprocess.DEVNULL, journal_arg=True):
    """Runs kjournal ARGS --journal J; returns (wall ms, CPU ms, peak RSS KiB)."""
    argv = [kj, args[0]] + (["--journal", journal] if journal_arg else []) + args[1:]
    t = time.perf_counter()
    p = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = (time.perf_counter() - t) * 1000
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode()
    p.stderr.close()
    if p.returncode != 0:
        sys.exit("bench_cli: kjournal %s failed (%d): %s" % (" ".join(args), p.returncode, err))
    return wall, (ru.ru_utime + ru.ru_stime) * 1000, ru.ru_maxrss


def timed(args, target_ms, journal_arg=True):
    run(args, journal_arg=journal_arg)
    rs = [run(args, journal_arg=journal_arg) for _ in range(runs)]
    wall = statistics.median(r[0] for r in rs)
    cpu = statistics.median(r[1] for r in rs)
    best = min(r[0] for r in rs)
    verdict = "" if target_ms is None else (
        "target < %d ms: %s" % (target_ms, "ok" if wall < target_ms else "MISSED"))
    print("  %-44s wall %7.1f ms (best %6.1f)  cpu %6.1f ms  %s"
          % ("kjournal " + " ".join(args)[:34], wall, best, cpu, verdict))


stats = json.loads(subprocess.run([kj, "stats", "--journal", journal, "-o", "json"],
                                  capture_output=True, check=True).stdout)
print("journal %s: %d sessions (%d open), %d events, %d actions, %.0f MiB + WAL %.0f MiB"
      % (journal, stats["sessions"], stats["sessions_open"], stats["events"],
         stats["reconcile_actions"], stats["file_bytes"] / 2**20, stats["wal_bytes"] / 2**20))
# A session with reconcile actions (gen_journal tags engines "tag-SESSION_ID").
act = json.loads(subprocess.run(
    [kj, "actions", "--journal", journal, "-o", "json", "-r", "-n", "1"],
    capture_output=True, check=True).stdout)
sid = act["engine_tag"][len("tag-"):]

print("median of %d runs each (whole process: start, open, query, print to /dev/null):" % runs)
timed(["--version"], None, journal_arg=False)
timed(["sessions", "--state", "open", "-n", "100"], 200)
timed(["show", sid], 10)
timed(["show", sid, "-o", "json"], 10)
timed(["events", "--since", "-1h"], 200)
timed(["events", "--since", "-1h", "-o", "json"], 200)
timed(["stats"], 200)

# Memory while streaming every event as JSON: flat, however many events.
# wait4's ru_maxrss would report the forking parent's size, so the stream's
# own VmRSS / VmHWM are sampled from /proc while it runs.
argv = [kj, "events", "--journal", journal, "-o", "json"]
t0 = time.perf_counter()
p = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
samples = []
while p.poll() is None:
    try:
        with open("/proc/%d/status" % p.pid) as f:
            st = dict(l.split(":", 1) for l in f if l.startswith(("VmRSS", "VmHWM")))
        samples.append((time.perf_counter() - t0, int(st["VmRSS"].split()[0]),
                        int(st["VmHWM"].split()[0])))
    except (OSError, KeyError, ValueError):
        pass
    time.sleep(0.05)
wall = time.perf_counter() - t0
if p.returncode != 0 or len(samples) < 4:
    sys.exit("bench_cli: events -o json failed or ended too soon")
at = lambda frac: samples[min(len(samples) - 1, int(len(samples) * frac))][1]
print("events -o json over all %d events: %.1f s (%.0f events/s); VmRSS at 10%% %d KiB,"
      " 50%% %d KiB, 90%% %d KiB; peak (VmHWM) %d KiB"
      % (stats["events"], wall, stats["events"] / wall, at(0.1), at(0.5), at(0.9),
         samples[-1][2]))
PY
