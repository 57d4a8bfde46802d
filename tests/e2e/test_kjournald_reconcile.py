"""kjournald's reconciler thread, with real processes.

1. Live reaction: an open event with an engine puts our finalizer on the
   engine pod; its close event releases the finalizer and deletes the pod.
2. Without any Kubernetes configuration kjournald runs as a pure journal and
   says so in its log.
3. SIGTERM while the start-up recovery pass waits on an API server that
   does not answer (a proxy holds the request until the test lets it go):
   kjournald stops without waiting for the answer, exit code 0, and every
   event it acknowledged is in the journal.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.environ.get("KJ_SOURCE_DIR", "../.."), "tests"))
sys.path.insert(0, os.path.dirname(__file__))
import kjtest  # noqa: E402
from recoverlib import (Hook, InterceptProxy, KubeSim, NS, OURS, check, cleanup, fail,  # noqa: E402
                        kjournal, now_ms, open_ev, close_ev, pod, quiet_env)


def start_kjournald(workdir, journal, *extra):
    port = kjtest.free_port()
    ep = "tcp://127.0.0.1:%d" % port
    log = os.path.join(workdir, "kjournald-%d.log" % port)
    proc = kjtest.start([kjtest.program("kjournald"), "--journal", journal, "--listen", ep]
                        + list(extra), log, env=quiet_env(workdir))
    kjtest.wait_port(port, proc)
    return proc, ep, log


def publish(workdir, ep, events):
    lines = "".join(json.dumps(e) + "\n" for e in events)
    r = subprocess.run([kjtest.program("kjournal"), "publish", "--endpoint", ep, "--quiet",
                        "--timeout", str(int(kjtest.DEADLINE * 1000)), "-"],
                       input=lines, capture_output=True, text=True, timeout=5 * kjtest.DEADLINE,
                       env=quiet_env(workdir))
    check(r.returncode == 0, "kjournal publish: exit %d: %s" % (r.returncode, r.stderr))


wait_for = kjtest.wait_for


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def live_reaction(workdir):
    sim = KubeSim(workdir).start()
    journal = os.path.join(workdir, "live.db")
    try:
        sim.seed([pod("drv-live", tag="s-live", fins=())])
        d, ep, log = start_kjournald(workdir, journal, "--server", sim.url, "--namespace", NS,
                                     "--engine-grace", "0s")
        try:
            t = now_ms()
            publish(workdir, ep, [open_ev("s-live", t, tag="s-live")])
            wait_for("our finalizer on the open session's pod",
                     lambda: OURS in (sim.call("GET", "/api/v1/namespaces/%s/pods/drv-live" % NS)[1]
                                      ["metadata"].get("finalizers") or []))
            publish(workdir, ep, [close_ev("s-live", t + 1000)])
            wait_for("the closed session's pod to go",
                     lambda: sim.call("GET", "/api/v1/namespaces/%s/pods/drv-live" % NS,
                                      ok=None)[0] == 404)
        finally:
            rc = kjtest.stop(d)
        check(rc == 0, "kjournald exit code %d; log:\n%s" % (rc, read(log)[-3000:]))
        r = kjournal(workdir, "actions", "--journal", journal, "-o", "json", "-n", "all")
        check(r.returncode == 0, "kjournal actions: %s" % r.stderr)
        for want in ('"add_finalizer"', '"release_finalizer"', '"delete"'):
            check(want in r.stdout, "audit has no %s action:\n%s" % (want, r.stdout))
    finally:
        sim.stop()


def no_configuration(workdir):
    journal = os.path.join(workdir, "pure.db")
    d, ep, log = start_kjournald(workdir, journal)
    publish(workdir, ep, [open_ev("s-pure", now_ms(), tag="s-pure")])
    rc = kjtest.stop(d)
    check(rc == 0, "kjournald exit code %d" % rc)
    text = read(log)
    check("reconciler off" in text and "pure journal" in text,
          "the log does not say kjournald runs as a pure journal:\n" + text[-2000:])


def stop_during_slow_pass(workdir):
    sim = KubeSim(workdir).start()
    release = threading.Event()
    held = Hook(None, "", lambda method, path: release.wait())  # the pass's first request
    proxy = InterceptProxy(sim.port, [held]).start()
    journal = os.path.join(workdir, "slow.db")
    try:
        d, ep, log = start_kjournald(workdir, journal, "--server", proxy.url, "--namespace", NS)
        check(held.fired.wait(kjtest.DEADLINE), "the recovery pass sent no request; log:\n%s" % read(log)[-3000:])
        publish(workdir, ep, [open_ev("s-slow", now_ms(), tag="s-slow")])
        t0 = time.time()
        d.send_signal(signal.SIGTERM)
        try:
            rc = d.wait(kjtest.DEADLINE)
        except subprocess.TimeoutExpired:
            d.kill()
            fail("kjournald did not stop within %.0f s of SIGTERM while its pass waited for an answer"
                 % kjtest.DEADLINE)
        # The held list request has the pass's deadline (10 minutes) and is
        # never answered before release: stopping within DEADLINE means
        # kjournald did not wait for it.
        took = time.time() - t0
        check(rc == 0, "kjournald exit code %d; log:\n%s" % (rc, read(log)[-3000:]))
        r = kjournal(workdir, "show", "--journal", journal, "s-slow")
        check(r.returncode == 0, "the acknowledged event is not in the journal: %s" % r.stderr)
        print("stopped %.2f s after SIGTERM while its pass waited for an answer that never came" % took)
    finally:
        release.set()
        proxy.stop()
        sim.stop()


def main():
    workdir = kjtest.tmpdir("kj-kjd-rec-")
    live_reaction(workdir)
    no_configuration(workdir)
    stop_during_slow_pass(workdir)
    cleanup(workdir)
    print("ok: live reaction, pure journal without configuration, prompt stop during a pass")


if __name__ == "__main__":
    main()
