#!/usr/bin/env python3
"""Load: kube-sim with 100,000 pods, 64 concurrent keep-alive connections.
Prints req/s (kube-sim-load) and the time of large lists. The floor is 5,000
req/s for a normal build; a sanitizer build (argument "sanitize") is several
times slower by nature and only has to stay correct and above 500 req/s.

usage: test_load.py [normal|sanitize] [--pods N] [--seconds S]"""
import argparse
import os
import subprocess
import time

from simtest import Sim, ok
import kjtest
from kjtest import check

ap = argparse.ArgumentParser()
ap.add_argument("build", nargs="?", default="normal")
ap.add_argument("--pods", type=int, default=100000)
ap.add_argument("--seconds", type=float, default=3)
args = ap.parse_args()
floor = 500 if args.build == "sanitize" else 5000
if args.build == "sanitize" and args.pods == 100000:
    args.pods = 20000  # keeps the sanitizer run short; the normal build runs 100,000


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


t0 = time.time()
with Sim(seed=seed(args.pods), start_timeout=120) as sim:
    print("started with %d pods in %.1f s" % (args.pods, time.time() - t0))
    base = "/api/v1/namespaces/bench/pods"
    t = time.time()
    st, body, _ = sim.get(base + "?labelSelector=kyuubi-unique-tag%3Dtag-7")
    check(st == 200 and len(body["items"]) == args.pods // 1000, "selector list")
    print("list with a label selector over %d pods (%d match): %.0f ms" % (args.pods, len(body["items"]), (time.time() - t) * 1000))
    t = time.time()
    st, body, _ = sim.get(base + "?fieldSelector=status.phase%3DSucceeded&labelSelector=spark-role%3Ddriver")
    check(st == 200, "field+label selector list")
    print("list with field and label selectors: %d items, %.0f ms" % (len(body["items"]), (time.time() - t) * 1000))
    t = time.time()
    n, cont, pages = 0, "", 0
    while True:
        st, body, _ = sim.get(base + "?limit=500" + ("&continue=" + cont if cont else ""))
        check(st == 200, "page %d" % pages)
        n += len(body["items"])
        pages += 1
        cont = body["metadata"].get("continue")
        if not cont:
            break
    check(n == args.pods, "paged list of everything: %d" % n)
    print("paged list of all %d pods (limit 500, %d pages): %.2f s" % (n, pages, time.time() - t))
    r = subprocess.run([os.path.join(kjtest.BUILD, "tests", "kube-sim", "kube-sim-load"), "--port", str(sim.port), "--conns", "64",
                        "--seconds", str(args.seconds), "--pods", str(args.pods), "--min-rps", str(floor)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    print(r.stdout.strip())
    check(r.returncode == 0, "load: %s (floor %d req/s)" % (r.stdout, floor))
    stats = sim.stats()
    check(stats["objects"]["pods"] == args.pods, "no pod lost")
ok("load: %d pods, 64 keep-alive connections, >= %d req/s (%s build)" % (args.pods, floor, args.build))
