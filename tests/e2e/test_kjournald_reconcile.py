"""kjournald's reconciler thread, with real processes.

1. Live reaction: an open event with an engine puts our finalizer on the
   engine pod; its close event releases the finalizer and deletes the pod.
2. Without any Kubernetes configuration kjournald runs as a pure journal and
   says so in its log.
3. SIGTERM while the start-up recovery pass waits on a slow API server:
   kjournald stops within a couple of seconds, exit code 0, and every event
   it acknowledged is in the journal.
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ.get("KJ_SOURCE_DIR", "../.."), "tests"))
sys.path.insert(0, os.path.dirname(__file__))
import kjtest  # noqa: E402
from recoverlib import (KubeSim, NS, OURS, check, cleanup, fail, kjournal, now_ms, open_ev,  # noqa: E402
                        close_ev, pod, quiet_env)


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
    r = subprocess.run([kjtest.program("kjournal"), "publish", "--endpoint", ep, "--quiet", "-"],
                       input=lines, capture_output=True, text=True, timeout=60,
                       env=quiet_env(workdir))
    check(r.returncode == 0, "kjournal publish: exit %d: %s" % (r.returncode, r.stderr))


def wait_for(what, cond, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    fail("timed out waiting for " + what)


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
    sim = KubeSim(workdir, ["--latency-ms", "8000", "--jitter-ms", "0"]).start()
    journal = os.path.join(workdir, "slow.db")
    try:
        d, ep, log = start_kjournald(workdir, journal, "--server", sim.url, "--namespace", NS)
        wait_for("the recovery pass to start", lambda: "recovery pass starting" in read(log))
        publish(workdir, ep, [open_ev("s-slow", now_ms(), tag="s-slow")])
        t0 = time.time()
        d.send_signal(signal.SIGTERM)
        try:
            rc = d.wait(10)
        except subprocess.TimeoutExpired:
            d.kill()
            fail("kjournald did not stop within 10 s of SIGTERM during a slow pass")
        took = time.time() - t0
        check(rc == 0, "kjournald exit code %d; log:\n%s" % (rc, read(log)[-3000:]))
        check(took < 5, "kjournald took %.1f s to stop" % took)
        r = kjournal(workdir, "show", "--journal", journal, "s-slow")
        check(r.returncode == 0, "the acknowledged event is not in the journal: %s" % r.stderr)
        print("stopped %.2f s after SIGTERM during a pass held up by an 8 s API latency" % took)
    finally:
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
