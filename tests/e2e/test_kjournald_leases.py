"""Several kjournald on one cluster, central topology: the Lease fence, with
real processes against kube-sim (issue 14).

Every instance has its own --identity and journal; the same events go to all
(a Service would send them to the holder only: the worst case is every
instance knowing everything). kube-sim counts mutations by User-Agent, which
carries the identity, so the test sees who changed what.

1. Two instances: one holds the Lease, the other is a standby (/readyz 503
   with the reason, kjournal_leader 0); only the holder changes pods.
2. SIGKILL the holder: the standby takes over within lease duration + retry
   period of the holder's last renewal (the Lease's own times), and finishes
   the work: the pod is deleted once, nothing is done twice.
3. SIGSTOP the holder for longer than the lease duration: the standby takes
   over; after SIGCONT the old holder changes nothing (not a pod, not the
   Lease) while the other holds it; it stays up as a standby, and takes the
   Lease back when the other stops cleanly (which releases it).
4. The audit: each run and action names its instance (kjournal actions).
5. Bad timings are refused (exit 2) with the flag named.

1-4 run twice: on a clean API server, then under 25% API errors and dropped
answers, with the same end states.
"""
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
from recoverlib import (KubeSim, NS, OURS, check, cleanup, close_ev, kjournal, now_ms,  # noqa: E402
                        open_ev, pod, quiet_env)

LEASE_S, RENEW_S, RETRY_MS = 3, 2, 500
TIMINGS = ["--leader-elect-lease-duration", "%ds" % LEASE_S,
           "--leader-elect-renew-deadline", "%ds" % RENEW_S,
           "--leader-elect-retry-period", "%dms" % RETRY_MS]
wait_for = kjtest.wait_for


def version():
    out = subprocess.run([kjtest.program("kjournald"), "--version"], capture_output=True,
                         text=True).stdout
    return out.split()[1]


class Kjd:
    """One kjournald instance: its journal, endpoints and log."""

    def __init__(self, workdir, sim, identity, *extra):
        self.identity = identity
        self.journal = os.path.join(workdir, "%s.db" % identity)
        port, mport = kjtest.free_port(), kjtest.free_port()
        self.ep = "tcp://127.0.0.1:%d" % port
        self.metrics = "http://127.0.0.1:%d" % mport
        self.log = os.path.join(workdir, "kjournald-%s.log" % identity)
        self.workdir = workdir
        self.proc = kjtest.start([kjtest.program("kjournald"), "--journal", self.journal,
                                  "--listen", self.ep, "--metrics", "127.0.0.1:%d" % mport,
                                  "--server", sim.url, "--namespace", NS, "--identity", identity,
                                  "--resync", "1s", "--engine-grace", "0s"] + TIMINGS
                                 + list(extra), self.log, env=quiet_env(workdir))
        kjtest.wait_port(port, self.proc)
        kjtest.wait_port(mport, self.proc)
        self.ua = "kjournald/%s (%s)" % (VERSION, identity)

    def get(self, path):
        try:
            with urllib.request.urlopen(self.metrics + path, timeout=kjtest.DEADLINE) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def readyz(self):
        return self.get("/readyz")

    def leader_gauge(self):
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith("kjournal_leader "):
                return int(line.split()[1])
        return None

    def publish(self, events):
        lines = "".join(json.dumps(e) + "\n" for e in events)
        r = subprocess.run([kjtest.program("kjournal"), "publish", "--endpoint", self.ep,
                            "--quiet", "--timeout", str(int(kjtest.DEADLINE * 1000)), "-"],
                           input=lines, capture_output=True, text=True,
                           timeout=5 * kjtest.DEADLINE, env=quiet_env(self.workdir))
        check(r.returncode == 0, "kjournal publish to %s: %s" % (self.identity, r.stderr))

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()[-4000:]

    def stop(self, sig=signal.SIGTERM):
        rc = kjtest.stop(self.proc, sig)
        if sig == signal.SIGTERM:
            check(rc == 0, "kjournald %s exit code %d; log:\n%s" % (self.identity, rc,
                                                                      self.log_text()))


def state(sim):
    """Through /_sim/: never faulted."""
    return sim.call("GET", "/_sim/state")[1]


def lease(sim):
    for x in state(sim).get("leases", []):
        if x["metadata"]["name"] == "kjournald":
            return x.get("spec", {})
    return {}


def holder(sim):
    return lease(sim).get("holderIdentity")


def rfc_ms(s):
    """RFC 3339 with microseconds (a Lease's MicroTime) to epoch ms."""
    import datetime
    d = datetime.datetime.strptime(s.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    return int(d.timestamp() * 1000)


def pod_mutations(sim):
    """{user agent: pod mutations} since the last reset."""
    by = sim.stats().get("by_user_agent", {})
    return {ua: kinds.get("pods", 0) for ua, kinds in by.items() if kinds.get("pods")}


def lease_mutations(sim, ua):
    return sim.stats().get("by_user_agent", {}).get(ua, {}).get("leases", 0)


def get_pod(sim, name):
    for p in state(sim).get("pods", []):
        if p["metadata"]["name"] == name:
            return p
    return None


def has_ours(sim, name):
    p = get_pod(sim, name)
    return p is not None and OURS in (p["metadata"].get("finalizers") or [])


def is_standby(k):
    code, body = k.readyz()
    return code == 503 and "standby" in body and k.leader_gauge() == 0


def is_holder(k):
    code, _ = k.readyz()
    return code == 200 and k.leader_gauge() == 1


FAULTS = dict(error_rate=25, error_codes=[500, 503, 429], retry_after=1, drop_rate=3,
              drop_after_rate=3)


def central(workdir, faults=False):
    """faults: 25% errors and dropped answers once both instances run; the
    end states are the same (the takeover time is only printed then: lost
    renewals are what faults do)."""
    sim = KubeSim(workdir).start()
    a = b = c = None
    try:
        a = Kjd(workdir, sim, "a")
        wait_for("a to hold the Lease", lambda: holder(sim) == "a" and is_holder(a))
        b = Kjd(workdir, sim, "b")
        # /readyz names the holder once b has read the Lease
        wait_for("b to report itself standby, the Lease held by a",
                 lambda: is_standby(b) and "held by a" in b.readyz()[1])
        if faults:
            sim.faults(**FAULTS)

        # 1. only the holder acts
        sim.stats(reset=True)
        sim.seed([pod("drv-1", tag="t-1", fins=())])
        t = now_ms()
        for k in (a, b):
            k.publish([open_ev("s-1", t, tag="t-1")])
        wait_for("a's finalizer on drv-1", lambda: has_ours(sim, "drv-1"))
        # b has had several resyncs and rounds to act, were it going to
        wait_for("b to renew its view a few times",
                 lambda: "standby" in b.readyz()[1] and time.sleep(3 * RETRY_MS / 1000) is None)
        muts = pod_mutations(sim)
        check(set(muts) == {a.ua}, "pods changed by others than the holder: %s" % muts)
        check(lease_mutations(sim, b.ua) == 0, "the standby wrote the Lease: %s"
              % sim.stats().get("by_user_agent"))

        # 2. the holder dies: b takes over within lease duration + retry period
        a_last_renew = rfc_ms(lease(sim)["renewTime"])
        a.proc.kill()
        a.proc.wait()
        a_last_renew = max(a_last_renew, rfc_ms(lease(sim)["renewTime"]))
        wait_for("b to take the Lease over", lambda: holder(sim) == "b")
        took = rfc_ms(lease(sim)["acquireTime"]) - a_last_renew
        print("takeover %d ms after the holder's last renewal (lease %d s, retry %d ms)"
              % (took, LEASE_S, RETRY_MS))
        # The Lease's own times, stamped by the two processes: b may not take
        # it before a full lease duration has passed without a renewal, and
        # it takes it at the first round after (one retry period, plus the
        # round's own time).
        check(took >= LEASE_S * 1000 - 50,
              "b took over %d ms after a's last renewal, before the lease duration" % took)
        check(faults or took <= LEASE_S * 1000 + RETRY_MS + 1000,
              "b took over %d ms after a's last renewal: more than lease + retry period" % took)
        wait_for("b to report itself holder", lambda: is_holder(b))
        b.publish([close_ev("s-1", t + 1000)])
        wait_for("drv-1 to be deleted by the new holder", lambda: get_pod(sim, "drv-1") is None)
        st = sim.stats()
        muts = pod_mutations(sim)
        check(muts.get(b.ua, 0) >= 1 and set(muts) == {a.ua, b.ua},
              "mutations by user agent: %s" % muts)
        check(st["deletes"]["removed"] == 1, "drv-1 deleted more than once: %s" % st["deletes"])
        if not faults:  # under faults a lost answer makes a repeat, refused by its test
            check(st["by_verb"].get("delete", 0) == 1, "two DELETEs: %s" % st["by_verb"])
            # a watch event older than a pass's own change may plan a patch
            # again: its test op makes the server refuse it, nothing is done twice
            ok = st["by_verb_kind_code"].get("patch pods 200", 0)
            check(ok == 2, "finalizer patches (add by a, release by b) done twice: %s" %
                  st["by_verb_kind_code"])

        # 3. SIGSTOP the holder longer than the lease; c takes over
        c = Kjd(workdir, sim, "c")
        wait_for("c to report itself standby", lambda: is_standby(c) and "held by b"
                 in c.readyz()[1])
        sim.seed([pod("drv-2", tag="t-2", fins=())])
        t2 = now_ms()
        for k in (b, c):
            k.publish([open_ev("s-2", t2, tag="t-2")])
        wait_for("b's finalizer on drv-2", lambda: has_ours(sim, "drv-2"))
        b.proc.send_signal(signal.SIGSTOP)
        stopped = time.time()
        wait_for("c to take the Lease over from the stopped b", lambda: holder(sim) == "c")
        wait_for("c to report itself holder", lambda: is_holder(c))
        # c releases b's finalizer and deletes the pod once s-2 closes
        sim.stats(reset=True)
        c.publish([close_ev("s-2", t2 + 1000)])
        wait_for("drv-2 deleted by c", lambda: get_pod(sim, "drv-2") is None)
        # b learns of the close only now, then wakes up
        wait_for("the stop to outlast the lease", lambda: time.time() - stopped > LEASE_S + 1)
        b.proc.send_signal(signal.SIGCONT)
        sim.seed([pod("drv-3", tag="t-3", fins=()), pod("drv-4", tag="t-4")])
        t3 = now_ms()
        for k in (b, c):
            k.publish([open_ev("s-3", t3, tag="t-3")])
        # drv-4's sessions are in b's journal only, all closed: b, were it
        # acting, would release the finalizer and delete the pod at once; for
        # c it is a running orphan, reported and left alone
        b.publish([open_ev("s-4", t3, tag="t-4"), close_ev("s-4", t3 + 1)])
        wait_for("c's finalizer on drv-3", lambda: has_ours(sim, "drv-3"))
        wait_for("b to say it is a standby again", lambda: is_standby(b) and "held by c"
                 in b.readyz()[1])
        wait_for("b to run a few rounds as a standby",
                 lambda: time.sleep(4 * RETRY_MS / 1000) is None)
        check(b.proc.poll() is None, "b exited after losing the Lease")
        muts = pod_mutations(sim)
        check(b.ua not in muts, "b changed pods after c took over: %s" % muts)
        check(has_ours(sim, "drv-4"), "drv-4 lost its finalizer while b was a standby")
        check(lease_mutations(sim, b.ua) == 0, "b wrote the Lease while c held it")
        check("lease lost" in b.log_text(), "b's log does not say it lost the Lease:\n"
              + b.log_text())

        # c stops cleanly: it releases, b takes the Lease back without
        # waiting for a lease duration
        c.stop()
        c = None
        wait_for("b to hold the Lease again", lambda: holder(sim) == "b" and is_holder(b))
        wait_for("drv-4 deleted by b once it holds the Lease again",
                 lambda: get_pod(sim, "drv-4") is None)
        b.publish([close_ev("s-3", t3 + 1000)])
        wait_for("drv-3 deleted by b", lambda: get_pod(sim, "drv-3") is None)

        # 4. the audit names the instance
        b.stop()
        b = None
        for ident in ("a", "b"):
            r = kjournal(workdir, "actions", "--journal", os.path.join(workdir, ident + ".db"),
                         "--runs", "-o", "json", "-n", "all")
            check(r.returncode == 0, "kjournal actions --runs: %s" % r.stderr)
            runs = [json.loads(x) for x in r.stdout.splitlines()]
            check(runs and all(x["identity"] == ident for x in runs),
                  "runs of %s not recorded as its own: %s" % (ident, runs[:3]))
        r = kjournal(workdir, "actions", "--journal", os.path.join(workdir, "b.db"), "-o", "json",
                     "-n", "all")
        acts = [json.loads(x) for x in r.stdout.splitlines()]
        check(any(x["action"] == "delete" and x["identity"] == "b" for x in acts),
              "b's delete not recorded with its identity: %s" % acts)
        r = kjournal(workdir, "actions", "--journal", os.path.join(workdir, "b.db"), "--runs")
        check("IDENTITY" in r.stdout and " b" in r.stdout, "runs table: %s" % r.stdout)
    finally:
        for k in (a, b, c):
            if k and k.proc.poll() is None:
                try:
                    k.proc.send_signal(signal.SIGCONT)
                except ProcessLookupError:
                    pass
                k.stop()
        sim.stop()


def bad_flags(workdir):
    for args, want in [
        (["--leader-elect-lease-duration", "10s", "--leader-elect-renew-deadline", "10s"],
         "--leader-elect-lease-duration must be greater"),
        (["--leader-elect-retry-period", "9s"], "--leader-elect-renew-deadline must be greater"),
        (["--identity", "a b"], "--identity 'a b'"),
        (["--identity", "x" * 300], "--identity"),
    ]:
        r = subprocess.run([kjtest.program("kjournald"), "--journal",
                            os.path.join(workdir, "bad.db"), "--server", "http://127.0.0.1:1"]
                           + args, capture_output=True, text=True, timeout=kjtest.DEADLINE,
                           env=quiet_env(workdir))
        check(r.returncode == 2 and want in r.stderr,
              "%s: exit %d, stderr %r" % (args, r.returncode, r.stderr))


VERSION = version()


def main():
    workdir = kjtest.tmpdir("kj-leases-")
    bad_flags(workdir)
    central(workdir)
    faulted = os.path.join(workdir, "faults")
    os.mkdir(faulted)
    central(faulted, faults=True)
    cleanup(workdir)
    print("ok: one holder acts; takeover after SIGKILL within lease + retry; a stopped holder "
          "acts on nothing after the takeover; the audit names the instance")


if __name__ == "__main__":
    main()
