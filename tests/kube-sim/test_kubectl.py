#!/usr/bin/env python3
"""kubectl (a client written by the Kubernetes project) against kube-sim, with
a kubeconfig pointing at it: plain HTTP, and TLS (CA-verified) with a token.
Skipped (77) when kubectl is not installed."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading

from simtest import SKIP, Sim, concurrently, ok, wait_for
import kjtest
from kjtest import check

KUBECTL = shutil.which("kubectl")
if not KUBECTL:
    print("kubectl not installed: skipping")
    sys.exit(SKIP)


def kubeconfig(sim, d):
    path = os.path.join(d, "kubeconfig")
    cluster = {"server": sim.url}
    if sim.tls:
        cluster["certificate-authority"] = sim.cert
    user = {"token": sim.token} if sim.token else {}
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "sim",
           "clusters": [{"name": "sim", "cluster": cluster}],
           "users": [{"name": "u", "user": user}],
           "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "u", "namespace": "kyuubi"}}]}
    with open(path, "w") as f:
        json.dump(cfg, f)  # JSON is YAML
    return path


def run(env, *args, ok_codes=(0,), stdin=None):
    r = subprocess.run([KUBECTL, "--request-timeout=%ds" % kjtest.DEADLINE] + list(args), env=env, input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=2 * kjtest.DEADLINE)
    check(r.returncode in ok_codes, "kubectl %s: rc %d\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def pod_json(name, tag, finalizers=None, node=None):
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": name, "labels": {"kyuubi-unique-tag": tag, "spark-role": "driver"}},
         "spec": {"containers": [{"name": "c", "image": "apache/spark:3.5.1"}]}}
    if finalizers:
        p["metadata"]["finalizers"] = finalizers
    if node:
        p["spec"]["nodeName"] = node
    return json.dumps(p)


def flows(sim):
    d = tempfile.mkdtemp(prefix="kubectl-")
    env = dict(os.environ, HOME=d, KUBECONFIG=kubeconfig(sim, d))
    try:
        for i, tag in enumerate(("t1", "t1", "t2")):
            run(env, "create", "-f", "-", stdin=pod_json("k%d" % i, tag))
        run(env, "create", "-f", "-", stdin=pod_json("plain", "none"))
        sim.request("PATCH", "/api/v1/namespaces/kyuubi/pods/plain", {"metadata": {"labels": None}},
                    ctype="application/merge-patch+json")
        out = run(env, "get", "pods", "-l", "kyuubi-unique-tag=t1", "-o", "name").stdout.split()
        check(sorted(out) == ["pod/k0", "pod/k1"], "get -l =: %s" % out)
        out = run(env, "get", "pods", "-l", "kyuubi-unique-tag", "-o", "name").stdout.split()
        check(sorted(out) == ["pod/k0", "pod/k1", "pod/k2"], "get -l exists: %s" % out)
        out = run(env, "get", "pods", "-l", "kyuubi-unique-tag notin (t1)", "-o", "name").stdout.split()
        check(sorted(out) == ["pod/k2", "pod/plain"], "get -l notin: %s" % out)
        out = run(env, "get", "pods", "--field-selector", "metadata.name=k1", "-o", "name").stdout.split()
        check(out == ["pod/k1"], "get --field-selector: %s" % out)
        table = run(env, "get", "pods").stdout
        check("k0" in table and "NAME" in table, "get pods table: %s" % table)
        js = json.loads(run(env, "get", "pod", "k0", "-o", "json").stdout)
        check(js["kind"] == "Pod" and js["metadata"]["labels"]["kyuubi-unique-tag"] == "t1", "get -o json")
        lst = json.loads(run(env, "get", "pods", "-o", "json", "--chunk-size=2").stdout)
        check(len(lst["items"]) == 4, "get -o json with chunks of 2: %d items" % len(lst["items"]))
        run(env, "patch", "pod", "k0", "--type=json", "-p", '[{"op":"add","path":"/metadata/labels/x","value":"1"}]')
        run(env, "patch", "pod", "k0", "--type=merge", "-p", '{"metadata":{"labels":{"y":"2"}}}')
        run(env, "patch", "pod", "k0", "-p", '{"metadata":{"annotations":{"z":"3"}}}')  # strategic
        js = json.loads(run(env, "get", "pod", "k0", "-o", "json").stdout)
        check(js["metadata"]["labels"].get("x") == "1" and js["metadata"]["labels"].get("y") == "2"
              and js["metadata"]["annotations"]["z"] == "3", "patches applied: %s" % js["metadata"])
        r = run(env, "patch", "pod", "k0", "--type=json", "-p",
                '[{"op":"test","path":"/metadata/labels/x","value":"9"}]', ok_codes=(1,))
        check("Invalid" in r.stderr or "rejected" in r.stderr, "failed test op reported: %s" % r.stderr)
        run(env, "label", "pod", "k1", "extra=yes")
        check(run(env, "get", "pods", "-l", "extra=yes", "-o", "name").stdout.split() == ["pod/k1"], "kubectl label")
        # delete (waits until gone) and delete --grace-period=0 --force of a scheduled pod
        run(env, "delete", "pod", "k1")
        run(env, "get", "pod", "k1", ok_codes=(1,))
        run(env, "create", "-f", "-", stdin=pod_json("sched", "t3", node="node-1"))
        run(env, "delete", "pod", "sched", "--grace-period=0", "--force")
        run(env, "get", "pod", "sched", ok_codes=(1,))
        # status subresource via kubectl
        run(env, "patch", "pod", "k2", "--subresource=status", "--type=merge", "-p", '{"status":{"phase":"Failed"}}')
        out = run(env, "get", "pods", "--field-selector", "status.phase=Failed", "-o", "name").stdout.split()
        check(out == ["pod/k2"], "phase via --subresource=status: %s" % out)
        # the finalizer flow: delete -> Terminating -> patch the finalizer away -> gone
        run(env, "create", "-f", "-", stdin=pod_json("fin", "t4", finalizers=["kyuubi.apache.org/pod-cleanup"]))
        run(env, "delete", "pod", "fin", "--wait=false")
        ts = run(env, "get", "pod", "fin", "-o", "jsonpath={.metadata.deletionTimestamp}").stdout
        check(ts.strip() != "", "deletionTimestamp set, pod still there")
        table = run(env, "get", "pod", "fin").stdout
        check("Terminating" in table, "kubectl shows Terminating: %s" % table)
        r = run(env, "patch", "pod", "fin", "--type=json", "-p",
                '[{"op":"add","path":"/metadata/finalizers/-","value":"x.io/new"}]', ok_codes=(1,))
        check("no new finalizers can be added" in r.stderr, "422 message through kubectl: %s" % r.stderr)
        run(env, "patch", "pod", "fin", "--type=json", "-p",
            '[{"op":"test","path":"/metadata/finalizers/0","value":"kyuubi.apache.org/pod-cleanup"},'
            '{"op":"remove","path":"/metadata/finalizers/0"}]')
        r = run(env, "get", "pod", "fin", ok_codes=(1,))
        check('pods "fin" not found' in r.stderr, "gone: %s" % r.stderr)
        # kubectl get -w: watch events as server-side Table rows
        run(env, "create", "-f", "-", stdin=pod_json("watched", "t5", finalizers=["a.io/x"]))
        w = subprocess.Popen([KUBECTL, "get", "pod", "watched", "-w"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        rows = []
        reader = threading.Thread(target=lambda: rows.extend(iter(w.stdout.readline, "")), daemon=True)
        reader.start()
        # each step waits for the row the watch must print, not for a fixed time
        wait_for(lambda: any("Pending" in r for r in rows))
        run(env, "delete", "pod", "watched", "--wait=false")
        wait_for(lambda: any("Terminating" in r for r in rows))
        run(env, "patch", "pod", "watched", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        w.terminate()
        w.communicate(timeout=kjtest.DEADLINE)
        reader.join(kjtest.DEADLINE)
        out = "".join(rows)
        check(out.count("Terminating") >= 1 and "Pending" in out, "kubectl get -w: %s" % out)
        # leases
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l1"},
                 "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
        run(env, "create", "-f", "-", stdin=json.dumps(lease))
        out = run(env, "get", "lease", "l1", "-o", "jsonpath={.spec.holderIdentity}").stdout
        check(out == "a", "kubectl get lease: %r" % out)
        run(env, "delete", "pod", "--all", "--wait=false")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def plain():
    with Sim() as sim:
        flows(sim)
    ok("kubectl over plain HTTP: create, get -l, -o json, patch json/merge/strategic, delete, --grace-period=0, "
       "finalizer flow")


def tls_token():
    with Sim(token="kubectl-token", tls=True) as sim:
        flows(sim)
        st = sim.stats()
        check(st["by_code"].get("401", 0) == 0, "no 401")
    ok("kubectl over TLS (CA verified) with a token: the same flows")


concurrently(plain, tls_token)
