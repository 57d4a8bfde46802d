#!/usr/bin/env python3
"""Running orphans do not grow the audit (issue 10, item 18), with kube-sim
and kjournald as real processes.

kjournald resyncs every second against 20 live pods that no session in the
journal uses (--running-orphans report, the default):

1. after many passes the audit holds one report_orphan row per pod, and
   /metrics says 20 running orphans;
2. a change to an orphan (its phase goes Unknown) is recorded once more;
3. orphans that go and come are counted: 5 deleted, 1 new -> 16, the new one
   recorded once; still no row repeated by the passes after;
4. `kjournal recover --dry-run` lists the 16 and says so.
"""
import json
import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.environ.get("KJ_SOURCE_DIR", "../.."), "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kjtest  # noqa: E402
from recoverlib import (KubeSim, NS, actions, check, cleanup, fail, kjournal, pod,  # noqa: E402
                        quiet_env, runs, write_journal)

N = 20
TIMEOUT = 90.0


def wait_for(what, cond, timeout=TIMEOUT):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    fail("timed out waiting for " + what)


def gauge(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=30) as r:
        text = r.read().decode()
    m = re.search(r"^kjournal_reconcile_running_orphans (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


def reports(wd, journal):
    return [a for a in actions(wd, journal) if a["action"] == "report_orphan"]


def passes_after(wd, journal, n):
    """Waits for n more passes that finished, and returns."""
    def finished():
        return [r for r in runs(wd, journal) if r.get("status") != "running"]
    start = len(finished())
    wait_for("%d more passes" % n, lambda: len(finished()) >= start + n)


def main():
    wd = kjtest.tmpdir("kj-orphans-")
    sim = KubeSim(wd).start()
    d = None
    try:
        sim.seed([pod("orphan-%02d" % i, tag="t-orphan-%02d" % i, fins=()) for i in range(N)])
        journal = write_journal(wd, [])
        mport = kjtest.free_port()
        zport = kjtest.free_port()
        log = os.path.join(wd, "kjournald.log")
        d = kjtest.start([kjtest.program("kjournald"), "--journal", journal,
                          "--listen", "tcp://127.0.0.1:%d" % zport, "--server", sim.url,
                          "--namespace", NS, "--resync", "1s",
                          "--metrics", "127.0.0.1:%d" % mport], log, env=quiet_env(wd))
        kjtest.wait_port(mport, d)

        # 1. many passes, one row per orphan
        wait_for("/metrics to count %d running orphans" % N, lambda: gauge(mport) == N)
        passes_after(wd, journal, 5)
        rows = reports(wd, journal)
        n_runs = len(runs(wd, journal))
        by_pod = {}
        for a in rows:
            by_pod.setdefault(a["pod"], []).append(a)
        check(len(rows) == N and len(by_pod) == N,
              "after %d passes: %d report_orphan rows for %d pods, expected one per pod (%d)"
              % (n_runs, len(rows), len(by_pod), N))
        check(all(a.get("message") == "phase Running" and a.get("result") == "reported"
                  for a in rows), "report rows: %s" % rows[:3])
        print("%d passes, %d running orphans, %d report rows" % (n_runs, N, len(rows)))

        # 2. a change is recorded once
        sim.call("PATCH", "/api/v1/namespaces/%s/pods/orphan-03/status" % NS,
                 {"status": {"phase": "Unknown"}}, ctype="application/merge-patch+json")
        wait_for("the phase change to be recorded",
                 lambda: any(a["pod"] == "orphan-03" and a.get("message") == "phase Unknown"
                             for a in reports(wd, journal)))
        passes_after(wd, journal, 3)
        rows = reports(wd, journal)
        check(len(rows) == N + 1, "after the phase change: %d rows, expected %d" % (len(rows), N + 1))

        # 3. orphans go and come
        for i in range(5):
            sim.delete("orphan-%02d" % (10 + i))
        sim.seed([pod("orphan-new", tag="t-orphan-new", fins=())])
        wait_for("/metrics to count %d running orphans" % (N - 4), lambda: gauge(mport) == N - 4)
        passes_after(wd, journal, 3)
        rows = reports(wd, journal)
        check(len(rows) == N + 2, "after 5 went and 1 came: %d rows, expected %d"
              % (len(rows), N + 2))
        check(sum(a["pod"] == "orphan-new" for a in rows) == 1,
              "the new orphan: %s" % [a for a in rows if a["pod"] == "orphan-new"])
        check(gauge(mport) == N - 4, "/metrics: %s running orphans" % gauge(mport))

        rc = kjtest.stop(d)
        d = None
        check(rc == 0, "kjournald exit code %d" % rc)

        # 4. the dry run lists the ones running now
        r = kjournal(wd, "recover", "--journal", journal, "--server", sim.url, "--namespace", NS,
                     "--dry-run", "-o", "json", "--quiet")
        check(r.returncode == 0, "kjournal recover --dry-run: %s" % r.stderr)
        planned = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        listed = sorted(a["pod"] for a in planned if a["action"] == "report_orphan")
        check(len(listed) == N - 4 and "orphan-new" in listed and "orphan-10" not in listed,
              "the dry run lists %s" % listed)
        check("%d running orphans" % (N - 4) in r.stderr,
              "the dry run does not count them: %s" % r.stderr)
        h = kjournal(wd, "actions", "--help")
        check("kjournal_reconcile_running_orphans" in h.stdout and "--dry-run" in h.stdout,
              "kjournal actions --help does not say how to see them")
    finally:
        if d is not None:
            kjtest.stop(d)
        sim.stop()
    cleanup(wd)
    print("ok: one report per orphan and per change, counted in /metrics")


if __name__ == "__main__":
    main()
