#!/usr/bin/env python3
"""Two recovery passes at the same time (issue 7), with one writer per
journal (issue 10).

1. On one journal: a second `kjournal recover`, started while the first
   pass runs, is refused at once (exit 9, naming the first one's pid); the
   first converges alone to the scenario's end state, with one run.
2. On two journals (copies of one, as two kjournalds with journals of their
   own would hold) against the same cluster, started together with latency
   and jitter so that their requests interleave: both exit 0 (a pod the
   other pass already handled is not an error), the end state is the
   scenario's, no pod is removed by two deletes, no finalizer is released or
   added twice across both audits, every expected action is done by one pass
   or the other, and each journal's sessions end in the expected states
   with no second close event. Repeated twice with fresh state, since each
   round interleaves differently.
"""
import collections
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recoverlib as rl  # noqa: E402
import kjtest  # noqa: E402

ROUNDS = 2
DEADLINE = kjtest.DEADLINE


def wait_for(what, cond):
    return kjtest.wait_for(what, cond)


def same_journal():
    wd = kjtest.tmpdir("kj-recover-concurrent-")
    sc = rl.Scenario(wd)
    first = None
    try:
        sc.sim.faults(latency_ms=2000)  # the first pass is still running when the second starts
        first = subprocess.Popen([kjtest.program("kjournal")]
                                 + rl.recover_args(sc.sim, sc.journal, "--timeout", rl.PASS_TIMEOUT),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=rl.quiet_env(wd))
        wait_for("the first pass in `actions --runs`",
                 lambda: [r for r in rl.runs(wd, sc.journal) if r["status"] == "running"])
        rc, printed, err = rl.recover(wd, sc.sim, sc.journal, expect=9)
        rl.check(("pid %d" % first.pid) in err and sc.journal in err and not printed,
                 "the second pass on the journal: %s" % err)
        out, err = first.communicate(timeout=DEADLINE + 10)
        rl.check(first.returncode == 0, "the first pass: exit %d\n%s" % (first.returncode, err))
        rl.check_pods(sc.sim, sc.before)
        rl.check_sessions(wd, sc.journal)
        runs = rl.runs(wd, sc.journal)
        rl.check(len(runs) == 1 and runs[0]["status"] == "converged", "runs %s" % runs)
        print("one journal: the second pass refused (exit 9), the first converged alone")
    finally:
        if first and first.poll() is None:
            first.kill()
            first.wait()
        sc.close()
    rl.cleanup(wd)


def check_states(wd, journal, why):
    """Each session in its expected state, with one close event at most; the
    reason may differ from the one-pass scenario (a pod the other pass
    removed is missing to this one)."""
    got = rl.sessions(wd, journal)
    rl.check(set(got) == set(rl.EXPECTED_SESSIONS), "%ssessions %s" % (why, sorted(got)))
    for sid, (state, _) in sorted(rl.EXPECTED_SESSIONS.items()):
        s = got[sid]
        rl.check(s.get("state") == state, "%ssession %s: state %s, expected %s"
                 % (why, sid, s.get("state"), state))
        rl.check(s.get("events") == (1 if state == "open" else 2),
                 "%ssession %s: %s events" % (why, sid, s.get("events")))


def two_journals(i):
    wd = kjtest.tmpdir("kj-recover-concurrent-")
    sc = rl.Scenario(wd)
    try:
        copy = os.path.join(wd, "copy.db")
        r = rl.kjournal(wd, "backup", "--journal", sc.journal, "--to", copy)
        rl.check(r.returncode == 0, "kjournal backup: %s" % r.stderr)
        journals = [sc.journal, copy]
        sc.sim.faults(latency_ms=5, jitter_ms=30)
        procs = [subprocess.Popen([kjtest.program("kjournal")]
                                  + rl.recover_args(sc.sim, j, "--timeout", rl.PASS_TIMEOUT),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=rl.quiet_env(wd)) for j in journals]
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
        for n, j in enumerate(journals):
            check_states(wd, j, "round %d, journal %d: " % (i, n))
            runs = rl.runs(wd, j)
            rl.check(len(runs) == 1 and runs[0].get("status") == "converged",
                     "round %d, journal %d: runs %s" % (i, n, runs))
        rl.check(st["deletes"]["removed"] == rl.EXPECTED_REMOVED_BY_DELETE,
                 "round %d: deletes that removed a pod: %s, expected %d"
                 % (i, st["deletes"], rl.EXPECTED_REMOVED_BY_DELETE))
        audit = rl.actions(wd, sc.journal) + rl.actions(wd, copy)
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
        # Every expected action on a pod was done by one pass or the other.
        done = {(a["pod"], a["action"]) for a in audit if a["result"] in ("ok", "gone", "reported")}
        need = {(p, a) for p, a, _ in rl.EXPECTED_ACTIONS}
        rl.check(need <= done, "round %d: not done by either pass: %s" % (i, sorted(need - done)))

        # and a third pass afterwards has nothing to do
        after = sc.sim.pods()
        sc.sim.clear_faults()
        sc.sim.stats(reset=True)
        rl.recover(wd, sc.sim, sc.journal)
        rl.check_no_mutation(sc.sim.stats(), "round %d: the pass after both" % i)
        rl.check(sc.sim.pods() == after, "round %d: the pass after both changed a pod" % i)
    finally:
        sc.close()
    rl.cleanup(wd)


def main():
    same_journal()
    for i in range(ROUNDS):
        two_journals(i)
    print("ok")


if __name__ == "__main__":
    main()
