#!/usr/bin/env python3
"""The recovery scenario under faults (issue 7): 429 with Retry-After, 503
with Retry-After, 500, dropped connections, latency with jitter, continue
tokens expiring mid-list (more than one page: --continue-ttl 0) and an
injected 409 on the first patch. The pass must end exactly where the
fault-free pass ends, report no failure, and a second pass under the same
faults must send no mutating request at all. Before that, the same scenario
with answers lost after the write was applied (drop-after).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recoverlib as rl  # noqa: E402
import kjtest  # noqa: E402

FAULTS = dict(
    latency_ms=3, jitter_ms=10,
    error_rate=8, error_codes=[429, 503, 500], retry_after=1,
    drop_rate=3,
    continue_ttl=0,
    # deterministic ones on top of the random ones
    fail_nth=["patch:1:409", "patch:2:429", "patch:4:drop", "delete:1:503", "delete:2:drop",
              "list:1:drop", "get:1:500"],
)


# Answers lost after the write was applied: the client repeats the request
# (a uid-guarded DELETE then answers 404, a test-guarded patch 422), and the
# pass must still end in the same state, with nothing reported as failed.
LOST_ANSWERS = dict(
    latency_ms=2, jitter_ms=5, drop_after_rate=5,
    fail_nth=["patch:2:drop-after", "delete:1:drop-after", "delete:3:drop-after"],
)


def lost_answers():
    wd = kjtest.tmpdir("kj-recover-lost-")
    sc = rl.Scenario(wd)
    try:
        sc.sim.faults(**LOST_ANSWERS)
        rc, printed, err = rl.recover(wd, sc.sim, sc.journal, "--timeout", rl.PASS_TIMEOUT)
        st = sc.sim.stats()
        rl.check(st["faults"].get("dropped_after", 0) >= 3,
                 "lost answers: %s" % st["faults"])
        rl.check_pods(sc.sim, sc.before, why="with lost answers: ")
        rl.check_sessions(wd, sc.journal)
        rl.check(st["deletes"]["removed"] == rl.EXPECTED_REMOVED_BY_DELETE,
                 "deletes that removed a pod: %s" % st["deletes"])
        audit = rl.actions(wd, sc.journal)
        rl.check(not [a for a in audit if a["result"] == "failed"], "failed rows: %s" % audit)
        # each expected action is there, done by us ("ok") or found done
        # because our own lost answer did it ("gone", or a conflict re-planned)
        seen = {(a["pod"], a["action"]) for a in audit}
        rl.check({(p, a) for p, a, _ in rl.EXPECTED_ACTIONS} <= seen,
                 "missing actions: %s" % sorted({(p, a) for p, a, _ in rl.EXPECTED_ACTIONS} - seen))
        after = sc.sim.pods()
        sc.sim.clear_faults()
        sc.sim.stats(reset=True)
        rl.recover(wd, sc.sim, sc.journal)
        rl.check_no_mutation(sc.sim.stats(), "the pass after lost answers")
        rl.check(sc.sim.pods() == after, "the pass after lost answers changed a pod")
    finally:
        sc.close()
    rl.cleanup(wd)


def main():
    lost_answers()
    wd = kjtest.tmpdir("kj-recover-faults-")
    sc = rl.Scenario(wd)
    try:
        sc.sim.faults(**FAULTS)
        rc, printed, err = rl.recover(wd, sc.sim, sc.journal, "--timeout", rl.PASS_TIMEOUT)
        st = sc.sim.stats()
        rl.check_pods(sc.sim, sc.before, why="under faults: ")
        rl.check_sessions(wd, sc.journal)
        audit = rl.actions(wd, sc.journal)
        # Conflicts are recorded (and re-planned); everything else is as without faults.
        settled = sorted(t for t in rl.action_triples(audit) if t[2] != "conflict")
        rl.check(settled == rl.EXPECTED_ACTIONS,
                 "audit rows under faults:\n  %s\nexpected:\n  %s" % (settled, rl.EXPECTED_ACTIONS))
        conflicts = [a for a in audit if a["result"] == "conflict"]
        rl.check(len(conflicts) >= 1, "the injected 409 left no conflict row: %s" % audit)
        rl.check(not [a for a in audit if a["result"] == "failed"], "failed rows: %s" % audit)
        rl.check(st["deletes"]["removed"] == rl.EXPECTED_REMOVED_BY_DELETE,
                 "deletes that removed a pod: %s" % st["deletes"])
        # the faults did happen
        rl.check(st["faults"]["fail_nth"] == len(FAULTS["fail_nth"]),
                 "fail-nth rules fired: %s of %d" % (st["faults"], len(FAULTS["fail_nth"])))
        rl.check(st["by_code"].get("410", 0) >= 1, "no continue token expired: %s" % st["by_code"])
        rl.check(st["faults"]["dropped"] >= 3, "dropped connections: %s" % st["faults"])
        errs = st["faults"]["errors"]
        rl.check(errs.get("429", 0) >= 1 and errs.get("503", 0) >= 1,
                 "injected 429/503: %s" % errs)
        runs = rl.runs(wd, sc.journal)
        rl.check(len(runs) == 1 and runs[0].get("status") == "converged", "runs: %s" % runs)

        # again, under the same (random) faults: no mutating request at all
        after_first = sc.sim.pods()
        sc.sim.faults(fail_nth=[], continue_ttl=0)
        sc.sim.stats(reset=True)
        rc, printed, err = rl.recover(wd, sc.sim, sc.journal, "--timeout", rl.PASS_TIMEOUT)
        rl.check_no_mutation(sc.sim.stats(), "the second pass under faults")
        rl.check(rl.action_triples(printed) == rl.EXPECTED_ACTIONS_AGAIN,
                 "second pass printed %s" % rl.action_triples(printed))
        rl.check(sc.sim.pods() == after_first, "the second pass changed a pod")
        rl.check_sessions(wd, sc.journal)
    finally:
        sc.sim.clear_faults()
        sc.close()
    rl.cleanup(wd)
    print("ok")


if __name__ == "__main__":
    main()
