#!/usr/bin/env python3
"""Two recovery passes at the same time (issue 7): two `kjournal recover`
processes on the same journal and the same cluster, started together, with
latency and jitter so that their requests interleave. Both exit 0 (a pod the
other pass already handled is not an error), the end state is the
scenario's, no pod is removed by two deletes, no finalizer is released or
added twice, and no session gets a second close event. Repeated twice
with fresh state, since each round interleaves differently.
"""
import collections
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recoverlib as rl  # noqa: E402
import kjtest  # noqa: E402

ROUNDS = 2


def one_round(i):
    wd = kjtest.tmpdir("kj-recover-concurrent-")
    sc = rl.Scenario(wd)
    try:
        sc.sim.faults(latency_ms=5, jitter_ms=30)
        args = [kjtest.program("kjournal")] + rl.recover_args(sc.sim, sc.journal, "--timeout",
                                                               rl.PASS_TIMEOUT)
        procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=rl.quiet_env(wd)) for _ in range(2)]
        try:
            outs = [p.communicate(timeout=6 * kjtest.DEADLINE) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for n, (p, (out, err)) in enumerate(zip(procs, outs)):
            rl.check(p.returncode == 0, "round %d: pass %d exit %d\n%s\n%s"
                     % (i, n, p.returncode, out[-3000:], err[-3000:]))
        st = sc.sim.stats()
        rl.check_pods(sc.sim, sc.before, why="round %d: " % i)
        rl.check_sessions(wd, sc.journal)
        rl.check(st["deletes"]["removed"] == rl.EXPECTED_REMOVED_BY_DELETE,
                 "round %d: deletes that removed a pod: %s, expected %d"
                 % (i, st["deletes"], rl.EXPECTED_REMOVED_BY_DELETE))
        audit = rl.actions(wd, sc.journal)
        print("round %d: results %s, deletes %s" % (
            i, dict(collections.Counter(a["result"] for a in audit)), st["deletes"]))
        rl.check(not [a for a in audit if a["result"] == "failed"],
                 "round %d: failed rows: %s" % (i, audit))
        rl.check({a["result"] for a in audit} <= {"ok", "gone", "conflict", "reported"},
                 "round %d: results %s" % (i, {a["result"] for a in audit}))
        # A finalizer goes (or comes) once: two passes cannot both succeed at it.
        once = collections.Counter((a["pod"], a["action"]) for a in audit
                                   if a["result"] == "ok"
                                   and a["action"] in ("release_finalizer", "add_finalizer"))
        want = collections.Counter((p, a) for p, a, _ in rl.EXPECTED_ACTIONS
                                   if a in ("release_finalizer", "add_finalizer"))
        rl.check(once == want, "round %d: finalizer changes %s, expected %s"
                 % (i, sorted(once.items()), sorted(want.items())))
        # Every expected action was done by one pass or the other.
        done = {(a["pod"], a["action"]) for a in audit if a["result"] in ("ok", "gone", "reported")}
        need = {(p, a) for p, a, _ in rl.EXPECTED_ACTIONS}
        rl.check(need <= done, "round %d: not done by either pass: %s" % (i, sorted(need - done)))
        runs = rl.runs(wd, sc.journal)
        rl.check(len(runs) == 2 and all(r.get("status") == "converged" for r in runs),
                 "round %d: runs %s" % (i, runs))

        # and a third pass afterwards has nothing to do
        after = sc.sim.pods()
        sc.sim.clear_faults()
        sc.sim.stats(reset=True)
        rc, printed, err = rl.recover(wd, sc.sim, sc.journal)
        rl.check_no_mutation(sc.sim.stats(), "round %d: the pass after both" % i)
        rl.check(sc.sim.pods() == after, "round %d: the pass after both changed a pod" % i)
    finally:
        sc.close()
    rl.cleanup(wd)


def main():
    for i in range(ROUNDS):
        one_round(i)
    print("ok")


if __name__ == "__main__":
    main()
