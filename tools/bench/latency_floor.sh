#!/bin/sh
# latency_floor.sh - ack latency of kjournald beside reference servers, in
# the same minutes, on the same disk, so that a figure can be read against
# what this machine allows at all.
#
#   tools/bench/latency_floor.sh [BUILD_DIR] [DIR]
#
# Targets, each answering bench_ingest's open-loop latency client
# (--latency-only: one event a request, ROUNDS rounds, targets alternating):
#   echo             ref_server echo: client, libzmq and loopback, no journal
#   prototype        ref_server prototype on DIR: issue 15's one-thread group
#                    commit of events + a sessions upsert, WAL, synchronous=FULL
#   prototype-nockpt the same, with SQLite's checkpoints off (the WAL only grows)
#   kjournald        kjournald on DIR
#   prototype-tmpfs, kjournald-tmpfs: the same two with the files on TMPFS,
#                    where fsync costs nothing (left out without TMPFS)
# BUILD_DIR (default ./build-rel) is a Release build; DIR (default /tmp) is on
# the disk to measure. Environment: ROUNDS (3), RATES (1000,5000), SECS (10),
# TMPFS (/dev/shm). Prints p50/p99/p99.9/max per target and rate, each as the
# range over the rounds; exits 1 if any request went unanswered.
set -eu

BUILD=${1:-./build-rel}
DIR=${2:-/tmp}
for p in "$BUILD/tools/bench/bench_ingest" "$BUILD/tools/bench/ref_server" \
         "$BUILD/tools/kjournald/kjournald"; do
    [ -x "$p" ] || { echo "latency_floor: no $p; build first" >&2; exit 2; }
done

exec python3 - "$BUILD" "$DIR" "${TMPFS:-/dev/shm}" "${ROUNDS:-3}" "${RATES:-1000,5000}" \
    "${SECS:-10}" <<'PY'
import os, re, shutil, socket, subprocess, sys, tempfile, time

build, disk, tmpfs, rounds, rates, secs = sys.argv[1:7]
bench = os.path.join(build, "tools/bench/bench_ingest")
ref = os.path.join(build, "tools/bench/ref_server")
kjd = os.path.join(build, "tools/kjournald/kjournald")

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def wait_port(port, proc):
    for _ in range(6000):  # up to a minute: a busy machine, a sanitized build
        if proc.poll() is not None:
            sys.exit("latency_floor: ref_server exited (%d)" % proc.returncode)
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.01)
    sys.exit("latency_floor: ref_server did not listen")

def run(target):
    """One bench_ingest latency run against target; its output."""
    where = tmpfs if target.endswith("-tmpfs") else disk
    work = tempfile.mkdtemp(prefix="latency_floor.", dir=where)
    args = [bench, "--latency-only", "--rate", rates, "--seconds", secs, "--dir", work]
    server = None
    try:
        if target.startswith("kjournald"):
            args += ["--kjournald", kjd]
        else:
            port = free_port()
            endpoint = "tcp://127.0.0.1:%d" % port
            cmd = [ref, "echo", endpoint] if target == "echo" else \
                [ref, "prototype", endpoint, os.path.join(work, "prototype.db")]
            if target == "prototype-nockpt":
                cmd.append("--no-checkpoint")
            server = subprocess.Popen(cmd)
            wait_port(port, server)
            args += ["--endpoint", endpoint]
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout
    finally:
        if server:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)

targets = ["echo", "prototype", "prototype-nockpt", "kjournald"]
if os.path.isdir(tmpfs):
    targets += ["prototype-tmpfs", "kjournald-tmpfs"]
else:
    print("latency_floor: no %s: the tmpfs targets are left out" % tmpfs, file=sys.stderr)
res, short = {}, 0
line = re.compile(r"acked (\d+) of (\d+): p50 ([\d.]+) ms, p99 ([\d.]+) ms, "
                  r"p99.9 ([\d.]+) ms, max ([\d.]+) ms")
for r in range(int(rounds)):
    for t in targets:
        rate = None
        for l in run(t).splitlines():
            m = re.match(r"latency: offered (\d+)", l)
            if m:
                rate = int(m.group(1))
            m = line.search(l)
            if m and rate:
                got, n = int(m.group(1)), int(m.group(2))
                short += n - got
                res.setdefault((t, rate), []).append([float(x) for x in m.groups()[2:]])
        print("round %d/%s: %s done" % (r + 1, rounds, t), file=sys.stderr, flush=True)

def span(v):
    lo, hi = min(v), max(v)
    return "%.2f" % lo if lo == hi else "%.2f-%.2f" % (lo, hi)

print("ack latency, ms (range over %s rounds of %s s, one event a request)" % (rounds, secs))
print("%-18s %7s %12s %12s %12s %12s" % ("target", "ev/s", "p50", "p99", "p99.9", "max"))
for t in targets:
    for rate in sorted({k[1] for k in res if k[0] == t}):
        v = res[(t, rate)]
        print("%-18s %7d %12s %12s %12s %12s" % ((t, rate) + tuple(span([x[i] for x in v])
                                                               for i in range(4))))
if short:
    sys.exit("latency_floor: %d requests went unanswered" % short)
PY
