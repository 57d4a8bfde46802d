#!/usr/bin/env python3
"""bench_watch - figures for kjournald's watch on the engine pods (issue 13).
Not a test: it prints figures and checks only that every reaction came.

kube-sim with --latency-ms 2 on every request, N engine pods (default 1,000)
Running with our finalizer and an open session each, plus NEW open sessions
whose pods do not exist yet; kjournald with --resync 1h (only the watch can
explain a reaction within seconds). Then, at RATE changes/s (default 50),
interleaved: FAIL pods turn Failed (status subresource), DELETE pods are
deleted by hand (they stay Terminating on our finalizer), NEW engine pods
appear for their open sessions. Each change's moment is when kube-sim's
answer to it came back (from then on it is visible); each reaction's is the
time kjournald's audit gives its action:

  - failed:  the pod's sessions closed (close_session, engine_terminated)
             and its finalizer released;
  - deleted: its sessions closed (pod_deleted) and the finalizer released;
  - created: our finalizer added.

Reported: p50, p99 and max per reaction; kjournald's CPU (utime+stime from
/proc) while idle for IDLE seconds before the changes, and while reacting.

usage: bench_watch.py [--build DIR] [--pods N] [--fail N] [--delete N]
                      [--new N] [--rate R] [--idle S] [--latency-ms MS] [--keep]
(--build: a Release build directory; default $KJ_BUILD_DIR, else build next
to this checkout's sources.)
"""
import argparse
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
NS = "kyuubi"
FINALIZER = "kyuubi.apache.org/pod-cleanup"
PODS = "/api/v1/namespaces/%s/pods" % NS


def program(build, name):
    for sub in ("tools/" + name, "tools/bench", "tools"):
        p = os.path.join(build, sub, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    sys.exit("bench_watch: %s not built under %s" % (name, build))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rfc3339(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_ms():
    return int(time.time() * 1000)


def ms_of(text):
    return int(round(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000))


def pod(name, tag, fins=True):
    md = {"name": name, "namespace": NS, "labels": {"kyuubi-unique-tag": tag, "spark-role": "driver"},
          "creationTimestamp": rfc3339(now_ms() - 3600000)}
    if fins:
        md["finalizers"] = [FINALIZER]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 0, "restartPolicy": "Never",
                     "containers": [{"name": "spark-kubernetes-driver", "image": "apache/spark:3.5.3"}]},
            "status": {"phase": "Running"}}


class Sim:
    def __init__(self, build, wd, latency_ms):
        self.port = free_port()
        self.log = open(os.path.join(wd, "kube-sim.log"), "ab")
        self.proc = subprocess.Popen([program(build, "kube-sim"), "--listen", "127.0.0.1:%d" % self.port],
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        self.url = "http://127.0.0.1:%d" % self.port
        wait("kube-sim", lambda: port_open(self.port))
        self.latency_ms = latency_ms

    def call(self, method, path, body=None, ctype="application/json", ok=(200, 201)):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data:
            req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return e.code, None
            raise

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def wait(what, cond, timeout=600):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    sys.exit("bench_watch: waited %d s for %s" % (timeout, what))


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("KJ_BUILD_DIR", os.path.join(SOURCE, "build")))
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--fail", type=int, default=500)
    ap.add_argument("--delete", type=int, default=200)
    ap.add_argument("--new", type=int, default=100)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--idle", type=float, default=20)
    ap.add_argument("--latency-ms", type=int, default=2)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    if a.fail + a.delete > a.pods:
        sys.exit("bench_watch: --fail + --delete must not exceed --pods")
    wd = tempfile.mkdtemp(prefix="bench-watch-")
    journal = os.path.join(wd, "journal.db")
    sim = Sim(a.build, wd, a.latency_ms)
    kjd = None
    try:
        sim.call("POST", "/_sim/seed", [pod("drv-%04d" % i, "t-%04d" % i) for i in range(a.pods)])
        sim.call("POST", "/_sim/faults", {"latency_ms": a.latency_ms, "jitter_ms": 0})
        ep = "tcp://127.0.0.1:%d" % free_port()
        log = open(os.path.join(wd, "kjournald.log"), "ab")
        kjd = subprocess.Popen([program(a.build, "kjournald"), "--journal", journal, "--listen", ep,
                                "--server", sim.url, "--namespace", NS, "--resync", "1h"],
                               stdout=subprocess.DEVNULL, stderr=log)
        wait("kjournald", lambda: port_open(int(ep.rsplit(":", 1)[1])))
        t = now_ms()
        evs = [{"event_id": "o-%d" % i, "type": "session_open", "session_id": "s-%04d" % i, "user": "u",
                "engine": {"namespace": NS, "tag": "t-%04d" % i}, "time_ms": t}
               for i in range(a.pods + a.new)]
        subprocess.run([program(a.build, "kjournal"), "publish", "--endpoint", ep, "--quiet", "-"],
                       input="".join(json.dumps(e) + "\n" for e in evs), text=True, check=True)
        kjlog = os.path.join(wd, "kjournald.log")
        wait("the start-up pass", lambda: "trigger=startup" in open(kjlog, errors="replace").read())
        # the event passes for the sessions just published settle
        time.sleep(3)
        c0, w0 = cpu_s(kjd.pid), time.time()
        time.sleep(a.idle)
        idle_cpu = (cpu_s(kjd.pid) - c0) / (time.time() - w0)

        changes = []  # (kind, pod, visible ms)
        groups = [[("failed", "drv-%04d" % i) for i in range(a.fail)],
                  [("deleted", "drv-%04d" % i) for i in range(a.fail, a.fail + a.delete)],
                  [("created", "drv-%04d" % i) for i in range(a.pods, a.pods + a.new)]]
        # the kinds interleaved evenly over the run
        plan = [c for _, c in sorted(((i + 0.5) / len(g), c) for g in groups for i, c in enumerate(g))]
        c0, w0 = cpu_s(kjd.pid), time.time()
        period = 1.0 / a.rate
        next_t = time.time()
        for kind, name in plan:
            time.sleep(max(0, next_t - time.time()))
            next_t += period
            if kind == "failed":
                sim.call("PATCH", "%s/%s/status" % (PODS, name), {"status": {"phase": "Failed"}},
                         ctype="application/merge-patch+json")
            elif kind == "deleted":
                sim.call("DELETE", "%s/%s" % (PODS, name), {})
            else:
                sim.call("POST", PODS, pod(name, "t-" + name.split("-")[1], fins=False))
            changes.append((kind, name, now_ms()))
        change_wall = time.time() - w0

        want = {("failed", "close_session"), ("failed", "release_finalizer"),
                ("deleted", "close_session"), ("deleted", "release_finalizer"), ("created", "add_finalizer")}
        kind_of = {name: kind for kind, name, _ in changes}

        def audit():
            r = subprocess.run([program(a.build, "kjournal"), "actions", "--journal", journal, "-o", "json",
                                "-n", "all"], capture_output=True, text=True, check=True)
            got = {}
            for line in r.stdout.splitlines():
                x = json.loads(line)
                k = kind_of.get(x.get("pod"))
                if k and (k, x["action"]) in want and x["result"] == "ok":
                    got.setdefault((x["pod"], x["action"]), ms_of(x["time"]))
            return got
        expected = sum(2 if k != "created" else 1 for k, _, _ in changes)
        got = wait("every reaction", lambda: (lambda g: g if len(g) >= expected else None)(audit()))
        react_cpu = cpu_s(kjd.pid) - c0
        react_wall = time.time() - w0
        lat = {}
        for kind, name, tv in changes:
            for (k, act) in want:
                if k == kind:
                    lat.setdefault((kind, act), []).append(got[(name, act)] - tv)
        print("bench_watch: %d pods (kube-sim --latency-ms %d), %d failed + %d deleted + %d created "
              "at %.0f changes/s; kjournald --resync 1h" % (a.pods, a.latency_ms, a.fail, a.delete,
                                                             a.new, a.rate))
        print("%-34s %7s %7s %7s %7s" % ("reaction (ms from the change)", "n", "p50", "p99", "max"))
        for key in sorted(lat):
            xs = lat[key]
            print("%-34s %7d %7d %7d %7d" % ("%s: %s" % key, len(xs), pct(xs, 50), pct(xs, 99), max(xs)))
        allx = [x for xs in lat.values() for x in xs]
        print("%-34s %7d %7d %7d %7d" % ("all", len(allx), pct(allx, 50), pct(allx, 99), max(allx)))
        r = subprocess.run([program(a.build, "kjournal"), "actions", "--journal", journal, "-o", "json",
                            "-n", "all"], capture_output=True, text=True, check=True)
        results = {}
        for line in r.stdout.splitlines():
            x = json.loads(line)
            if kind_of.get(x.get("pod")):
                results[x["result"]] = results.get(x["result"], 0) + 1
        print("audit of the changed pods, by result: %s" % ", ".join("%s %d" % kv for kv in sorted(results.items())))
        print("kjournald CPU: idle %.2f%% of a core over %.0f s; reacting %.1f%% (%.2f s CPU over %.1f s,"
              " changes sent in %.1f s)" % (100 * idle_cpu, a.idle, 100 * react_cpu / react_wall,
                                            react_cpu, react_wall, change_wall))
    finally:
        if kjd:
            kjd.terminate()
            kjd.wait(60)
        sim.stop()
        if not a.keep:
            shutil.rmtree(wd, ignore_errors=True)
        else:
            print("kept", wd)


if __name__ == "__main__":
    main()
