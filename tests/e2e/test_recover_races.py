#!/usr/bin/env python3
"""The recovery pass racing other writers (issue 7). kube-sim logs each
request as it arrives (--verbose) and then holds it for 500 ms (injected
latency); the test follows the log and, inside that window, changes the pod
the request is about, as another controller or a person would:

  - eng-idle: another controller adds its finalizer in front of ours just
    before our release patch. Our `test` op fails (422), we re-read and
    release ours at its new index; theirs stays.
  - eng-failed-open: deleted and created again with the same name (a new
    uid, now the engine of an open session) just before our delete. The
    delete carries preconditions.uid: 409, re-read, the new pod is kept.
  - orphan-failed: created again with a new uid (the engine of an open
    session) just before our release patch. The new pod must not be touched
    at all: not its finalizer, not anything.

Then a second pass mutates nothing.
"""
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recoverlib as rl  # noqa: E402
import kjtest  # noqa: E402

OTHER2 = "example.com/backup-controller"
LATENCY_MS = 500


def request_line(method, name):
    return r'msg="request" method=%s path="/api/v1/namespaces/%s/pods/%s"' % (method, rl.NS, name)


def main():
    wd = kjtest.tmpdir("kj-recover-races-")
    sc = rl.Scenario(wd, sim_flags=["--verbose"])
    sim = sc.sim
    replaced = {}
    try:
        def add_other_finalizer(m):
            p = copy.deepcopy(sim.pods()[(rl.NS, "eng-idle")])
            p["metadata"]["finalizers"] = [OTHER2] + p["metadata"]["finalizers"]
            sim.seed([p])  # same uid: the same pod, modified

        def recreate(name):
            def fn(m):
                old = sim.pods()[(rl.NS, name)]
                new = rl.pod(name, tag="t-live-open", app="spark-live-open", age=0)
                sim.seed([new])  # no uid given: a new one
                p = sim.pods()[(rl.NS, name)]
                rl.check(p["metadata"]["uid"] != old["metadata"]["uid"], "recreate kept the uid")
                replaced[name] = p
            return fn

        watches = [
            rl.LogWatch(sim.log, request_line("PATCH", "eng-idle"), add_other_finalizer),
            rl.LogWatch(sim.log, request_line("DELETE", "eng-failed-open"),
                        recreate("eng-failed-open")),
            rl.LogWatch(sim.log, request_line("PATCH", "orphan-failed"), recreate("orphan-failed")),
        ]
        for w in watches:
            w.start()
        sim.faults(latency_ms=LATENCY_MS, jitter_ms=0)
        rc, printed, err = rl.recover(wd, sim, sc.journal, "--timeout", "50s")
        for w in watches:
            w.stop()
            rl.check(w.error is None, "log watch %s: %s" % (w.rx.pattern, w.error))
            rl.check(w.fired.is_set(), "never saw %s" % w.rx.pattern)
        sim.clear_faults()

        expected = dict(rl.EXPECTED_PODS)
        expected[(rl.NS, "eng-idle")] = ([OTHER2], True)
        expected[(rl.NS, "eng-failed-open")] = ([rl.OURS], False)
        expected[(rl.NS, "orphan-failed")] = ([rl.OURS], False)
        before = dict(sc.before)
        for name, p in replaced.items():
            before[(rl.NS, name)] = p  # the uid to find is the new one
        rl.check_pods(sim, before, expected)
        now = sim.pods()
        for name, p in sorted(replaced.items()):
            got = now[(rl.NS, name)]["metadata"]
            rl.check(got["resourceVersion"] == p["metadata"]["resourceVersion"],
                     "recreated pod %s was modified by the pass: %s" % (name, got))
        rl.check_sessions(wd, sc.journal)
        st = sim.stats()
        rl.check(st["deletes"]["removed"] == rl.EXPECTED_REMOVED_BY_DELETE - 3,
                 "deletes that removed a pod: %s" % st["deletes"])
        audit = rl.actions(wd, sc.journal)
        rl.check(not [a for a in audit if a["result"] == "failed"], "failed rows: %s" % audit)
        conflicts = sorted((a["pod"], a["action"]) for a in audit if a["result"] == "conflict")
        rl.check(("eng-idle", "release_finalizer") in conflicts and
                 ("eng-failed-open", "delete") in conflicts,
                 "conflicts recorded: %s" % conflicts)
        # no action ever named a recreated pod's uid
        for name, p in replaced.items():
            uid = p["metadata"]["uid"]
            rl.check(not [a for a in audit if a.get("uid") == uid and a["result"] == "ok"],
                     "an action succeeded on the recreated %s: %s"
                     % (name, [a for a in audit if a.get("uid") == uid]))

        after = sim.pods()
        sim.stats(reset=True)
        rl.recover(wd, sim, sc.journal)
        rl.check_no_mutation(sim.stats(), "the second pass")
        rl.check(sim.pods() == after, "the second pass changed a pod")
    finally:
        sc.close()
    rl.cleanup(wd)
    print("ok")


if __name__ == "__main__":
    main()
