"""kjournald watches the engine pods (DESIGN.md, "Watching pods"), with real
processes and `--resync 1h`, so that only the watch can explain a reaction
within seconds.

1. The three reactions, each measured from the moment the change is visible
   in kube-sim (its API call has returned) to kjournald's action as its audit
   records it, and each within 2 s:
   - a live engine pod appears for an open session: our finalizer goes on;
   - a pod turns Failed with open sessions: the sessions are closed
     (engine_terminated), our finalizer released;
   - someone deletes a pod (Terminating on our finalizer): its sessions are
     closed (pod_deleted), the finalizer released, the pod gone.
   The audit names the trigger: the runs of these actions are "watch" runs.
2. Under dropped streams, streams ended early and 410s (HTTP and in the
   stream), many pods changed: the end state is exact and nothing is mutated
   twice (the audit, and kube-sim's count of successful patches).
3. kjournald down while pods change, then back: its start-up pass and the
   watch bring everything into agreement.
"""
import datetime
import os
import urllib.request
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.environ.get("KJ_SOURCE_DIR", "../.."), "tests"))
sys.path.insert(0, os.path.dirname(__file__))
import kjtest  # noqa: E402
from recoverlib import (KubeSim, NS, OURS, actions, check, cleanup, close_ev, kjournal,  # noqa: E402
                        now_ms, open_ev, pod, runs, sessions)
from test_kjournald_reconcile import publish, read, start_kjournald  # noqa: E402

wait_for = kjtest.wait_for
LIMIT_MS = 2000  # the bound for each reaction in this test
PODS = "/api/v1/namespaces/%s/pods" % NS


def kjd(workdir, sim, journal, *extra):
    return start_kjournald(workdir, journal, "--server", sim.url, "--namespace", NS,
                           "--resync", "1h", "--log-level", "info", *extra)


def metrics(port):
    """kjournald's /metrics as {name{labels}: value}."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=kjtest.DEADLINE) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def get_pod(sim, name):
    code, body = sim.call("GET", "%s/%s" % (PODS, name), ok=None)
    return body if code == 200 else None


def fins(sim, name):
    p = get_pod(sim, name)
    return (p or {}).get("metadata", {}).get("finalizers") or []


def set_phase(sim, name, phase):
    sim.call("PATCH", "%s/%s/status" % (PODS, name), {"status": {"phase": phase}},
             ctype="application/merge-patch+json")


def visible(fn):
    """Does fn (an API call) and returns the wall-clock ms when its answer
    came back: the change is visible in kube-sim from then on at the latest."""
    fn()
    return now_ms()


def action_of(workdir, journal, pod_name, action, result="ok"):
    for a in actions(workdir, journal):
        if a.get("pod") == pod_name and a.get("action") == action and a.get("result") == result:
            return a
    return None


def trigger_of(workdir, journal, run_id):
    return {r["id"]: r["trigger"] for r in runs(workdir, journal)}.get(run_id)


def ms_of(text):
    """kjournal's JSON times (RFC 3339 with milliseconds) as epoch ms."""
    return int(round(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000))


def measured(workdir, journal, pod_name, action, t_visible, what, figures):
    a = wait_for("%s (%s of %s) in the audit" % (what, action, pod_name),
                 lambda: action_of(workdir, journal, pod_name, action))
    took = ms_of(a["time"]) - t_visible
    figures.append((what, took))
    check(took <= LIMIT_MS, "%s took %d ms (limit %d ms)" % (what, took, LIMIT_MS))
    trig = trigger_of(workdir, journal, a["run"])
    check(trig == "watch", "%s: trigger %r, want 'watch'" % (what, trig))
    return a


def three_reactions(workdir):
    sim = KubeSim(workdir).start()
    journal = os.path.join(workdir, "react.db")
    figures = []
    try:
        # pods of open sessions, held by our finalizer, for the failure and the delete
        sim.seed([pod("drv-fail", tag="t-fail"), pod("drv-del", tag="t-del")])
        d, ep, log = kjd(workdir, sim, journal)
        try:
            t = now_ms()
            publish(workdir, ep, [open_ev("s-fail", t, tag="t-fail"), open_ev("s-del", t, tag="t-del"),
                                  open_ev("s-new", t, tag="t-new")])
            wait_for("kjournald's start-up pass and the watch",
                     lambda: "trigger=startup" in read(log) and "watch" in
                     (sim.stats().get("by_verb") or {}) and sim.stats()["by_verb"]["watch"] > 0)
            # 1. the engine pod appears after its session opened
            tv = visible(lambda: sim.call("POST", PODS, pod("drv-new", tag="t-new", fins=())))
            measured(workdir, journal, "drv-new", "add_finalizer", tv, "finalizer on a new engine pod",
                     figures)
            check(OURS in fins(sim, "drv-new"), "our finalizer on drv-new")
            # 2. the engine fails
            tv = visible(lambda: set_phase(sim, "drv-fail", "Failed"))
            measured(workdir, journal, "drv-fail", "close_session", tv, "sessions of a failed pod closed",
                     figures)
            measured(workdir, journal, "drv-fail", "release_finalizer", tv,
                     "finalizer of a failed pod released", figures)
            check(get_pod(sim, "drv-fail") is not None, "the failed pod stays for the retain period")
            # 3. someone deletes an engine pod
            tv = visible(lambda: sim.delete("drv-del"))
            measured(workdir, journal, "drv-del", "close_session", tv, "sessions of a deleted pod closed",
                     figures)
            measured(workdir, journal, "drv-del", "release_finalizer", tv,
                     "finalizer of a deleted pod released", figures)
            wait_for("the deleted pod to go", lambda: get_pod(sim, "drv-del") is None)
            ss = sessions(workdir, journal)
            check(ss["s-fail"]["state"] == "closed" and ss["s-fail"]["close_reason"] == "engine_terminated",
                  "s-fail: %r" % ss["s-fail"])
            check(ss["s-del"]["state"] == "closed" and ss["s-del"]["close_reason"] == "pod_deleted",
                  "s-del: %r" % ss["s-del"])
            check(ss["s-new"]["state"] == "open", "s-new: %r" % ss["s-new"])
            # /metrics: not served here; the log names the watch passes
            check("trigger=watch" in read(log), "the log names the watch passes")
        finally:
            rc = kjtest.stop(d)
        check(rc == 0, "kjournald exit code %d; log:\n%s" % (rc, read(log)[-3000:]))
    finally:
        sim.stop()
    for what, took in figures:
        print("  %-40s %5d ms" % (what, took))
    print("ok: the three reactions within %d ms each, by the watch" % LIMIT_MS)


def ok_actions(workdir, journal):
    """(pod, action) -> number of successful actions."""
    n = {}
    for a in actions(workdir, journal):
        if a.get("result") == "ok":
            n[(a.get("pod"), a.get("action"))] = n.get((a.get("pod"), a.get("action")), 0) + 1
    return n


def under_faults(workdir):
    N = 12
    sim = KubeSim(workdir, ["--watch-drop-rate", "20", "--watch-end-after", "2"]).start()
    journal = os.path.join(workdir, "faults.db")
    try:
        sim.seed([pod("f-fail-%d" % i, tag="tf-%d" % i) for i in range(N)]
                 + [pod("f-del-%d" % i, tag="td-%d" % i) for i in range(N)])
        # a 410 as the HTTP status of two watch requests
        sim.faults(fail_nth=["watch:3:410", "watch:6:410"])
        mport = kjtest.free_port()
        d, ep, log = kjd(workdir, sim, journal, "--metrics", "127.0.0.1:%d" % mport)
        try:
            t = now_ms()
            evs = ([open_ev("sf-%d" % i, t, tag="tf-%d" % i) for i in range(N)]
                   + [open_ev("sd-%d" % i, t, tag="td-%d" % i) for i in range(N)]
                   + [open_ev("sn-%d" % i, t, tag="tn-%d" % i) for i in range(N)])
            publish(workdir, ep, evs)
            wait_for("the start-up pass", lambda: "trigger=startup" in read(log))
            base = sim.stats()
            for i in range(N):
                sim.call("POST", PODS, pod("f-new-%d" % i, tag="tn-%d" % i, fins=()))
                set_phase(sim, "f-fail-%d" % i, "Failed")
                sim.delete("f-del-%d" % i)
            # Beyond kube-sim's event window while every stream is cut (no
            # bookmark at a cut): the watch resumes from a version older than
            # the window and gets an ERROR 410 in the stream.
            # the two 410s as an HTTP status first (their relists move the
            # watch's version past anything)
            wait_for("two 410s as an HTTP status handled by listing again",
                     lambda: metrics(mport).get("kjournal_watch_expired_total", 0) >= 2)
            sim.faults(watch_drop_rate=100, watch_end_after=0)
            # streams opened before this may still end with a bookmark (which
            # moves the watch's version past the noise): two cuts first
            cut = sim.stats()["faults"]["watch_dropped"]
            wait_for("two streams cut", lambda: sim.stats()["faults"]["watch_dropped"] >= cut + 2)
            sim.seed([pod("noise-%05d" % i, labels={"other": "x"}, fins=()) for i in range(8300)])
            # and one in a stream
            wait_for("a 410 in a stream handled by listing again",
                     lambda: metrics(mport).get("kjournal_watch_expired_total", 0) >= 3)
            sim.faults(watch_drop_rate=20, watch_end_after=2)
            wait_for("a stream ended early", lambda: sim.stats()["faults"]["watch_ended_early"] > 0)

            def agreed():
                ss = sessions(workdir, journal)
                for i in range(N):
                    if ss["sf-%d" % i]["state"] != "closed" or ss["sd-%d" % i]["state"] != "closed":
                        return False
                    if OURS not in fins(sim, "f-new-%d" % i) or OURS in fins(sim, "f-fail-%d" % i):
                        return False
                    if get_pod(sim, "f-del-%d" % i) is not None:
                        return False
                return True
            wait_for("agreement under faults", agreed)
            ss = sessions(workdir, journal)
            for i in range(N):
                check(ss["sf-%d" % i]["close_reason"] == "engine_terminated", "sf-%d %r" % (i, ss["sf-%d" % i]))
                check(ss["sd-%d" % i]["close_reason"] == "pod_deleted", "sd-%d %r" % (i, ss["sd-%d" % i]))
                check(ss["sn-%d" % i]["state"] == "open", "sn-%d %r" % (i, ss["sn-%d" % i]))
            # nothing mutated twice: one successful action of each kind per pod,
            # and kube-sim saw exactly as many successful patches
            n = ok_actions(workdir, journal)
            twice = {k: v for k, v in n.items() if v > 1}
            check(not twice, "mutated more than once: %s" % twice)
            after = sim.stats()
            key = "patch pods 200"
            patched = after["by_verb_kind_code"].get(key, 0) - base["by_verb_kind_code"].get(key, 0)
            want = sum(v for (p, a), v in n.items() if a in ("add_finalizer", "release_finalizer")
                       and (p.startswith("f-new") or p.startswith("f-fail") or p.startswith("f-del")))
            check(patched == want == 3 * N, "patches: kube-sim %d, audit %d, want %d" % (patched, want, 3 * N))
            f = after["faults"]
            print("  faults: %d streams cut, %d ended early" % (f["watch_dropped"], f["watch_ended_early"]))
            m = metrics(mport)
            check("code=410" in read(log), "an ERROR 410 in a stream, logged")
            check(f["watch_dropped"] > 0 and f["watch_ended_early"] > 0, "faults happened: %s" % f)
            check(m["kjournal_watch_relists_total"] >= 3 and m["kjournal_watch_restarts_total"] > 0
                  and m['kjournal_watch_events_total{type="MODIFIED"}'] > 0
                  and m["kjournal_watch_reaction_seconds_count"] > 0,
                  "/metrics: %s" % {k: v for k, v in m.items() if "watch" in k})
            print("  /metrics: relists %d, restarts %d, reactions %d" %
                  (m["kjournal_watch_relists_total"], m["kjournal_watch_restarts_total"],
                   m["kjournal_watch_reaction_seconds_count"]))
        finally:
            rc = kjtest.stop(d)
        check(rc == 0, "kjournald exit code %d; log:\n%s" % (rc, read(log)[-3000:]))
    finally:
        sim.stop()
    print("ok: under cut streams, early ends and 410s the end state is exact, nothing mutated twice")


def down_then_back(workdir):
    sim = KubeSim(workdir).start()
    journal = os.path.join(workdir, "down.db")
    try:
        sim.seed([pod("b-fail", tag="b-fail"), pod("b-del", tag="b-del"), pod("b-live", tag="b-live")])
        d, ep, log = kjd(workdir, sim, journal)
        t = now_ms()
        publish(workdir, ep, [open_ev(s, t, tag=s) for s in ("b-fail", "b-del", "b-live", "b-new")])
        wait_for("the start-up pass", lambda: "trigger=startup" in read(log))
        d.send_signal(signal.SIGKILL)
        d.wait(timeout=kjtest.DEADLINE)
        # while it is down
        set_phase(sim, "b-fail", "Failed")
        sim.delete("b-del")
        sim.call("POST", PODS, pod("b-new", tag="b-new", fins=()))
        d, ep, log = kjd(workdir, sim, journal)
        try:
            def agreed():
                ss = sessions(workdir, journal)
                return (ss["b-fail"]["state"] == "closed" and ss["b-del"]["state"] == "closed"
                        and get_pod(sim, "b-del") is None and OURS not in fins(sim, "b-fail")
                        and OURS in fins(sim, "b-new"))
            wait_for("agreement after the restart", agreed)
            ss = sessions(workdir, journal)
            check(ss["b-fail"]["close_reason"] == "engine_terminated", "b-fail %r" % ss["b-fail"])
            check(ss["b-del"]["close_reason"] == "pod_deleted", "b-del %r" % ss["b-del"])
            check(ss["b-live"]["state"] == "open" and ss["b-new"]["state"] == "open", "live sessions open")
            # and the watch works after the restart
            tv = visible(lambda: set_phase(sim, "b-live", "Succeeded"))
            a = wait_for("b-live's session closed by the watch",
                         lambda: action_of(workdir, journal, "b-live", "close_session"))
            check(trigger_of(workdir, journal, a["run"]) == "watch", "closed by a watch pass")
            print("  after the restart, a change took %d ms" % (ms_of(a["time"]) - tv))
        finally:
            rc = kjtest.stop(d)
        check(rc == 0, "kjournald exit code %d; log:\n%s" % (rc, read(log)[-3000:]))
    finally:
        sim.stop()
    print("ok: kjournald down while pods changed, then back: agreement")


def main():
    workdir = kjtest.tmpdir("kj-kjd-watch-")
    only = sys.argv[1:]  # names of the parts to run (all by default)
    for part in (three_reactions, under_faults, down_then_back):
        if not only or part.__name__ in only:
            part(workdir)
    cleanup(workdir)  # kept when a part failed, for its logs
    print("all watch tests ok")


if __name__ == "__main__":
    main()
