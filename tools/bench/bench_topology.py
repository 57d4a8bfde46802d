#!/usr/bin/env python3
"""bench_topology - figures for the two topologies (issue 14). Not a test.

  1. Per server: 3 kjournald (--topology per-server, identities s0, s1, s2),
     3,000 running engine pods in kube-sim, each used by an open session on
     one server (pod i on server i % 3), the first third also by a session on
     the next server (a shared engine). Time from starting the three to the
     end of the last of their start-up (recovery) passes, when every pod
     carries the claims of exactly the servers using it; the API requests
     they made (kube-sim's counters, Leases included).
  2. Central: one kjournald with every session (the union of the three
     journals) on the same pods: the same time, its requests.
  3. Failover (central, default timings 15 s / 10 s / 2 s): holder a and
     standby b; SIGKILL a, then a pod appears that b's journal has an open
     session for; time until b's finalizer is on it (b's first mutation).

Each figure is the median of --runs (default 5) runs, each on a fresh
kube-sim and fresh copies of the journals.

usage: bench_topology.py [--build DIR] [--pods N] [--runs N] [--keep]
(--build: a Release build directory; default $KJ_BUILD_DIR, else build/.)
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
NS = "kyuubi"
CLAIM = "kjournal.apache.org/claim-"
OURS = "kyuubi.apache.org/pod-cleanup"


def program(build, name):
    for sub in ("tools/" + name, "tools/kjournal", "tools"):
        p = os.path.join(build, sub, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    sys.exit("bench_topology: %s not built under %s" % (name, build))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait(what, cond, timeout=600, every=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(every)
    sys.exit("bench_topology: still waiting for %s" % what)


def wait_port(port):
    def up():
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    wait("port %d" % port, up)


class Sim:
    def __init__(self, build, wd):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = subprocess.Popen([program(build, "kube-sim"), "--listen",
                                      "127.0.0.1:%d" % self.port],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(wd, "kube-sim.log"), "w"))
        wait_port(self.port)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, None

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def pod(name, tag):
    t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"kyuubi-unique-tag": tag},
                         "creationTimestamp": t},
            "spec": {"nodeName": "node-1", "containers": [{"name": "d", "image": "spark"}]},
            "status": {"phase": "Running"}}


def users(i, n):
    """The servers with an open session on pod i."""
    u = [i % 3]
    if i < n // 3:
        u.append((i + 1) % 3)
    return u


def write_journal(build, wd, path, events):
    port = free_port()
    ep = "tcp://127.0.0.1:%d" % port
    d = subprocess.Popen([program(build, "kjournald"), "--journal", path, "--listen", ep,
                          "--no-reconcile"], stderr=subprocess.DEVNULL)
    wait_port(port)
    lines = "".join(json.dumps(e) + "\n" for e in events)
    subprocess.run([program(build, "kjournal"), "publish", "--endpoint", ep, "--quiet",
                    "--batch", "500", "-"], input=lines, text=True, check=True)
    d.send_signal(signal.SIGTERM)
    d.wait()


def journals(build, wd, n):
    t = int(time.time() * 1000) - 60000
    per = {k: [] for k in range(3)}
    for i in range(n):
        for k in users(i, n):
            per[k].append({"event_id": "o-%d-%d" % (k, i), "type": "session_open",
                           "session_id": "s-%d-%d" % (k, i), "user": "u",
                           "engine": {"namespace": NS, "tag": "t-%d" % i}, "time_ms": t})
    paths = {}
    for k in range(3):
        paths[k] = os.path.join(wd, "s%d.db" % k)
        write_journal(build, wd, paths[k], per[k])
    paths["central"] = os.path.join(wd, "central.db")
    write_journal(build, wd, paths["central"], per[0] + per[1] + per[2])
    return paths


def fresh(src, dst):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(dst + suffix):
            os.unlink(dst + suffix)
        if os.path.exists(src + suffix):
            shutil.copy(src + suffix, dst + suffix)


def start_kjd(build, wd, sim, journal, identity, extra):
    log = os.path.join(wd, "kjd-%s.log" % identity)
    port, mport = free_port(), free_port()
    p = subprocess.Popen([program(build, "kjournald"), "--journal", journal, "--listen",
                          "tcp://127.0.0.1:%d" % port, "--metrics", "127.0.0.1:%d" % mport,
                          "--server", sim.url, "--namespace", NS, "--identity", identity]
                         + extra, stderr=open(log, "w"), stdout=subprocess.DEVNULL,
                         env=dict(os.environ, HOME=wd, KUBECONFIG=""))
    p.log, p.ep = log, "tcp://127.0.0.1:%d" % port
    return p


def recovery_done(p):
    with open(p.log, errors="replace") as f:
        text = f.read()
    return re.search(r'msg="reconcile pass done" trigger=recovery .*', text)


def converge(build, wd, n, paths, topology):
    sim = Sim(build, wd)
    sim.call("POST", "/_sim/seed", [pod("drv-%d" % i, "t-%d" % i) for i in range(n)])
    sim.call("POST", "/_sim/stats")
    procs = []
    t0 = time.monotonic()
    if topology == "per-server":
        for k in range(3):
            j = os.path.join(wd, "run-s%d.db" % k)
            fresh(paths[k], j)
            procs.append(start_kjd(build, wd, sim, j, "s%d" % k,
                                   ["--topology", "per-server", "--submit-grace", "1h"]))
    else:
        j = os.path.join(wd, "run-central.db")
        fresh(paths["central"], j)
        procs.append(start_kjd(build, wd, sim, j, "central", ["--submit-grace", "1h"]))
    wait("the start-up passes", lambda: all(recovery_done(p) for p in procs))
    took = time.monotonic() - t0
    stats = sim.call("GET", "/_sim/stats")[1]
    state = sim.call("GET", "/_sim/state")[1]
    bad = 0
    for p_ in state["pods"]:
        i = int(p_["metadata"]["name"].split("-")[1])
        fins = p_["metadata"].get("finalizers") or []
        if topology == "per-server":
            want = sorted(CLAIM + "s%d" % k for k in users(i, n))
            bad += sorted(f for f in fins if f.startswith(CLAIM)) != want
        else:
            bad += fins != [OURS]
    if bad:
        sys.exit("bench_topology: %s: %d pods without the expected finalizers" % (topology, bad))
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait()
    sim.stop()
    return took, stats["requests"], stats.get("by_kind", {})


def failover(build, wd):
    sim = Sim(build, wd)
    ja, jb = os.path.join(wd, "fo-a.db"), os.path.join(wd, "fo-b.db")
    for j in (ja, jb):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(j + suffix):
                os.unlink(j + suffix)
    t = int(time.time() * 1000)
    write_journal(build, wd, jb, [{"event_id": "o-fo", "type": "session_open",
                                   "session_id": "s-fo", "engine": {"namespace": NS,
                                                                    "tag": "t-fo"},
                                   "time_ms": t}])
    lease = "/apis/coordination.k8s.io/v1/namespaces/%s/leases/kjournald" % NS
    a = start_kjd(build, wd, sim, ja, "a", [])
    wait("a to hold", lambda: (sim.call("GET", lease)[1] or {}).get("spec", {})
         .get("holderIdentity") == "a")
    b = start_kjd(build, wd, sim, jb, "b", ["--submit-grace", "1h"])
    wait("b to be a standby", lambda: "reconciler standby" in open(b.log).read())
    time.sleep(3)  # b has read the Lease a few times
    a.kill()
    t0 = time.monotonic()
    a.wait()
    sim.call("POST", "/_sim/seed", [pod("drv-fo", "t-fo")])
    path = "/api/v1/namespaces/%s/pods/drv-fo" % NS
    wait("b's first mutation", lambda: OURS in ((sim.call("GET", path)[1] or {})
                                               .get("metadata", {}).get("finalizers") or []),
         every=0.01)
    took = time.monotonic() - t0
    b.send_signal(signal.SIGTERM)
    b.wait()
    sim.stop()
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("KJ_BUILD_DIR",
                                                      os.path.join(SOURCE, "build")))
    ap.add_argument("--pods", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    wd = tempfile.mkdtemp(prefix="kj-bench-topology-")
    try:
        paths = journals(a.build, wd, a.pods)
        res = {"per-server": [], "central": []}
        for r in range(a.runs):
            for topo in ("per-server", "central"):
                res[topo].append(converge(a.build, wd, a.pods, paths, topo))
                took, reqs, kinds = res[topo][-1]
                print("run %d %-10s converged in %.2f s, %d requests %s"
                      % (r + 1, topo, took, reqs, json.dumps(kinds)), flush=True)
        fo = []
        for r in range(a.runs):
            fo.append(failover(a.build, wd))
            print("run %d failover %.2f s" % (r + 1, fo[-1]), flush=True)
        print()
        print("| %d pods (a third shared) | start-up passes converged | API requests |"
              % a.pods)
        print("|---|---|---|")
        med = {}
        for topo in ("per-server", "central"):
            times = [x[0] for x in res[topo]]
            reqs = [x[1] for x in res[topo]]
            med[topo] = (statistics.median(times), statistics.median(reqs))
            print("| %s | %.2f s median (%s) | %d |" % (
                topo, med[topo][0], ", ".join("%.2f" % x for x in times), med[topo][1]))
        print("| per-server / central | %.2f× | %.2f× |" % (
            med["per-server"][0] / med["central"][0], med["per-server"][1] / med["central"][1]))
        print()
        print("failover (central, lease 15 s / renew 10 s / retry 2 s), holder SIGKILLed -> "
              "first mutation by the new holder: %.2f s median (%s)"
              % (statistics.median(fo), ", ".join("%.2f" % x for x in fo)))
    finally:
        if not a.keep:
            shutil.rmtree(wd, ignore_errors=True)
        else:
            print("kept", wd)


if __name__ == "__main__":
    main()
