#!/usr/bin/env python3
"""Load: kube-sim with 20,000 pods answers everything correctly while 64
keep-alive connections send a reconciler's mix at once (GETs, label-selector
lists, merge patches), and lists over all the pods stay whole and consistent
meanwhile. Correctness only: how fast is a benchmark's business
(tools/bench/bench_kube_sim.py), never this test's.

usage: test_load.py [--pods N] [--requests N]   (--requests: per connection)"""
import argparse
import os
import subprocess

from simtest import Sim, ok
import kjtest
from kjtest import check

ap = argparse.ArgumentParser()
ap.add_argument("--pods", type=int, default=20000)
ap.add_argument("--requests", type=int, default=100)
args = ap.parse_args()
CONNS = 64


def seed(n):
    """The seed kube-sim-load --check knows: pod-%06d, shard = i % 100."""
    items = []
    for i in range(n):
        items.append({"metadata": {"name": "pod-%06d" % i, "namespace": "bench",
                                   "labels": {"app": "bench", "shard": str(i % 100),
                                              "kyuubi-unique-tag": "tag-%d" % (i % 1000),
                                              "spark-role": "driver" if i % 10 == 0 else "executor"}},
                      "spec": {"containers": [{"name": "spark", "image": "apache/spark:3.5.1"}]},
                      "status": {"phase": "Running" if i % 7 else "Succeeded"}})
    return {"kind": "PodList", "apiVersion": "v1", "items": items}


def names(body):
    return [p["metadata"]["name"] for p in body["items"]]


def lists(sim):
    """Lists over all the pods, each checked against the seed."""
    base = "/api/v1/namespaces/bench/pods"
    st, body, _ = sim.get(base + "?labelSelector=kyuubi-unique-tag%3Dtag-7")
    want = ["pod-%06d" % i for i in range(args.pods) if i % 1000 == 7]
    check(st == 200 and sorted(names(body)) == want, "label selector list: %s, %d items" % (st, len(body["items"])))
    st, body, _ = sim.get(base + "?fieldSelector=status.phase%3DSucceeded&labelSelector=spark-role%3Ddriver")
    want = ["pod-%06d" % i for i in range(args.pods) if i % 7 == 0 and i % 10 == 0]
    check(st == 200 and sorted(names(body)) == want, "field and label selector list: %s, %d items" % (st, len(body["items"])))
    seen, cont, rvs = [], "", set()
    while True:
        st, body, _ = sim.get(base + "?limit=500" + ("&continue=" + cont if cont else ""))
        check(st == 200, "page %d: %s %s" % (len(rvs), st, body))
        seen += names(body)
        rvs.add(body["metadata"]["resourceVersion"])
        cont = body["metadata"].get("continue")
        if not cont:
            break
    check(seen == ["pod-%06d" % i for i in range(args.pods)],
          "paged list of everything: %d names, each pod once and in order" % len(seen))
    check(len(rvs) == 1, "every page at the first page's resourceVersion: %s" % sorted(rvs))
    return len(seen)


with Sim(seed=seed(args.pods)) as sim:
    lists(sim)  # before the load: the seed as it is
    sim.request("POST", "/_sim/stats", token=False)  # zero the counters
    load = subprocess.Popen([os.path.join(kjtest.BUILD, "tools", "bench", "kube-sim-load"),
                             "--port", str(sim.port), "--conns", str(CONNS), "--pods", str(args.pods),
                             "--requests", str(args.requests), "--check"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # the same lists while the load runs: whole and consistent among concurrent patches
    lists(sim)
    out, _ = load.communicate()
    print(out.strip())
    check(load.returncode == 0, "every request answered, every answer correct: %s" % out)
    stats = sim.stats()
    check(stats["objects"]["pods"] == args.pods, "no pod lost or added: %s" % stats["objects"])
    patches = stats["by_verb"].get("patch", 0)
    check(patches > 0 and stats["mutations"] == patches,
          "each patch (a new label value each) changed the store once: %d patches, %d mutations"
          % (patches, stats["mutations"]))
    check(stats["by_verb"].get("get", 0) + stats["by_verb"].get("list", 0) + patches
          >= CONNS * args.requests, "kube-sim counted every request: %s" % stats["by_verb"])
ok("load: %d pods, %d keep-alive connections x %d requests, every answer correct; lists whole meanwhile"
   % (args.pods, CONNS, args.requests))
