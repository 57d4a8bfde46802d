#!/usr/bin/env python3
"""A recovery pass with far more work than requests in flight (issue 7):
300 finished engines to release and delete and 300 live ones to keep, the
journal written through kjournald, `kjournal recover --concurrency 2` under
light faults (429/503 with Retry-After, drops, jitter, continue tokens
expiring between the two list pages). The pass holds at most 4 x concurrency
+ 16 pod requests in the client; the other pods wait in its backlog and are
planned again from the journal when their turn comes. Every pod to clean up
is removed by exactly one delete, every pod to keep is untouched, each
action is recorded once, and a second pass mutates nothing.
"""
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recoverlib as rl  # noqa: E402
import kjtest  # noqa: E402

N = 300
HOUR = rl.HOUR


def main():
    wd = kjtest.tmpdir("kj-recover-bulk-")
    t = rl.now_ms()
    pods, events = [], []
    for i in range(N):
        pods.append(rl.pod("done-%03d" % i, tag="t-done-%03d" % i, phase="Failed",
                           finished_ago=2 * HOUR))
        events.append(rl.open_ev("s-done-%03d" % i, t - 3 * HOUR, tag="t-done-%03d" % i))
        events.append(rl.close_ev("s-done-%03d" % i, t - 2 * HOUR))
        pods.append(rl.pod("live-%03d" % i, tag="t-live-%03d" % i))
        events.append(rl.open_ev("s-live-%03d" % i, t - HOUR, tag="t-live-%03d" % i))
    sim = rl.KubeSim(wd).start()
    try:
        sim.seed(pods)
        journal = rl.write_journal(wd, events)
        before = sim.pods()
        sim.stats(reset=True)

        rc, planned, err = rl.recover(wd, sim, journal, "--dry-run", "--concurrency", "2")
        want = collections.Counter({"release_finalizer": N, "delete": N})
        got = collections.Counter(a["action"] for a in planned)
        rl.check(got == want, "dry run planned %s, expected %s" % (dict(got), dict(want)))
        rl.check_no_mutation(sim.stats(), "the dry run")

        sim.faults(latency_ms=1, jitter_ms=3, error_rate=1, error_codes=[429, 503],
                   retry_after=1, drop_rate=1, continue_ttl=0)
        rc, printed, err = rl.recover(wd, sim, journal, "--concurrency", "2", "--timeout", rl.PASS_TIMEOUT)
        st = sim.stats()
        sim.clear_faults()
        expected = {(rl.NS, "done-%03d" % i): None for i in range(N)}
        expected.update({(rl.NS, "live-%03d" % i): ([rl.OURS], False) for i in range(N)})
        rl.check_pods(sim, before, expected)
        # (kube-sim counts a dropped DELETE as a no-op: only "removed" is exact here)
        rl.check(st["deletes"]["removed"] == N, "deletes: %s, expected %d removed"
                 % (st["deletes"], N))
        rl.check(st["by_code"].get("410", 0) >= 1, "no continue token expired: %s" % st["by_code"])
        audit = rl.actions(wd, journal)
        ok = collections.Counter((a["pod"], a["action"]) for a in audit if a["result"] == "ok")
        rl.check(len(ok) == 2 * N and set(ok.values()) == {1},
                 "ok actions: %d distinct, counts %s" % (len(ok), set(ok.values())))
        rl.check(all(p.startswith("done-") for p, _ in ok), "acted on a live pod: %s" % ok)
        rl.check(not [a for a in audit if a["result"] not in ("ok", "conflict")],
                 "unexpected results: %s" % [a for a in audit if a["result"] != "ok"][:5])
        rl.check("%d finalizers released" % N in err and "%d pods deleted" % N in err,
                 "summary line: %s" % err[-500:])
        sessions = rl.sessions(wd, journal)
        rl.check(sum(1 for s in sessions.values() if s["state"] == "open") == N,
                 "open sessions after the pass")

        after = sim.pods()
        sim.stats(reset=True)
        rl.recover(wd, sim, journal, "--concurrency", "2")
        rl.check_no_mutation(sim.stats(), "the second pass")
        rl.check(sim.pods() == after, "the second pass changed a pod")
    finally:
        sim.stop()
    rl.cleanup(wd)
    print("ok")


if __name__ == "__main__":
    main()
