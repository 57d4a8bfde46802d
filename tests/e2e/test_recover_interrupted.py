#!/usr/bin/env python3
"""A reconcile pass killed before it ends (issue 10, item 10), and the
journal's writer lock between kjournald and `kjournal recover` (item 2).

1. kjournald's recovery pass waits on a slow API server (kube-sim latency);
   while `kjournal actions --runs` shows it `running`, `kjournal recover`
   on the journal exits 9 (the writer lock), and kjournald is killed
   (SIGKILL). Restarted, kjournald marks that run `interrupted` at once
   (finished at its start: it recorded no action) and its own pass converges.
2. The same for `kjournal recover`: killed mid-pass (kjournald on the
   journal meanwhile exits 9, naming its pid); the next `kjournal recover`
   marks the run `interrupted`, says so, and converges.
3. `kjournal recover --dry-run` takes no lock: it runs beside kjournald.
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recoverlib as rl  # noqa: E402
import kjtest  # noqa: E402

DEADLINE = 60
SLOW_MS = 20000  # every API request waits this long: a pass is surely running when killed


def kjournald(wd, journal, *extra):
    port = kjtest.free_port()
    log = os.path.join(wd, "kjournald-%d.log" % port)
    args = [kjtest.program("kjournald"), "--journal", journal, "--listen",
            "tcp://127.0.0.1:%d" % port] + list(extra)
    return kjtest.start(args, log, env=rl.quiet_env(wd)), port, log


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def wait_for(what, cond):
    deadline = time.time() + DEADLINE
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    rl.fail("timed out after %d s waiting for %s" % (DEADLINE, what))


def running_run(wd, journal, after_id=0):
    runs = [r for r in rl.runs(wd, journal) if r["id"] > after_id and r["status"] == "running"]
    return runs[0] if runs else None


def run_by_id(wd, journal, rid):
    return {r["id"]: r for r in rl.runs(wd, journal)}[rid]


def killed_kjournald(wd, sc, procs):
    sc.sim.faults(latency_ms=SLOW_MS)
    # No Lease: with every answer 20 s away no election could finish (nor
    # would a holder renew within its deadline); this is about the writer
    # lock and the interrupted run, not the election.
    d, port, log = kjournald(wd, sc.journal, "--server", sc.sim.url, "--namespace", rl.NS,
                             "--leader-elect=false")
    procs.append(d)
    kjtest.wait_port(port, d, timeout=DEADLINE)
    run = wait_for("kjournald's recovery pass in `actions --runs`",
                   lambda: running_run(wd, sc.journal))
    rl.check(run["trigger"] == "startup", "first run: %r" % run)
    # the writer lock: no pass by hand beside kjournald
    rc, printed, err = rl.recover(wd, sc.sim, sc.journal, expect=9)
    rl.check(("pid %d" % d.pid) in err and "kjournald reconciles on its own" in err,
             "kjournal recover beside kjournald: %s" % err)
    d.send_signal(signal.SIGKILL)
    d.wait()
    rl.check(run_by_id(wd, sc.journal, run["id"])["status"] == "running",
             "the killed pass is no longer 'running' before any restart")

    sc.sim.clear_faults()
    d, port, log = kjournald(wd, sc.journal, "--server", sc.sim.url, "--namespace", rl.NS)
    procs.append(d)
    kjtest.wait_port(port, d, timeout=DEADLINE)
    wait_for("the restarted kjournald's pass to converge",
             lambda: [r for r in rl.runs(wd, sc.journal)
                      if r["id"] > run["id"] and r["status"] == "converged"])
    rl.check(kjtest.stop(d) == 0, "kjournald exit code; log:\n%s" % read(log)[-3000:])
    cut = run_by_id(wd, sc.journal, run["id"])
    rl.check(cut["status"] == "interrupted", "the killed pass after the restart: %r" % cut)
    rl.check(cut["finished"] and cut["finished"] == cut["started"],
             "an interrupted run without actions ends at its start: %r" % cut)
    rl.check("marked interrupted" in read(log) and "runs=1" in read(log),
             "the restarted kjournald does not log the interrupted run:\n%s" % read(log)[-2000:])
    rl.check_pods(sc.sim, sc.before)
    print("1. kjournald killed mid-pass: run %d 'interrupted' after the restart" % run["id"])
    return run["id"]


def killed_recover(wd, sc, procs, after_id):
    sc.sim.faults(latency_ms=SLOW_MS)
    p = subprocess.Popen([kjtest.program("kjournal")] + rl.recover_args(sc.sim, sc.journal),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=rl.quiet_env(wd))
    procs.append(p)
    run = wait_for("the recover pass in `actions --runs`",
                   lambda: running_run(wd, sc.journal, after_id))
    # kjournald waits for no pass by hand either: refused, naming the holder
    d, port, log = kjournald(wd, sc.journal, "--no-reconcile")
    procs.append(d)
    try:
        rc = d.wait(DEADLINE)
    except subprocess.TimeoutExpired:
        rl.fail("kjournald started beside a `kjournal recover` pass")
    rl.check(rc == 9 and ("pid %d" % p.pid) in read(log),
             "kjournald beside a recover pass: exit %d\n%s" % (rc, read(log)[-2000:]))
    p.send_signal(signal.SIGKILL)
    p.wait()
    sc.sim.clear_faults()
    rc, printed, err = rl.recover(wd, sc.sim, sc.journal, "--timeout", "50s")
    rl.check("1 run(s) of a stopped process marked interrupted" in err,
             "kjournal recover does not say it marked the killed pass: %s" % err)
    rl.check(run_by_id(wd, sc.journal, run["id"])["status"] == "interrupted",
             "the killed recover pass: %r" % run_by_id(wd, sc.journal, run["id"]))
    last = rl.runs(wd, sc.journal)
    rl.check(max(last, key=lambda r: r["id"])["status"] == "converged",
             "the pass after the killed one: %r" % last)
    rl.check(not [r for r in last if r["status"] == "running"], "runs left running: %r" % last)
    print("2. kjournal recover killed mid-pass: run %d 'interrupted' at the next recover"
          % run["id"])


def dry_run_beside_kjournald(wd, sc, procs):
    d, port, log = kjournald(wd, sc.journal, "--no-reconcile")
    procs.append(d)
    kjtest.wait_port(port, d, timeout=DEADLINE)
    rl.recover(wd, sc.sim, sc.journal, "--dry-run", expect=0)
    rl.check(kjtest.stop(d) == 0, "kjournald exit code; log:\n%s" % read(log)[-3000:])
    print("3. kjournal recover --dry-run runs beside kjournald")


def main():
    wd = kjtest.tmpdir("kj-recover-interrupted-")
    sc = rl.Scenario(wd)
    procs = []
    try:
        first = killed_kjournald(wd, sc, procs)
        killed_recover(wd, sc, procs, first)
        dry_run_beside_kjournald(wd, sc, procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        sc.close()
    rl.cleanup(wd)
    print("ok")


if __name__ == "__main__":
    main()
