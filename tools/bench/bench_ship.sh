#!/bin/sh
# bench_ship.sh - kjournal ship against kjournal publish, side by side.
#
#   tools/bench/bench_ship.sh [BUILD_DIR] [DIR]
#
# BUILD_DIR (default ./build) holds a Release build (kjournald, kjournal,
# kjournal-publish, kjournal-ship). DIR (default /tmp/kjournal-bench-ship)
# receives a kyuubi_session day file of LINES lines (default 1,000,000:
# created, opened and closed lines of LINES/3 sessions, ~700 bytes each, as
# Kyuubi writes them), made once and reused.
#
# Each round replays the whole file into a fresh kjournald (its own journal,
# same flags) twice, alternating: once with `kjournal publish --quiet FILE`,
# once with `kjournal ship --once --state S ROOT`, and prints lines/s end to
# end (first byte read to last ack), the ratio ship/publish, and the peak RSS
# of each client (ru_maxrss). Both use the publisher's defaults plus EXTRA
# (default "--batch 100 --timeout 10000": on a loaded machine a commit of a
# large journal can take seconds, and a shorter timeout makes Lazy Pirate
# resend windows kjournald already holds). Every run is checked: every line
# answered, and the journal holds every line that was not rejected (the
# rejections, if any, are counted and shown). SHIP_EXTRA adds flags to ship only (e.g. "--chunk 16384").
set -eu

BUILD=${1:-./build}
DIR=${2:-/tmp/kjournal-bench-ship}
LINES=${LINES:-1000000}
ROUNDS=${ROUNDS:-1}
EXTRA=${EXTRA:---batch 100 --timeout 10000}
SHIP_EXTRA=${SHIP_EXTRA:-}

for p in tools/kjournald/kjournald tools/kjournal/kjournal tools/kjournal/kjournal-ship; do
    [ -x "$BUILD/$p" ] || { echo "bench_ship: no $BUILD/$p; build with -DCMAKE_BUILD_TYPE=Release" >&2; exit 2; }
done

exec python3 - "$BUILD" "$DIR" "$LINES" "$ROUNDS" "$EXTRA" "$SHIP_EXTRA" <<'PY'
import json, os, shutil, socket, sqlite3, subprocess, sys, time

build, top, lines, rounds, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split()
ship_extra = sys.argv[6].split()
kjd = os.path.join(build, "tools/kjournald/kjournald")
kj = os.path.join(build, "tools/kjournal/kjournal")
root = os.path.join(top, "events")
day = os.path.join(root, "kyuubi_session", "day=20251129")
path = os.path.join(day, "server-bench.json")

def generate():
    os.makedirs(day, exist_ok=True)
    tmp = path + ".tmp"
    t0 = 1764374400000
    with open(tmp, "w") as f:
        n = 0
        s = 0
        while n < lines:
            sid = "%08x-2d4b-4c1e-9a7f-%012x" % (s, s)
            ev = {"sessionId": sid, "clientVersion": 9, "sessionType": "INTERACTIVE",
                  "sessionName": "", "user": "user%d" % (s % 97), "clientIP": "10.244.3.15",
                  "serverIP": "10.244.1.23:10009",
                  "conf": {"kyuubi.session.real.user": "user%d" % (s % 97),
                           "kyuubi.client.version": "1.10.0", "use:database": "default",
                           "kyuubi.client.ipAddress": "10.244.3.15",
                           "kyuubi.session.connection.url": "10.244.1.23:10009",
                           "kyuubi.server.ipAddress": "10.244.1.23"},
                  "eventTime": t0 + s * 10 + 24, "startTime": t0 + s * 10, "remoteSessionId": "",
                  "engineId": "", "engineName": "", "engineUrl": "", "openedTime": -1,
                  "endTime": -1, "totalOperations": 0, "exception": None,
                  "eventType": "kyuubi_session"}
            for phase in range(3):
                if n == lines:
                    break
                if phase == 1:
                    ev.update(openedTime=t0 + s * 10 + 5000, engineId="spark-%032x" % (s // 10),
                              remoteSessionId=sid,
                              engineName="kyuubi_USER_SPARK_SQL_%s_default_%s" % (ev["user"], sid),
                              engineUrl="http://spark-%x-driver-svc.kyuubi.svc:4040" % (s // 10))
                if phase == 2:
                    ev["endTime"] = t0 + s * 10 + 60000
                f.write(json.dumps(ev, separators=(",", ":")) + "\n")
                n += 1
            s += 1
    os.rename(tmp, path)

if not os.path.exists(path):
    print("generating %d lines in %s ..." % (lines, path), flush=True)
    generate()
size = os.path.getsize(path)
print("file: %d lines, %.0f MiB" % (lines, size / 1048576))

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def run(kind, r):
    work = os.path.join(top, "run-%s-%d" % (kind, r))
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    port = free_port()
    ep = "tcp://127.0.0.1:%d" % port
    journal = os.path.join(work, "journal.db")
    d = subprocess.Popen([kjd, "--journal", journal, "--listen", ep, "--log-level", "warn"],
                         stderr=open(os.path.join(work, "kjournald.log"), "w"))
    while True:
        s = socket.socket()
        if s.connect_ex(("127.0.0.1", port)) == 0:
            s.close(); break
        s.close(); time.sleep(0.02)
    if kind == "publish":
        argv = [kj, "publish", "--endpoint", ep, "--quiet"] + extra + [path]
    else:
        argv = [kj, "ship", "--endpoint", ep, "--state", os.path.join(work, "state"),
                "--once", "--log-level", "warn"] + extra + ship_extra + [root]
    t = time.perf_counter()
    log = os.path.join(work, kind + ".log")
    p = subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    rc = os.waitstatus_to_exitcode(status)
    d.terminate(); d.wait()
    n = sqlite3.connect("file:%s?mode=ro" % journal, uri=True).execute("SELECT count(*) FROM events").fetchone()[0]
    text = open(log, errors="replace").read()
    rejected = text.count(": rejected ") if kind == "publish" else text.count("line rejected")
    if rc not in (0, 1) or n + rejected != lines:
        sys.exit("bench_ship: %s exited %d with %d of %d events in the journal, %d rejected (see %s)"
                 % (kind, rc, n, lines, rejected, work))
    if rejected:
        codes = sorted(set(l.split(":")[-2].split()[-1] for l in text.splitlines() if "rejected" in l and ":" in l))
        print("  %s: %d lines rejected (%s)" % (kind, rejected, ", ".join(codes)[:200]))
    shutil.rmtree(work, ignore_errors=True)
    return lines / wall, ru.ru_maxrss / 1024.0

res = {"publish": [], "ship": []}
for r in range(rounds):
    for kind in (("publish", "ship") if r % 2 == 0 else ("ship", "publish")):
        lps, rss = run(kind, r)
        res[kind].append((lps, rss))
        print("round %d %-7s %9.0f lines/s  peak RSS %7.1f MiB" % (r + 1, kind, lps, rss), flush=True)
best = {k: max(v) for k, v in res.items()}
print("best: publish %.0f lines/s (%.1f MiB), ship %.0f lines/s (%.1f MiB): ship/publish %.2fx"
      % (best["publish"][0], best["publish"][1], best["ship"][0], best["ship"][1],
         best["ship"][0] / best["publish"][0]))
PY
