#!/usr/bin/env python3
"""bench_recover - figures for the recovery pass (issue 7). Not a test.

  1. 10,000 engine pods in kube-sim (--latency-ms 2 --jitter-ms 0 on every
     request): half to clean up (Failed a day ago, our finalizer, session
     closed: release + delete), half to keep (Running, our finalizer, session
     open). Wall time of `kjournal recover` with --concurrency 1 and with the
     default, each on a fresh kube-sim and a fresh copy of the journal; the
     ratio.
  2. The same work the way an operator does it today: `kubectl patch
     --type=json` (test + remove of our finalizer) and `kubectl delete` per
     pod, timed on 200 of the pods to clean up and scaled to the 5,000 of the
     10,000-pod cluster.
  3. Peak memory (maxrss from wait4, i.e. VmHWM) and wall time of the
     default pass at 100,000 pods.

Every pass is checked: exit 0, every pod to clean up gone (kube-sim's
"deletes that removed a pod"), every pod to keep still there.

usage: bench_recover.py [--build DIR] [--pods N] [--kubectl-pods N]
                        [--memory-pods N] [--latency-ms MS] [--keep]
(--build: a Release build directory; default $KJ_BUILD_DIR, else
build-rec-rel next to this checkout's sources.)
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
NS = "kyuubi"
FINALIZER = "kyuubi.apache.org/pod-cleanup"


def program(build, name):
    for sub in ("tools/" + name, "tools/bench", "tools"):
        p = os.path.join(build, sub, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    sys.exit("bench_recover: %s not built under %s" % (name, build))


def generate(build, wd, n):
    d = os.path.join(wd, "gen-%d" % n)
    os.makedirs(d, exist_ok=True)
    j, seed, names = (os.path.join(d, x) for x in ("journal.db", "seed.json", "cleanup.txt"))
    if not os.path.exists(seed):
        subprocess.run([program(build, "bench_recover_gen"), "--pods", str(n), "--journal", j,
                        "--seed", seed, "--cleanup-names", names, "--namespace", NS],
                       check=True, stdout=subprocess.DEVNULL)
    with open(names) as f:
        return j, seed, [l.strip() for l in f if l.strip()]


class Sim:
    def __init__(self, build, wd, seed, latency_ms):
        self.port_file = os.path.join(wd, "kube-sim.port")
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.log = open(os.path.join(wd, "kube-sim.log"), "ab")
        self.proc = subprocess.Popen(
            [program(build, "kube-sim"), "--listen", "127.0.0.1:0", "--port-file",
             self.port_file, "--seed", seed], stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 300
        self.port = None
        while time.time() < deadline and not self.port:
            if self.proc.poll() is not None:
                sys.exit("kube-sim exited with %d" % self.proc.returncode)
            try:
                with open(self.port_file) as f:
                    self.port = int(f.read().strip() or 0) or None
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        self.url = "http://127.0.0.1:%d" % self.port
        # latency is set once the seed is in, so loading is not slowed down
        self.call("POST", "/_sim/faults", {"latency_ms": latency_ms, "jitter_ms": 0})
        self.call("POST", "/_sim/stats")

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())

    def stats(self):
        return self.call("GET", "/_sim/stats")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def run_measured(args, env=None):
    """Runs args; returns (wall seconds, exit code, maxrss MiB, stderr tail, cpu seconds)."""
    err = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    tail = err.read().decode(errors="replace")[-600:]
    return wall, p.returncode, ru.ru_maxrss / 1024.0, tail, ru.ru_utime + ru.ru_stime


def recover_pass(build, wd, journal, seed, n, latency_ms, extra):
    j = os.path.join(wd, "pass.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(j + suffix):
            os.unlink(j + suffix)
    shutil.copy(journal, j)
    sim = Sim(build, wd, seed, latency_ms)
    try:
        args = [program(build, "kjournal"), "recover", "--journal", j, "--server", sim.url,
                "--namespace", NS, "--quiet", "-o", "json"] + extra
        wall, rc, rss, tail, cpu = run_measured(args)
        st = sim.stats()
        st["kjournal_cpu"] = cpu
    finally:
        sim.stop()
    if rc != 0:
        sys.exit("kjournal recover %s: exit %d\n%s" % (" ".join(extra), rc, tail))
    removed = st["deletes"]["removed"]
    left = st["objects"]["pods"]
    if removed != n // 2 or left != n - n // 2:
        sys.exit("kjournal recover %s: removed %d pods, %d left; expected %d and %d"
                 % (" ".join(extra), removed, left, n // 2, n - n // 2))
    return wall, rss, st


def kubectl_way(build, wd, seed, names, latency_ms):
    """kubectl patch --type=json + kubectl delete, one pod after the other."""
    home = os.path.join(wd, "kubectl-home")
    os.makedirs(home, exist_ok=True)
    sim = Sim(build, wd, seed, latency_ms)
    kc = os.path.join(home, "kubeconfig")
    with open(kc, "w") as f:
        f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n"
                "    server: %s\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n"
                "    namespace: %s\n    user: sim\ncurrent-context: sim\nusers:\n- name: sim\n"
                "  user: {}\n" % (sim.url, NS))
    env = dict(os.environ, HOME=home, KUBECONFIG=kc)
    patch = json.dumps([{"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
                        {"op": "remove", "path": "/metadata/finalizers/0"}])
    try:
        # discovery once, as an operator's shell would have it cached
        subprocess.run(["kubectl", "get", "pod", names[-1], "-o", "name"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        t0 = time.perf_counter()
        for name in names:
            subprocess.run(["kubectl", "patch", "pod", name, "--type=json", "-p", patch],
                           env=env, check=True, stdout=subprocess.DEVNULL)
            subprocess.run(["kubectl", "delete", "pod", name], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        st = sim.stats()
    finally:
        sim.stop()
    if st["deletes"]["removed"] != len(names):
        sys.exit("kubectl: removed %d of %d pods" % (st["deletes"]["removed"], len(names)))
    return wall


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("KJ_BUILD_DIR",
                                                      os.path.join(SOURCE, "build-rec-rel")))
    ap.add_argument("--pods", type=int, default=10000)
    ap.add_argument("--kubectl-pods", type=int, default=200)
    ap.add_argument("--memory-pods", type=int, default=100000)
    ap.add_argument("--latency-ms", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each recover pass; the median is reported (default 3)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    wd = tempfile.mkdtemp(prefix="bench-recover-")
    try:
        print("bench_recover: build %s, %d ms latency per request, %d cpus, load average %s"
              % (a.build, a.latency_ms, os.cpu_count(), load()))
        journal, seed, names = generate(a.build, wd, a.pods)
        n_clean = len(names)
        print("\n%d engine pods: %d to release + delete, %d to keep"
              % (a.pods, n_clean, a.pods - n_clean))
        # the two settings alternate, so that a change in the machine's load
        # hits both alike; medians are compared
        runs = {"c1": [], "default": []}
        for _ in range(max(1, a.repeat)):
            runs["c1"].append(recover_pass(a.build, wd, journal, seed, a.pods, a.latency_ms,
                                           ["--concurrency", "1"]))
            runs["default"].append(recover_pass(a.build, wd, journal, seed, a.pods,
                                                a.latency_ms, []))
        for key, label in (("c1", "--concurrency 1  "), ("default", "(default, 32)    ")):
            rs = runs[key]
            walls = sorted(r[0] for r in rs)
            print("  kjournal recover %s %8.2f s median (%s; %d requests, %.2f s CPU, "
                  "max RSS %.1f MiB)"
                  % (label, median(walls), " ".join("%.2f" % w for w in walls),
                     rs[0][2]["requests"], median([r[2]["kjournal_cpu"] for r in rs]),
                     max(r[1] for r in rs)))
        w1 = median([r[0] for r in runs["c1"]])
        wd_ = median([r[0] for r in runs["default"]])
        print("  speed-up of the default            %8.1fx (medians)" % (w1 / wd_))

        k = min(a.kubectl_pods, n_clean)
        wk = kubectl_way(a.build, wd, seed, names[:k], a.latency_ms)
        scaled = wk / k * n_clean
        print("\nkubectl patch --type=json + kubectl delete, per pod:")
        print("  %d pods                          %8.2f s   (%.0f ms a pod)" % (k, wk, wk / k * 1000))
        print("  scaled to the %d pods            %8.1f s" % (n_clean, scaled))
        print("  kjournal recover (default) is      %8.0fx faster" % (scaled / wd_))

        if a.memory_pods:
            journal, seed, names = generate(a.build, wd, a.memory_pods)
            wm, rssm, stm = recover_pass(a.build, wd, journal, seed, a.memory_pods,
                                         a.latency_ms, [])
            # (one run: the peak is what matters, and it does not depend on the load)
            print("\n%d engine pods (%d to release + delete), default pass:"
                  % (a.memory_pods, len(names)))
            print("  wall time                          %8.2f s   (%d requests)" % (wm, stm["requests"]))
            print("  peak memory (VmHWM)                %8.1f MiB" % rssm)
        print("\nload average at the end: %s" % load())
        print("targets: default pass < 3 s at 10,000 pods, >= 10x --concurrency 1, "
              ">= 100x kubectl, < 100 MB at 100,000 pods")
    finally:
        if a.keep:
            print("work directory: %s" % wd)
        else:
            shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()
