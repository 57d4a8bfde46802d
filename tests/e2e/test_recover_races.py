#!/usr/bin/env python3
"""The recovery pass racing other writers (issue 7). The pass talks to
kube-sim through a proxy (recoverlib.InterceptProxy) that, when the request
named below has arrived and before kube-sim sees it, changes the pod the
request is about, as another controller or a person would in the moment
between the pass reading the pod and its request landing. The request waits
for the change: however slow the machine, the race goes the same way.

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


def pod_path(name):
    return r"^/api/v1/namespaces/%s/pods/%s(\?|$)" % (rl.NS, name)


def main():
    wd = kjtest.tmpdir("kj-recover-races-")
    sc = rl.Scenario(wd)
    sim = sc.sim
    replaced = {}
    try:
        def add_other_finalizer(method, path):
            p = copy.deepcopy(sim.pods()[(rl.NS, "eng-idle")])
            p["metadata"]["finalizers"] = [OTHER2] + p["metadata"]["finalizers"]
            sim.seed([p])  # same uid: the same pod, modified

        def recreate(name):
            def fn(method, path):
                old = sim.pods()[(rl.NS, name)]
                new = rl.pod(name, tag="t-live-open", app="spark-live-open", age=0)
                sim.seed([new])  # no uid given: a new one
                p = sim.pods()[(rl.NS, name)]
                rl.check(p["metadata"]["uid"] != old["metadata"]["uid"], "recreate kept the uid")
                replaced[name] = p
            return fn

        hooks = [
            rl.Hook("PATCH", pod_path("eng-idle"), add_other_finalizer),
            rl.Hook("DELETE", pod_path("eng-failed-open"), recreate("eng-failed-open")),
            rl.Hook("PATCH", pod_path("orphan-failed"), recreate("orphan-failed")),
        ]
        proxy = rl.InterceptProxy(sim.port, hooks).start()
        try:
            rc, printed, err = rl.recover(wd, proxy, sc.journal, "--timeout", rl.PASS_TIMEOUT)
        finally:
            proxy.stop()
        for h in hooks:
            rl.check(h.error is None, "hook %r: %r" % (h, h.error))
            rl.check(h.fired.is_set(), "the pass sent no %r" % h)

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
