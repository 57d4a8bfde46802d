#!/usr/bin/env python3
"""bench_kube_sim - kube-sim's figures under load. Not a test (the test,
kube-sim-load, checks only that every answer is correct).

kube-sim with N pods (default 100,000; pod-%06d in namespace bench, label
shard = i % 100, as kube-sim-load --check knows them), then:
  1. the time to start with them (--seed),
  2. a label-selector list over all of them, a field + label selector list,
     paging through all of them with limit=500,
  3. kube-sim-load: 64 keep-alive connections for --seconds each, the
     reconciler's mix (90% GET of a pod, 5% label-selector list with limit
     50, 5% merge patch) and GETs only: requests/s, p50 and p99 latency.
     Every answer is checked (--check), so a fast wrong answer is no figure.

usage: bench_kube_sim.py [--build DIR] [--pods N] [--conns N] [--seconds S] [--runs N]
(--build: a Release build directory; default $KJ_BUILD_DIR, else build-rel
next to this checkout's sources.)
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))


def program(build, name):
    for sub in ("tools/" + name, "tools/bench", "tools"):
        p = os.path.join(build, sub, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    sys.exit("bench_kube_sim: %s not built under %s" % (name, build))


def seed(n):
    items = []
    for i in range(n):
        items.append({"metadata": {"name": "pod-%06d" % i, "namespace": "bench",
                                   "labels": {"app": "bench", "shard": str(i % 100),
                                              "kyuubi-unique-tag": "tag-%d" % (i % 1000),
                                              "spark-role": "driver" if i % 10 == 0 else "executor"}},
                      "spec": {"containers": [{"name": "spark", "image": "apache/spark:3.5.1"}]},
                      "status": {"phase": "Running" if i % 7 else "Succeeded"}})
    return {"kind": "PodList", "apiVersion": "v1", "items": items}


def get(url):
    with urllib.request.urlopen(url, timeout=600) as r:
        return json.loads(r.read())


def timed(fn):
    t = time.perf_counter()
    v = fn()
    return v, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("KJ_BUILD_DIR", os.path.join(SOURCE, "build-rel")))
    ap.add_argument("--pods", type=int, default=100000)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--runs", type=int, default=3, help="load runs of each mix (figures: each, and the median)")
    a = ap.parse_args()
    sim_bin, load_bin = program(a.build, "kube-sim"), program(a.build, "kube-sim-load")
    wd = tempfile.mkdtemp(prefix="bench-kube-sim-")
    seed_file, port_file = os.path.join(wd, "seed.json"), os.path.join(wd, "port")
    with open(seed_file, "w") as f:
        json.dump(seed(a.pods), f)
    print("load average at the start: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    t = time.perf_counter()
    sim = subprocess.Popen([sim_bin, "--listen", "127.0.0.1:0", "--port-file", port_file, "--seed", seed_file],
                           stdout=subprocess.DEVNULL, stderr=open(os.path.join(wd, "kube-sim.log"), "w"))
    try:
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if sim.poll() is not None:
                sys.exit("bench_kube_sim: kube-sim exited with %d (see %s)" % (sim.returncode, wd))
            time.sleep(0.05)
        port = int(open(port_file).read())
        base = "http://127.0.0.1:%d/api/v1/namespaces/bench/pods" % port
        while True:  # listening once it answers
            try:
                get("http://127.0.0.1:%d/_sim/stats" % port)
                break
            except OSError:
                time.sleep(0.05)
        print("kube-sim started with %d pods in %.1f s" % (a.pods, time.perf_counter() - t))

        body, el = timed(lambda: get(base + "?labelSelector=kyuubi-unique-tag%3Dtag-7"))
        print("list with a label selector over %d pods (%d match): %.0f ms" % (a.pods, len(body["items"]), el * 1000))
        body, el = timed(lambda: get(base + "?fieldSelector=status.phase%3DSucceeded&labelSelector=spark-role%3Ddriver"))
        print("list with field and label selectors: %d items, %.0f ms" % (len(body["items"]), el * 1000))

        def paged():
            n, pages, cont = 0, 0, ""
            while True:
                b = get(base + "?limit=500" + ("&continue=" + cont if cont else ""))
                n, pages, cont = n + len(b["items"]), pages + 1, b["metadata"].get("continue")
                if not cont:
                    return n, pages
        (n, pages), el = timed(paged)
        print("paged list of all %d pods (limit 500, %d pages): %.2f s" % (n, pages, el))

        for mix in ([], ["--get-only"]):
            rates = []
            for _ in range(a.runs):
                r = subprocess.run([load_bin, "--port", str(port), "--conns", str(a.conns), "--pods", str(a.pods),
                                    "--seconds", str(a.seconds), "--check"] + mix,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                print(r.stdout.strip())
                if r.returncode != 0:
                    sys.exit("bench_kube_sim: kube-sim-load failed (exit %d)" % r.returncode)
                rates.append(float(r.stdout.split("req_per_s=")[1].split()[0]))
            rates.sort()
            print("%s: %.0f requests/s (median of %d)" % ("GETs only" if mix else "90/5/5 mix", rates[len(rates) // 2],
                                                       len(rates)))
    finally:
        sim.terminate()
        sim.wait()
        print("load average at the end: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
        shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()
