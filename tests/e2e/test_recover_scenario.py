#!/usr/bin/env python3
"""The recovery pass end to end (issue 7): kube-sim seeded with a Kyuubi
cluster as it looks after kjournald was down (engines in use, idle, failed,
finished, being deleted, shared, orphaned, out of scope), the journal written
by kjournald from events published over ZeroMQ, then `kjournal recover`:

  1. a dry run prints the plan, mutates nothing (kube-sim's counters) and
     writes nothing (the journal file is byte for byte the same);
  2. the pass: every pod and every session ends exactly as the table says,
     and the audit (`kjournal actions`) holds exactly the expected rows;
  3. a second pass mutates nothing and records nothing: the running orphan
     was reported by the first and has not changed.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recoverlib as rl  # noqa: E402
import kjtest  # noqa: E402


def main():
    wd = kjtest.tmpdir("kj-recover-")
    sc = rl.Scenario(wd)
    try:
        # 1. dry run
        digest = rl.file_digest(sc.journal)
        rc, planned, err = rl.recover(wd, sc.sim, sc.journal, "--dry-run")
        rl.check(all(a.get("result") == "planned" for a in planned),
                 "dry run: a result other than planned: %s" % planned)
        want = sorted((p, a) for p, a, _ in rl.EXPECTED_ACTIONS)
        got = sorted((a.get("pod"), a.get("action")) for a in planned)
        rl.check(got == want, "dry run plan:\n  %s\nexpected:\n  %s" % (got, want))
        rl.check_no_mutation(sc.sim.stats(), "the dry run")
        rl.check(rl.file_digest(sc.journal) == digest, "the dry run changed the journal file")
        rl.check_pods(sc.sim, sc.before, expected={}, why="after the dry run: ")
        rl.check(rl.actions(wd, sc.journal) == [], "the dry run recorded actions")
        rl.check(rl.runs(wd, sc.journal) == [], "the dry run recorded a run")

        # 2. the pass
        rc, printed, err = rl.recover(wd, sc.sim, sc.journal)
        rl.check(rl.action_triples(printed) == rl.EXPECTED_ACTIONS,
                 "printed actions:\n  %s\nexpected:\n  %s"
                 % (rl.action_triples(printed), rl.EXPECTED_ACTIONS))
        rl.check_pods(sc.sim, sc.before)
        rl.check_sessions(wd, sc.journal)
        audit = rl.actions(wd, sc.journal)
        rl.check(rl.action_triples(audit) == rl.EXPECTED_ACTIONS,
                 "audit rows:\n  %s\nexpected:\n  %s"
                 % (rl.action_triples(audit), rl.EXPECTED_ACTIONS))
        for a in audit:
            if a["action"] in ("release_finalizer", "delete", "add_finalizer"):
                rl.check(a.get("http_code") == 200, "audit row without HTTP 200: %s" % a)
                rl.check(a.get("namespace") == rl.NS and a.get("uid"), "audit row: %s" % a)
                rl.check(a.get("uid") == sc.before[(rl.NS, a["pod"])]["metadata"]["uid"],
                         "audit row names another uid: %s" % a)
            rl.check(a.get("reason"), "audit row without a reason: %s" % a)
        missing = [a for a in audit if a["pod"] == "-"]
        rl.check("s-missing-old" in (missing[0].get("message") or ""),
                 "engine_missing row does not name the session: %s" % missing)
        st = sc.sim.stats()
        rl.check(st["deletes"]["removed"] == rl.EXPECTED_REMOVED_BY_DELETE,
                 "deletes that removed a pod: %s, expected %d"
                 % (st["deletes"], rl.EXPECTED_REMOVED_BY_DELETE))
        rl.check(st["deletes"]["marked"] == 1, "deletes marked: %s" % st["deletes"])
        runs = rl.runs(wd, sc.journal)
        rl.check(len(runs) == 1 and runs[0].get("status") == "converged",
                 "runs after one pass: %s" % runs)

        # 3. again: nothing to do
        after_first = sc.sim.pods()
        sc.sim.stats(reset=True)
        rc, printed, err = rl.recover(wd, sc.sim, sc.journal)
        rl.check_no_mutation(sc.sim.stats(), "the second pass")
        rl.check(rl.action_triples(printed) == rl.EXPECTED_ACTIONS_AGAIN,
                 "second pass printed %s" % rl.action_triples(printed))
        runs = rl.runs(wd, sc.journal)
        rl.check(len(runs) == 2, "runs: %s" % runs)
        second = max(r["id"] for r in runs)
        again = rl.actions(wd, sc.journal, "--run", str(second))
        rl.check(rl.action_triples(again) == rl.EXPECTED_ACTIONS_AGAIN,
                 "second pass audit: %s" % rl.action_triples(again))
        rl.check_pods(sc.sim, sc.before)
        rl.check(sc.sim.pods() == after_first, "the second pass changed a pod")
        rl.check_sessions(wd, sc.journal)
        r = rl.kjournal(wd, "verify", "--journal", sc.journal)
        rl.check(r.returncode == 0, "kjournal verify: %s%s" % (r.stdout, r.stderr))
    finally:
        sc.close()
    rl.cleanup(wd)
    print("ok")


if __name__ == "__main__":
    main()
