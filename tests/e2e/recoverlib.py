"""Helpers for the recovery end-to-end tests (issue 7): kube-sim and kjournald
as real processes, a journal written the way Kyuubi writes it (events over
ZeroMQ through `kjournal publish`), `kjournal recover` passes, and the
scenario every test shares with its exact expected end state.

The scenario is data (SCENARIO_PODS, SCENARIO_SESSIONS, EXPECTED_*): one pod
per cell of DESIGN.md's reconciliation table that the pass acts on, plus the
pods it must leave alone (out of scope, executors, live engines in use).
"""
import hashlib
import http.client
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import kjtest  # noqa: E402

NS = "kyuubi"
OURS = "kyuubi.apache.org/pod-cleanup"
OTHER = "example.com/keep-me"
MIN = 60 * 1000
HOUR = 60 * MIN
# The deadline of a whole `kjournal recover` pass in the tests: a pass takes
# seconds, but many times that under ASan on a busy machine; the deadline
# only stops a pass that hangs.
PASS_TIMEOUT = "10m"


def now_ms():
    return int(time.time() * 1000)


def rfc3339(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def fail(what):
    print("FAIL: " + what, file=sys.stderr)
    sys.exit(1)


def check(cond, what):
    if not cond:
        fail(what)


# --------------------------------------------------------------------------
# kube-sim


class KubeSim:
    """kube-sim on a free port; plain HTTP, no token."""

    def __init__(self, workdir, extra=()):
        self.dir = workdir
        self.port_file = os.path.join(workdir, "kube-sim.port")
        self.log = os.path.join(workdir, "kube-sim.log")
        self.extra = list(extra)
        self.proc = None
        self.port = None

    def start(self):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        args = [kjtest.program("kube-sim"), "--listen", "127.0.0.1:0",
                "--port-file", self.port_file] + self.extra
        self.proc = kjtest.start(args, self.log)

        def port_written():
            if self.proc.poll() is not None:
                fail("kube-sim exited with %d; log:\n%s" % (self.proc.returncode, self.log_text()))
            try:
                with open(self.port_file) as f:
                    return f.read().strip()
            except FileNotFoundError:
                return None
        self.port = int(kjtest.wait_for("kube-sim's port file", port_written))
        kjtest.wait_port(self.port, self.proc)
        self.url = "http://127.0.0.1:%d" % self.port
        return self

    def stop(self):
        rc = kjtest.stop(self.proc)
        check(rc == 0, "kube-sim exit code %d (sanitizer report?) log:\n%s" % (rc, self.log_text()))

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-4000:]
        except FileNotFoundError:
            return ""

    def call(self, method, path, body=None, ctype="application/json", ok=(200, 201)):
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, timeout=kjtest.DEADLINE) as r:
                code, txt = r.status, r.read()
        except urllib.error.HTTPError as e:
            code, txt = e.code, e.read()
        if ok and code not in ok:
            fail("%s %s: HTTP %d %s" % (method, path, code, txt[:300]))
        return code, (json.loads(txt) if txt else None)

    def seed(self, pods):
        self.call("POST", "/_sim/seed", pods)

    def stats(self, reset=False):
        return self.call("POST" if reset else "GET", "/_sim/stats")[1]

    def faults(self, **f):
        return self.call("POST", "/_sim/faults", f)[1]

    def clear_faults(self):
        self.call("DELETE", "/_sim/faults")
        self.faults(continue_ttl=300)

    def pods(self):
        """Every pod now, by (namespace, name)."""
        st = self.call("GET", "/_sim/state")[1]
        return {(p["metadata"].get("namespace", "default"), p["metadata"]["name"]): p
                for p in st.get("pods", [])}

    def delete(self, name, ns=NS):
        self.call("DELETE", "/api/v1/namespaces/%s/pods/%s" % (ns, name), {})


def mutations_by_verb(stats):
    """Counts of mutating requests by verb (any answer): create, update, patch, delete."""
    bv = stats.get("by_verb", {})
    return {v: bv.get(v, 0) for v in ("create", "update", "patch", "delete") if bv.get(v, 0)}


# --------------------------------------------------------------------------
# pods


def pod(name, tag=None, app=None, phase="Running", fins=(OURS,), finished_ago=None, role=None,
        ns=NS, age=HOUR, uid=None, labels=None):
    """A pod as Spark on Kubernetes creates an engine driver, status included."""
    lab = dict(labels or {})
    if tag:
        lab["kyuubi-unique-tag"] = tag
    if app:
        lab["spark-app-selector"] = app
    if role:
        lab["spark-role"] = role
    md = {"name": name, "namespace": ns, "labels": lab,
          "creationTimestamp": rfc3339(now_ms() - age)}
    if fins:
        md["finalizers"] = list(fins)
    if uid:
        md["uid"] = uid
    st = {"phase": phase}
    if phase in ("Running", "Succeeded", "Failed"):
        state = {"running": {"startedAt": rfc3339(now_ms() - age)}}
        if finished_ago is not None:
            state = {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1,
                                    "reason": "Completed" if phase == "Succeeded" else "Error",
                                    "startedAt": rfc3339(now_ms() - age),
                                    "finishedAt": rfc3339(now_ms() - finished_ago)}}
        elif phase != "Running":
            state = {"waiting": {"reason": "Unknown"}}
        st["containerStatuses"] = [{"name": "spark-kubernetes-driver", "ready": False,
                                    "restartCount": 0, "image": "apache/spark:3.5.3",
                                    "state": state}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 0,
                     "restartPolicy": "Never",
                     "containers": [{"name": "spark-kubernetes-driver",
                                     "image": "apache/spark:3.5.3"}]},
            "status": st}


# --------------------------------------------------------------------------
# the journal, written through kjournald


def open_ev(sid, t, tag=None, app=None, ns=NS, user="alice"):
    eng = {"namespace": ns}
    if tag:
        eng["tag"] = tag
    if app:
        eng["id"] = app
    return {"event_id": "o-" + sid, "type": "session_open", "session_id": sid, "user": user,
            "engine": eng, "time_ms": t}


def close_ev(sid, t, reason="client"):
    return {"event_id": "c-" + sid, "type": "session_close", "session_id": sid, "time_ms": t,
            "reason": reason}


def write_journal(workdir, events, journal=None):
    """Starts kjournald (pure journal: --no-reconcile), publishes the events
    with `kjournal publish`, stops it cleanly. Returns the journal path."""
    journal = journal or os.path.join(workdir, "journal.db")
    port = kjtest.free_port()
    ep = "tcp://127.0.0.1:%d" % port
    log = os.path.join(workdir, "kjournald.log")
    d = kjtest.start([kjtest.program("kjournald"), "--journal", journal, "--listen", ep,
                      "--no-reconcile"], log, env=quiet_env(workdir))
    try:
        kjtest.wait_port(port, d)
        evfile = os.path.join(workdir, "events-%d.jsonl" % port)
        with open(evfile, "w") as f:
            for e in events:
                f.write(json.dumps(e) + "\n")
        r = subprocess.run([kjtest.program("kjournal"), "publish", "--endpoint", ep, "--quiet",
                            "--timeout", str(int(kjtest.DEADLINE * 1000)), "--batch", "100", evfile],
                           capture_output=True, text=True, timeout=5 * kjtest.DEADLINE)
        check(r.returncode == 0, "kjournal publish: exit %d: %s" % (r.returncode, r.stderr))
    finally:
        rc = kjtest.stop(d)
    check(rc == 0, "kjournald exit code %d" % rc)
    return journal


def quiet_env(workdir):
    """No kubeconfig anywhere: nothing but what the test passes is configured."""
    env = dict(os.environ)
    env.pop("KUBECONFIG", None)
    env["HOME"] = workdir
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return env


# --------------------------------------------------------------------------
# kjournal


def kjournal(workdir, *args, timeout=6 * kjtest.DEADLINE):
    return subprocess.run([kjtest.program("kjournal")] + list(args), capture_output=True,
                          text=True, timeout=timeout, env=quiet_env(workdir))


def recover_args(sim, journal, *extra):
    return ["recover", "--journal", journal, "--server", sim.url, "--namespace", NS,
            "--quiet", "-o", "json"] + list(extra)


def recover(workdir, sim, journal, *extra, expect=0):
    r = kjournal(workdir, *recover_args(sim, journal, *extra))
    if expect is not None and r.returncode != expect:
        fail("kjournal recover %s: exit %d, expected %d\nstdout:\n%s\nstderr:\n%s"
             % (" ".join(extra), r.returncode, expect, r.stdout[-3000:], r.stderr[-3000:]))
    return r.returncode, [json.loads(l) for l in r.stdout.splitlines() if l.strip()], r.stderr


def sessions(workdir, journal):
    r = kjournal(workdir, "sessions", "--journal", journal, "-o", "json", "-n", "all")
    check(r.returncode == 0, "kjournal sessions: %s" % r.stderr)
    return {s["session_id"]: s for s in (json.loads(l) for l in r.stdout.splitlines() if l)}


def actions(workdir, journal, *extra):
    r = kjournal(workdir, "actions", "--journal", journal, "-o", "json", "-n", "all", *extra)
    check(r.returncode == 0, "kjournal actions: %s" % r.stderr)
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def runs(workdir, journal):
    r = kjournal(workdir, "actions", "--runs", "--journal", journal, "-o", "json", "-n", "all")
    check(r.returncode == 0, "kjournal actions --runs: %s" % r.stderr)
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def file_digest(path):
    """The journal's bytes: the database and its write-ahead log (a missing
    and an empty WAL are the same: any reader may create an empty one)."""
    h = hashlib.sha256()
    for suffix in ("", "-wal"):
        p = path + suffix
        if os.path.exists(p):
            with open(p, "rb") as f:
                data = f.read()
            if data:
                h.update(suffix.encode() + b":" + data)
        h.update(b"|")
    return h.hexdigest()


# --------------------------------------------------------------------------
# the scenario: a Kyuubi cluster after kjournald was down for a while


N_FILLER = 600  # executors of a live engine: more than one list page (limit 500)


def scenario(t):
    """(pods, events) at time t (epoch ms)."""
    pods = [
        # live engines in use: kept; our finalizer ensured
        pod("eng-live-open", tag="t-live-open", app="spark-live-open"),
        pod("eng-live-nofin", tag="t-live-nofin", fins=()),
        pod("eng-live-otherfin", tag="t-live-otherfin", fins=(OTHER,)),
        # a shared engine: one session still open, two closed long ago
        pod("eng-shared", tag="t-shared"),
        # all sessions closed: past / within the engine grace (30m)
        pod("eng-idle", tag="t-idle"),
        pod("eng-idle-recent", tag="t-idle-recent"),
        # terminal with an open session: closed (engine_terminated), released, deleted
        pod("eng-failed-open", tag="t-failed-open", phase="Failed", finished_ago=HOUR),
        # terminal, within the retain period: released, kept
        pod("eng-succeeded-recent", tag="t-succ-recent", phase="Succeeded", finished_ago=MIN),
        # terminal, no finishedAt: released; the retain period starts now
        pod("eng-failed-nofinish", tag="t-failed-nofinish", phase="Failed"),
        # terminal after retain, another controller's finalizer too: ours only released
        pod("eng-failed-otherfin", tag="t-failed-otherfin", phase="Failed", finished_ago=HOUR,
            fins=(OTHER, OURS)),
        # matched by application id only (its tag is not in the journal)
        pod("eng-by-appid", tag="t-unknown-to-journal", app="spark-app-42", phase="Succeeded",
            finished_ago=2 * HOUR),
        # being deleted (deleted below, held by our finalizer) with an open session
        pod("eng-terminating", tag="t-terminating"),
        # orphans: running (reported), failed (released, deleted)
        pod("orphan-running", tag="t-orphan-running", age=5 * HOUR),
        pod("orphan-failed", tag="t-orphan-failed", phase="Failed", finished_ago=HOUR),
        # out of scope: another namespace; no kyuubi-unique-tag label
        pod("eng-idle", tag="t-idle", ns="other", phase="Failed", finished_ago=HOUR),
        pod("not-an-engine", phase="Failed", finished_ago=HOUR, labels={"app": "web"}),
    ]
    for i in range(N_FILLER):
        pods.append(pod("eng-live-open-exec-%d" % i, tag="t-live-open", app="spark-live-open",
                        role="executor", fins=()))
    ev = [
        open_ev("s-live-open", t - 2 * HOUR, tag="t-live-open", app="spark-live-open"),
        open_ev("s-live-nofin", t - HOUR, tag="t-live-nofin"),
        open_ev("s-live-otherfin", t - HOUR, tag="t-live-otherfin"),
        open_ev("s-shared-1", t - 5 * HOUR, tag="t-shared"),
        open_ev("s-shared-2", t - 4 * HOUR, tag="t-shared"),
        open_ev("s-shared-3", t - 3 * HOUR, tag="t-shared"),
        close_ev("s-shared-1", t - 4 * HOUR),
        close_ev("s-shared-2", t - 3 * HOUR, "idle_timeout"),
        open_ev("s-idle", t - 3 * HOUR, tag="t-idle"),
        close_ev("s-idle", t - 2 * HOUR),
        open_ev("s-idle-recent", t - 3 * HOUR, tag="t-idle-recent"),
        close_ev("s-idle-recent", t - 5 * MIN),
        open_ev("s-failed-open", t - 3 * HOUR, tag="t-failed-open"),
        open_ev("s-succ-recent", t - 3 * HOUR, tag="t-succ-recent"),
        close_ev("s-succ-recent", t - 2 * MIN),
        open_ev("s-failed-nofinish", t - 3 * HOUR, tag="t-failed-nofinish"),
        close_ev("s-failed-nofinish", t - 2 * HOUR),
        open_ev("s-failed-otherfin", t - 3 * HOUR, tag="t-failed-otherfin"),
        close_ev("s-failed-otherfin", t - 2 * HOUR),
        open_ev("s-appid", t - 3 * HOUR, app="spark-app-42"),
        open_ev("s-terminating", t - 3 * HOUR, tag="t-terminating"),
        # no pod at all: past the submit grace (3m), within it, in another namespace
        open_ev("s-missing-old", t - 10 * MIN, tag="t-missing-old"),
        open_ev("s-missing-new", t - 1 * MIN, tag="t-missing-new"),
        open_ev("s-missing-elsewhere", t - 10 * MIN, tag="t-missing-elsewhere", ns="elsewhere"),
    ]
    return pods, ev


# What every pod in scope looks like after the pass: None (gone), or
# (finalizers, terminating). Pods not listed (filler executors) are checked
# to be untouched.
EXPECTED_PODS = {
    (NS, "eng-live-open"): ([OURS], False),
    (NS, "eng-live-nofin"): ([OURS], False),
    (NS, "eng-live-otherfin"): ([OTHER, OURS], False),
    (NS, "eng-shared"): ([OURS], False),
    (NS, "eng-idle"): None,
    (NS, "eng-idle-recent"): ([OURS], False),
    (NS, "eng-failed-open"): None,
    (NS, "eng-succeeded-recent"): ([], False),
    (NS, "eng-failed-nofinish"): ([], False),
    (NS, "eng-failed-otherfin"): ([OTHER], True),
    (NS, "eng-by-appid"): None,
    (NS, "eng-terminating"): None,
    (NS, "orphan-running"): ([OURS], False),
    (NS, "orphan-failed"): None,
    ("other", "eng-idle"): ([OURS], False),
    (NS, "not-an-engine"): ([OURS], False),
}
# DELETEs that remove a pod (eng-failed-otherfin is only marked: another
# controller's finalizer holds it; eng-terminating goes when ours is released).
EXPECTED_REMOVED_BY_DELETE = 4

EXPECTED_SESSIONS = {
    "s-live-open": ("open", None),
    "s-live-nofin": ("open", None),
    "s-live-otherfin": ("open", None),
    "s-shared-1": ("closed", "client"),
    "s-shared-2": ("closed", "idle_timeout"),
    "s-shared-3": ("open", None),
    "s-idle": ("closed", "client"),
    "s-idle-recent": ("closed", "client"),
    "s-failed-open": ("closed", "engine_terminated"),
    "s-succ-recent": ("closed", "client"),
    "s-failed-nofinish": ("closed", "client"),
    "s-failed-otherfin": ("closed", "client"),
    "s-appid": ("closed", "engine_terminated"),
    "s-terminating": ("closed", "pod_deleted"),
    "s-missing-old": ("closed", "engine_missing"),
    "s-missing-new": ("open", None),
    "s-missing-elsewhere": ("open", None),
}

# The audit of the first pass: (pod, action, result), in any order. The
# session closed for a missing engine is recorded against pod "-".
EXPECTED_ACTIONS = sorted([
    ("eng-live-nofin", "add_finalizer", "ok"),
    ("eng-live-otherfin", "add_finalizer", "ok"),
    ("eng-idle", "release_finalizer", "ok"),
    ("eng-idle", "delete", "ok"),
    ("eng-failed-open", "close_session", "ok"),
    ("eng-failed-open", "release_finalizer", "ok"),
    ("eng-failed-open", "delete", "ok"),
    ("eng-succeeded-recent", "release_finalizer", "ok"),
    ("eng-failed-nofinish", "release_finalizer", "ok"),
    ("eng-failed-otherfin", "release_finalizer", "ok"),
    ("eng-failed-otherfin", "delete", "ok"),
    ("eng-by-appid", "close_session", "ok"),
    ("eng-by-appid", "release_finalizer", "ok"),
    ("eng-by-appid", "delete", "ok"),
    ("eng-terminating", "close_session", "ok"),
    ("eng-terminating", "release_finalizer", "ok"),
    ("orphan-running", "report_orphan", "reported"),
    ("orphan-failed", "release_finalizer", "ok"),
    ("orphan-failed", "delete", "ok"),
    ("-", "close_session", "ok"),
])
# What a second pass records: nothing. The running orphan was reported by the
# first pass and has not changed since (issue 10: no row per orphan per pass).
EXPECTED_ACTIONS_AGAIN = []


class Scenario:
    """kube-sim seeded with the scenario and a journal of its sessions."""

    def __init__(self, workdir, sim_flags=()):
        self.dir = workdir
        self.t = now_ms()
        self.pods, self.events = scenario(self.t)
        self.sim = KubeSim(workdir, sim_flags).start()
        try:
            self.sim.seed(self.pods)
            # the pod being deleted while kjournald was down: our finalizer holds it
            self.sim.delete("eng-terminating")
            p = self.sim.pods()[(NS, "eng-terminating")]
            check(p["metadata"].get("deletionTimestamp"),
                  "setup: eng-terminating is not terminating")
            self.journal = write_journal(workdir, self.events)
            self.before = self.sim.pods()
            self.sim.stats(reset=True)
        except BaseException:
            kjtest.stop(self.sim.proc)  # no kube-sim left behind by a failed setup
            raise

    def close(self):
        self.sim.stop()


def cleanup(workdir):
    """Removes a passing test's directory (a failing one is kept to look at)."""
    shutil.rmtree(workdir, ignore_errors=True)


def check_pods(sim, before, expected=None, why=""):
    """Every pod in the expected state; every other pod exactly as before."""
    expected = dict(EXPECTED_PODS if expected is None else expected)
    now = sim.pods()
    for key, want in sorted(expected.items()):
        got = now.get(key)
        name = "%s/%s" % key
        if want is None:
            check(got is None, "%spod %s should be gone, it is %s" % (why, name, got and got["metadata"]))
            continue
        check(got is not None, "%spod %s should be kept, it is gone" % (why, name))
        fins, terminating = want
        md = got["metadata"]
        check(md.get("finalizers", []) == fins,
              "%spod %s: finalizers %s, expected %s" % (why, name, md.get("finalizers", []), fins))
        check(bool(md.get("deletionTimestamp")) == terminating,
              "%spod %s: deletionTimestamp %s, expected %s"
              % (why, name, md.get("deletionTimestamp"), "set" if terminating else "none"))
        if key in before:
            check(md["uid"] == before[key]["metadata"]["uid"], "%spod %s: uid changed" % (why, name))
    for key, p in now.items():
        if key in expected:
            continue
        check(key in before, "%sunexpected pod %s/%s appeared" % (why, key[0], key[1]))
        check(p["metadata"]["resourceVersion"] == before[key]["metadata"]["resourceVersion"],
              "%spod %s/%s was modified" % (why, key[0], key[1]))
    for key in before:
        check(key in now or key in expected, "%spod %s/%s vanished" % (why, key[0], key[1]))


def check_sessions(workdir, journal, expected=None):
    expected = EXPECTED_SESSIONS if expected is None else expected
    got = sessions(workdir, journal)
    check(set(got) == set(expected),
          "sessions %s, expected %s" % (sorted(got), sorted(expected)))
    for sid, (state, reason) in sorted(expected.items()):
        s = got[sid]
        check(s.get("state") == state, "session %s: state %s, expected %s" % (sid, s.get("state"), state))
        check(s.get("close_reason") == reason,
              "session %s: close reason %s, expected %s" % (sid, s.get("close_reason"), reason))
        # one open event, and one close event when closed: never a second close
        check(s.get("events") == (1 if state == "open" else 2),
              "session %s: %s events" % (sid, s.get("events")))


def action_triples(rows):
    return sorted((a.get("pod"), a.get("action"), a.get("result")) for a in rows)


def check_no_mutation(stats, what):
    m = mutations_by_verb(stats)
    check(not m and stats.get("mutations", 0) == 0,
          "%s mutated: %s (mutations=%s)" % (what, m, stats.get("mutations")))


class Hook:
    """fn(method, path) runs once, for the first request whose method is
    method (None: any) and whose path matches the regular expression path."""

    def __init__(self, method, path, fn):
        self.method, self.rx, self.fn = method, re.compile(path), fn
        self.fired = threading.Event()
        self.error = None

    def __repr__(self):
        return "%s %s" % (self.method, self.rx.pattern)


class InterceptProxy:
    """An HTTP/1.1 reverse proxy in front of kube-sim for races: when a
    request matching a hook has arrived whole, the hook runs (another writer
    changes the pod) before the request goes on to kube-sim. The request
    waits for the hook, however long it takes: no timing window. Everything
    else passes through unchanged; point `--server` at .url."""

    HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
           "upgrade", "expect", "content-length"}

    def __init__(self, upstream_port, hooks):
        self.upstream_port = upstream_port
        self.hooks = list(hooks)
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def relay(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                proxy.run_hooks(self.command, self.path)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in proxy.HOP}
                try:
                    if getattr(self, "upstream", None) is None:
                        self.upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port,
                                                                   timeout=kjtest.DEADLINE)
                    self.upstream.request(self.command, self.path, body=body, headers=headers)
                    r = self.upstream.getresponse()
                    data = r.read()
                except (OSError, http.client.HTTPException):
                    # kube-sim dropped it: so does the proxy (no answer)
                    self.upstream = None
                    self.close_connection = True
                    return
                try:
                    self.send_response_only(r.status, r.reason)
                    for k, v in r.getheaders():
                        if k.lower() not in proxy.HOP:
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client went away meanwhile
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def run_hooks(self, method, path):
        for h in self.hooks:
            with self.lock:
                if h.method not in (None, method) or h.fired.is_set() or not h.rx.search(path):
                    continue
                h.fired.set()
            try:
                h.fn(method, path)
            except BaseException as e:  # reported by the test
                h.error = e

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
