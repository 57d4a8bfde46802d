"""The per-server topology (issue 14): three kjournald, a, b and c, one beside
each Kyuubi server, each with its own journal and --identity, on one
kube-sim. Kubernetes is the only shared state: the instances never talk.

1. An engine shared by an open session on a and one on b: both claim the pod
   (finalizers kjournal.apache.org/claim-a and -b); a's session closes -> a
   releases its claim, the pod stays through a's next passes; b's closes ->
   the pod is deleted, exactly once.
2. The 409 race: b adds its claim between a's read of the pod and a's DELETE
   (a proxy in front of kube-sim holds a's DELETE while b claims): the DELETE
   carries uid and resourceVersion preconditions, answers 409, a reads the
   pod again, sees b's claim, and the pod survives.
3. a is killed for good while its engine runs; the engine finishes; once a's
   Lease kjournald-a has been expired for the instance grace, the sweeper
   removes a's claim and the pod (retain period 0) is deleted exactly once.
4. The sweeper is killed: another instance becomes the sweeper.

Run twice: on a clean API server, then under 25% API errors and dropped
answers (before and after the write), with the same end states.
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.environ.get("KJ_SOURCE_DIR", "../.."), "tests"))
sys.path.insert(0, os.path.dirname(__file__))
import kjtest  # noqa: E402
from recoverlib import (Hook, InterceptProxy, KubeSim, NS, check, cleanup, close_ev,  # noqa: E402
                        kjournal, now_ms, open_ev, pod, quiet_env, rfc3339)

LEASE_S, RENEW_S, RETRY_S, GRACE_S = 4, 3, 1, 3
CLAIM = "kjournal.apache.org/claim-"
FAULTS = dict(error_rate=25, error_codes=[500, 503, 429], retry_after=1, drop_rate=3,
              drop_after_rate=3)
wait_for = kjtest.wait_for


class Kjd:
    def __init__(self, workdir, server, identity, *extra):
        self.identity = identity
        self.workdir = workdir
        self.journal = os.path.join(workdir, "%s.db" % identity)
        port, mport = kjtest.free_port(), kjtest.free_port()
        self.ep = "tcp://127.0.0.1:%d" % port
        self.metrics = "http://127.0.0.1:%d" % mport
        self.log = os.path.join(workdir, "kjournald-%s.log" % identity)
        self.proc = kjtest.start(
            [kjtest.program("kjournald"), "--journal", self.journal, "--listen", self.ep,
             "--metrics", "127.0.0.1:%d" % mport, "--server", server, "--namespace", NS,
             "--topology", "per-server", "--identity", identity, "--resync", "1s",
             "--engine-grace", "0s", "--retain-terminated", "0s",
             "--instance-grace", "%ds" % GRACE_S,
             "--leader-elect-lease-duration", "%ds" % LEASE_S,
             "--leader-elect-renew-deadline", "%ds" % RENEW_S,
             "--leader-elect-retry-period", "%ds" % RETRY_S] + list(extra),
            self.log, env=quiet_env(workdir))
        kjtest.wait_port(port, self.proc)
        kjtest.wait_port(mport, self.proc)

    def gauge(self, name):
        try:
            with urllib.request.urlopen(self.metrics + "/metrics", timeout=kjtest.DEADLINE) as r:
                text = r.read().decode()
        except (urllib.error.URLError, OSError):
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
        return None

    def publish(self, events):
        lines = "".join(json.dumps(e) + "\n" for e in events)
        r = subprocess.run([kjtest.program("kjournal"), "publish", "--endpoint", self.ep,
                            "--quiet", "--timeout", str(int(kjtest.DEADLINE * 1000)), "-"],
                           input=lines, capture_output=True, text=True,
                           timeout=5 * kjtest.DEADLINE, env=quiet_env(self.workdir))
        check(r.returncode == 0, "kjournal publish to %s: %s" % (self.identity, r.stderr))

    def actions(self):
        r = kjournal(self.workdir, "actions", "--journal", self.journal, "-o", "json", "-n", "all")
        check(r.returncode == 0, "kjournal actions (%s): %s" % (self.identity, r.stderr))
        return [json.loads(x) for x in r.stdout.splitlines()]

    def runs(self):
        r = kjournal(self.workdir, "actions", "--journal", self.journal, "--runs", "-o", "json",
                     "-n", "all")
        check(r.returncode == 0, "kjournal actions --runs (%s): %s" % (self.identity, r.stderr))
        return [json.loads(x) for x in r.stdout.splitlines()]

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()[-5000:]

    def alive(self):
        return self.proc.poll() is None


# --- kube-sim through /_sim/ (never faulted) ---------------------------------

def state(sim):
    return sim.call("GET", "/_sim/state")[1]


def get_pod(sim, name):
    for p in state(sim).get("pods", []):
        if p["metadata"]["name"] == name:
            return p
    return None


def claims(sim, name):
    p = get_pod(sim, name)
    fins = (p or {}).get("metadata", {}).get("finalizers") or []
    return sorted(f[len(CLAIM):] for f in fins if f.startswith(CLAIM))


def lease(sim, name):
    for x in state(sim).get("leases", []):
        if x["metadata"]["name"] == name:
            return x.get("spec", {})
    return {}


def sweeper(sim):
    return lease(sim, "kjournald-sweeper").get("holderIdentity")


def rfc_ms(s):
    import datetime
    return int(datetime.datetime.strptime(s.replace("Z", "+0000"),
                                          "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)


def api(sim, method, path, body, ctype):
    """A test-side write through the API, repeated while faults refuse it."""
    def once():
        try:
            code, _ = sim.call(method, path, body, ctype=ctype, ok=None)
        except (ValueError, OSError, http.client.HTTPException):
            return False  # a faulted answer: a 429's text, a dropped connection
        return code in (200, 201)
    wait_for("%s %s" % (method, path), once)


def finish(sim, name, tag):
    """The kubelet reports the driver finished (Succeeded, finishedAt now)."""
    st = {"status": {"phase": "Succeeded", "containerStatuses": [{
        "name": "spark-kubernetes-driver", "ready": False, "restartCount": 0,
        "image": "apache/spark:3.5.3",
        "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                 "startedAt": rfc3339(now_ms() - 60000),
                                 "finishedAt": rfc3339(now_ms())}}}]}}
    api(sim, "PATCH", "/api/v1/namespaces/%s/pods/%s/status" % (NS, name), st,
        "application/merge-patch+json")


# --- the scenarios ------------------------------------------------------------

def shared_engine(sim, a, b, tag):
    name = "drv-shared-" + tag
    sim.seed([pod(name, tag=tag, fins=())])
    t = now_ms()
    a.publish([open_ev("sa-" + tag, t, tag=tag)])
    b.publish([open_ev("sb-" + tag, t, tag=tag)])
    wait_for("claims of a and b on %s" % name, lambda: claims(sim, name) == ["a", "b"])
    a.publish([close_ev("sa-" + tag, t + 1000)])
    wait_for("a to release its claim", lambda: claims(sim, name) == ["b"])
    n = len(a.runs())
    wait_for("two more passes of a", lambda: len(a.runs()) >= n + 2)
    check(get_pod(sim, name) is not None, "%s deleted while b still claims it" % name)
    deletes = sim.stats()["deletes"]["removed"]
    b.publish([close_ev("sb-" + tag, t + 2000)])
    wait_for("%s to be deleted once b's session closed" % name,
             lambda: get_pod(sim, name) is None)
    n = len(a.runs())
    wait_for("two more passes of a", lambda: len(a.runs()) >= n + 2)
    removed = sim.stats()["deletes"]["removed"] - deletes
    check(removed == 1, "%s removed %d times" % (name, removed))
    print("shared engine: a released its claim, the pod stayed for b, then went once")


def conflict_race(workdir, sim, b, faults):
    """a behind a proxy that, on a's DELETE of the pod, first has b claim it."""
    tag = "race"
    name = "drv-race"

    def b_claims(method, path):
        b.publish([open_ev("sb-race", now_ms(), tag=tag)])
        wait_for("b's claim on %s" % name, lambda: "b" in claims(sim, name))

    hook = Hook("DELETE", "/pods/%s$" % name, b_claims)
    proxy = InterceptProxy(sim.port, [hook]).start()
    a2 = None
    try:
        a2 = Kjd(workdir, proxy.url, "a2")
        sim.seed([pod(name, tag=tag, fins=())])
        t = now_ms()
        a2.publish([open_ev("sa-race", t, tag=tag), close_ev("sa-race", t + 1)])
        check(hook.fired.wait(kjtest.DEADLINE), "a2 never sent its DELETE; log:\n"
              + a2.log_text())
        check(hook.error is None, "the hook failed: %r" % hook.error)
        # Under faults the DELETE may instead meet an injected error and not
        # be repeated (its fence, the instance Lease, comes first): the end
        # state is the same, the pod kept by b's claim.
        wait_for("a2 to record the conflict of its DELETE",
                 lambda: any(x["pod"] == name and x["action"] == "delete" and
                             ((x["result"] == "conflict" and x["http_code"] == 409) or
                              (faults and x["result"] in ("canceled", "failed")))
                             for x in a2.actions()))
        n = len(a2.runs())
        wait_for("two more passes of a2", lambda: len(a2.runs()) >= n + 2)
        check(get_pod(sim, name) is not None, "%s deleted although b claimed it" % name)
        check(claims(sim, name) == ["b"], "claims on %s: %s" % (name, claims(sim, name)))
        print("409 race: a2's DELETE did not go through; b's claim kept the pod (%s)"
              % [x["result"] for x in a2.actions() if x["pod"] == name])
    finally:
        if a2:
            kjtest.stop(a2.proc)
        proxy.stop()


def dead_instance(sim, a, others, tag):
    name = "drv-dead-" + tag
    sim.seed([pod(name, tag=tag, fins=())])
    a.publish([open_ev("sa-" + tag, now_ms(), tag=tag)])
    wait_for("a's claim on %s" % name, lambda: claims(sim, name) == ["a"])
    a.proc.kill()
    a.proc.wait()
    finish(sim, name, tag)
    deletes = sim.stats()["deletes"]["removed"]
    wait_for("the sweeper to remove a's claim and delete %s" % name,
             lambda: get_pod(sim, name) is None)
    spec = lease(sim, "kjournald-a")
    dead_at = rfc_ms(spec["renewTime"]) + spec["leaseDurationSeconds"] * 1000 + GRACE_S * 1000
    # "conflict": applied, the answer lost, the repeat refused by its test
    removals = [x for k in others if k.alive() for x in k.actions()
                if x["pod"] == name and x["action"] == "remove_claim"
                and x["result"] in ("ok", "conflict")]
    check(removals, "nobody recorded removing a's claim")
    removed_at = rfc_ms(removals[0]["time"])
    check(removed_at >= dead_at - 50,
          "a's claim removed at %d, before its Lease was expired for the grace (%d)"
          % (removed_at, dead_at))
    for k in others:
        if k.alive():
            n = len(k.runs())
            wait_for("two more passes of %s" % k.identity, lambda: len(k.runs()) >= n + 2)
    removed = sim.stats()["deletes"]["removed"] - deletes
    check(removed == 1, "%s removed %d times" % (name, removed))
    print("dead instance: its claim removed %d ms after its Lease was expired for the grace "
          "(by %s), the pod deleted once" % (removed_at - dead_at, removals[0]["identity"]))


def sweeper_failover(sim, insts):
    wait_for("a live sweeper", lambda: sweeper(sim) in {k.identity for k in insts if k.alive()})
    old = next(k for k in insts if k.identity == sweeper(sim))
    old.proc.kill()
    old.proc.wait()
    live = {k.identity for k in insts if k.alive()}
    wait_for("another instance to become the sweeper", lambda: sweeper(sim) in live)
    new = next(k for k in insts if k.identity == sweeper(sim))
    wait_for("the new sweeper to say so", lambda: new.gauge("kjournal_sweeper") == 1)
    print("sweeper %s killed: %s took over" % (old.identity, new.identity))


def run(workdir, faults):
    sim = KubeSim(workdir).start()
    insts = []
    try:
        a = Kjd(workdir, sim.url, "a")
        b = Kjd(workdir, sim.url, "b")
        c = Kjd(workdir, sim.url, "c")
        insts = [a, b, c]
        wait_for("a sweeper", lambda: sweeper(sim) in ("a", "b", "c"))
        if faults:
            sim.faults(**FAULTS)
        shared_engine(sim, a, b, "s1")
        conflict_race(workdir, sim, b, faults)
        dead_instance(sim, a, [b, c], "k1")
        sweeper_failover(sim, insts)
        if faults:
            st = sim.stats()["faults"]
            check(sum(st["errors"].values()) > 10 and st["dropped"] + st["dropped_after"] > 0,
                  "the faults did not happen: %s" % st)
            sim.clear_faults()
        by_ua = sim.stats().get("by_user_agent", {})
        check(all(ua.startswith("kjournald/") or ua.startswith("Python") for ua in by_ua),
              "mutations by unknown user agents: %s" % list(by_ua))
    finally:
        for k in insts:
            if k.alive():
                rc = kjtest.stop(k.proc)
                check(rc == 0, "kjournald %s exit %d; log:\n%s" % (k.identity, rc, k.log_text()))
        sim.stop()


def bad_flags(workdir):
    for args, want in [
        (["--topology", "per-server"], "--topology per-server needs --identity"),
        (["--topology", "per-server", "--identity", "Kyuubi_0"], "a DNS label"),
        (["--topology", "per-server", "--identity", "k" * 58], "1 to 57 characters"),
        (["--topology", "per-server", "--identity", "k0", "--leader-elect=false"],
         "needs its Leases"),
    ]:
        r = subprocess.run([kjtest.program("kjournald"), "--journal",
                            os.path.join(workdir, "bad.db"), "--server", "http://127.0.0.1:1"]
                           + args, capture_output=True, text=True, timeout=kjtest.DEADLINE,
                           env=quiet_env(workdir))
        check(r.returncode == 2 and want in r.stderr,
              "%s: exit %d, stderr %r" % (args, r.returncode, r.stderr))


def main():
    workdir = kjtest.tmpdir("kj-per-server-")
    bad_flags(workdir)
    run(os.path.join(workdir), faults=False)
    faulted = os.path.join(workdir, "faults")
    os.mkdir(faulted)
    run(faulted, faults=True)
    cleanup(workdir)
    print("ok: per-server claims, the 409 race, the sweeper, clean and under faults")


if __name__ == "__main__":
    main()
