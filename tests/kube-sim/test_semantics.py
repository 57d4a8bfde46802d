#!/usr/bin/env python3
"""Every point of DESIGN.md "Kubernetes semantics kube-sim must reproduce",
through plain HTTP, against the answers recorded from a real kube-apiserver
(shared/fixtures/k8s)."""
import copy
import json
import socket
import time

from simtest import NS, PODS, Sim, concurrently, fixture, ok, pod, same_status, wait_for
import kjtest
from kjtest import check

DRIVER = fixture("pod-driver-failed.json")
NAME = DRIVER["metadata"]["name"]


def driver_pod():
    p = copy.deepcopy(DRIVER)
    for k in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
        p["metadata"].pop(k, None)
    p.pop("status")
    return p


def names(items):
    return sorted(i["metadata"]["name"] for i in items)


def lst(sim, query="", path=PODS):
    st, body, _ = sim.get(path + ("?" + query if query else ""))
    check(st == 200, "list %s: %s %s" % (query, st, body))
    return body


def test_create_get_list(sim):
    st, body, _ = sim.request("POST", PODS, driver_pod())
    check(st == 201, "POST pod: %s %s" % (st, body))
    check(body["kind"] == "Pod" and body["apiVersion"] == "v1", "created pod has kind/apiVersion")
    check(list(body.keys()) == ["kind", "apiVersion", "metadata", "spec", "status"], "key order %s" % list(body))
    want_meta = [k for k in DRIVER["metadata"].keys() if k != "managedFields"]
    check(list(body["metadata"].keys()) == want_meta,
          "metadata keys %s, want %s" % (list(body["metadata"].keys()), want_meta))
    check(body["status"]["phase"] == "Pending", "a new pod is Pending whatever the POST said")
    st, again, _ = sim.request("POST", PODS, driver_pod())
    check(st == 409 and again["reason"] == "AlreadyExists", "second POST: %s %s" % (st, again))
    st, got, _ = sim.get(PODS + "/" + NAME)
    check(st == 200 and got == body, "GET returns what POST returned")
    st, nf, _ = sim.get(PODS + "/no-such-pod")
    check(st == 404, "GET missing: %s" % st)
    same_status(nf, fixture("status-404.json"), "404")
    empty = lst(sim, path="/api/v1/namespaces/empty-ns/pods")
    check(empty["items"] == [] and empty["kind"] == "PodList", "empty list has items []: %s" % empty)
    full = lst(sim)
    check(all("kind" not in i and "apiVersion" not in i for i in full["items"]), "PodList items carry no kind")
    page = fixture("podlist-page1.json")
    check(list(full.keys()) == list(page.keys()), "PodList keys %s" % list(full.keys()))
    allns = lst(sim, path="/api/v1/pods")
    check(NAME in names(allns["items"]), "list across namespaces")
    ok("create/get/list shapes")


def test_resource_version(sim):
    rv0 = int(lst(sim)["metadata"]["resourceVersion"])
    st, a, _ = sim.request("POST", PODS, pod("rv-a"))
    st, b, _ = sim.request("POST", "/api/v1/namespaces/other/pods", pod("rv-b", ns="other"))
    ra, rb = int(a["metadata"]["resourceVersion"]), int(b["metadata"]["resourceVersion"])
    check(rv0 < ra < rb, "global resourceVersion bumped by every write (%d %d %d)" % (rv0, ra, rb))
    l1 = lst(sim)["metadata"]["resourceVersion"]
    l2 = lst(sim)["metadata"]["resourceVersion"]
    check(l1 == l2 == str(rb), "list rv %s %s, want %d" % (l1, l2, rb))
    # a no-op patch writes nothing
    st, same, _ = sim.request("PATCH", PODS + "/rv-a", {"metadata": {"labels": {}}},
                              ctype="application/merge-patch+json")
    check(st == 200 and same["metadata"]["resourceVersion"] == str(ra), "no-op patch keeps rv")
    # stale rv: PUT and merge patch -> 409 exactly as the apiserver says it
    st, cur, _ = sim.get(PODS + "/" + NAME)
    stale = copy.deepcopy(cur)
    stale["metadata"]["resourceVersion"] = "1"
    stale["metadata"]["labels"]["x"] = "y"
    st, body, _ = sim.request("PUT", PODS + "/" + NAME, stale)
    check(st == 409, "PUT stale: %s" % st)
    same_status(body, fixture("status-409-conflict.json"), "PUT stale rv")
    st, body, _ = sim.request("PATCH", PODS + "/" + NAME,
                              {"metadata": {"resourceVersion": "1", "labels": {"a": "b"}}},
                              ctype="application/merge-patch+json")
    check(st == 409, "merge patch stale: %s" % st)
    same_status(body, fixture("status-409-conflict.json"), "merge patch stale rv")
    # PUT with the current rv works and bumps it
    cur["metadata"]["labels"]["x"] = "y"
    st, upd, _ = sim.request("PUT", PODS + "/" + NAME, cur)
    check(st == 200 and int(upd["metadata"]["resourceVersion"]) > int(cur["metadata"]["resourceVersion"]),
          "PUT current rv: %s" % st)
    check(upd["metadata"]["labels"]["x"] == "y", "PUT applied")
    ok("resourceVersion: global, bumped on writes, 409 on stale PUT and merge patch")


def test_selectors(sim):
    ns = "/api/v1/namespaces/sel/pods"
    specs = [("s1", {"app": "a", "tier": "x"}, "node-1"), ("s2", {"app": "b"}, "node-2"),
             ("s3", {"app": "c", "tier": "y"}, None), ("s4", {}, None)]
    for n, labels, node in specs:
        st, _, _ = sim.request("POST", ns, pod(n, labels, node=node, ns="sel"))
        check(st == 201, "create %s" % n)
    sim.request("PATCH", ns + "/s2/status", {"status": {"phase": "Running"}},
                ctype="application/merge-patch+json")
    cases = [
        ("labelSelector=app%3Da", ["s1"]),
        ("labelSelector=app%3D%3Da", ["s1"]),
        ("labelSelector=app%21%3Da", ["s2", "s3", "s4"]),
        ("labelSelector=app+in+(a,b)", ["s1", "s2"]),
        ("labelSelector=app%20notin%20(a,b)", ["s3", "s4"]),
        ("labelSelector=tier", ["s1", "s3"]),
        ("labelSelector=%21tier", ["s2", "s4"]),
        ("labelSelector=app,%21tier", ["s2"]),
        ("labelSelector=app%3Dc,tier%3Dy", ["s3"]),
        ("fieldSelector=metadata.name%3Ds2", ["s2"]),
        ("fieldSelector=metadata.name%3D%3Ds2", ["s2"]),
        ("fieldSelector=metadata.name%21%3Ds2", ["s1", "s3", "s4"]),
        ("fieldSelector=metadata.namespace%3Dsel", ["s1", "s2", "s3", "s4"]),
        ("fieldSelector=metadata.namespace%3Dother", []),
        ("fieldSelector=spec.nodeName%3Dnode-1", ["s1"]),
        ("fieldSelector=spec.nodeName%3D", ["s3", "s4"]),
        ("fieldSelector=status.phase%3DRunning", ["s2"]),
        ("fieldSelector=status.phase%21%3DRunning", ["s1", "s3", "s4"]),
        ("fieldSelector=status.phase%3DPending,spec.nodeName%21%3D", ["s1"]),
        ("labelSelector=app&fieldSelector=status.phase%3DPending", ["s1", "s3"]),
    ]
    for q, want in cases:
        got = names(lst(sim, q, ns)["items"])
        check(got == want, "%s: %s, want %s" % (q, got, want))
    st, body, _ = sim.get(ns + "?fieldSelector=spec.bogus%3Dx")
    check(st == 400, "bogus field: %s" % st)
    same_status(body, fixture("status-400-field-label.json"), "field label not supported")
    st, body, _ = sim.get(ns + "?labelSelector=kyuubi-unique-tag+in+(a,b")
    check(st == 400, "bad label selector: %s" % st)
    same_status(body, fixture("status-400-bad-label-selector.json"), "bad label selector")
    for bad in ("a%3D%3D%3Db", "%3Dx", "a+in+b", "a,", "Bad+Key"):
        st, body, _ = sim.get(ns + "?labelSelector=" + bad)
        check(st == 400 and body["reason"] == "BadRequest", "labelSelector=%s: %s %s" % (bad, st, body))
    ok("label selectors (= == != in notin exists !) and field selectors; 400 as the apiserver")


def test_paging(sim):
    ns = "/api/v1/namespaces/page/pods"
    for i in range(7):
        sim.request("POST", ns, pod("p%d" % i, {"kyuubi-unique-tag": "t"}, ns="page"))
    p1 = lst(sim, "labelSelector=kyuubi-unique-tag&limit=3", ns)
    rv = p1["metadata"]["resourceVersion"]
    check(list(p1["metadata"].keys()) == ["resourceVersion", "continue"], "page metadata %s" % p1["metadata"])
    check(names(p1["items"]) == ["p0", "p1", "p2"], "page 1 %s" % names(p1["items"]))
    # writes between pages must not show: pages are read at the first page's rv
    sim.request("DELETE", ns + "/p4")
    sim.request("POST", ns, pod("p3a", {"kyuubi-unique-tag": "t"}, ns="page"))
    sim.request("PATCH", ns + "/p5", {"metadata": {"labels": {"new": "1"}}}, ctype="application/merge-patch+json")
    p2 = lst(sim, "labelSelector=kyuubi-unique-tag&limit=3&continue=" + p1["metadata"]["continue"], ns)
    check(p2["metadata"]["resourceVersion"] == rv, "page 2 repeats rv %s: %s" % (rv, p2["metadata"]))
    check(names(p2["items"]) == ["p3", "p4", "p5"], "page 2 is the snapshot: %s" % names(p2["items"]))
    check("new" not in [i for i in p2["items"] if i["metadata"]["name"] == "p5"][0]["metadata"]["labels"],
          "page 2 shows p5 as it was")
    p3 = lst(sim, "labelSelector=kyuubi-unique-tag&limit=3&continue=" + p2["metadata"]["continue"], ns)
    check(p3["metadata"]["resourceVersion"] == rv and names(p3["items"]) == ["p6"], "page 3 %s" % p3)
    check("continue" not in p3["metadata"], "last page has no continue")
    now = names(lst(sim, "", ns)["items"])
    check(now == ["p0", "p1", "p2", "p3", "p3a", "p5", "p6"], "fresh list sees the writes: %s" % now)
    # without a selector: remainingItemCount, like the apiserver
    q = lst(sim, "limit=2", ns)
    check(q["metadata"].get("remainingItemCount") == 5, "remainingItemCount %s" % q["metadata"])
    st, body, _ = sim.get(ns + "?limit=2&continue=bogus-token")
    check(st == 400 and body["reason"] == "BadRequest", "garbage token: %s %s" % (st, body))
    st, body, _ = sim.get(ns + "?limit=2&continue=%%%")
    check(st == 400, "undecodable token: %s" % st)
    ok("limit/continue: consistent pages at the first page's resourceVersion; garbage token 400")


def test_expired_continue():
    with Sim("--continue-ttl", "1") as sim:
        ns = "/api/v1/namespaces/exp/pods"
        for i in range(5):
            sim.request("POST", ns, pod("e%d" % i, {"kyuubi-unique-tag": "t"}, ns="exp"))
        p1 = lst(sim, "labelSelector=kyuubi-unique-tag&limit=2", ns)
        time.sleep(1.6)
        st, body, _ = sim.get(ns + "?labelSelector=kyuubi-unique-tag&limit=2&continue=" + p1["metadata"]["continue"])
        check(st == 410, "expired token: %s %s" % (st, body))
        want = fixture("status-410-expired.json")
        same_status(body, want, "410 Expired")
        check(list(body["metadata"].keys()) == ["continue"], "410 metadata carries a fresh continue token")
        # the fresh token continues (inconsistently) from where the old one stopped
        rest = lst(sim, "labelSelector=kyuubi-unique-tag&limit=10&continue=" + body["metadata"]["continue"], ns)
        check(names(rest["items"]) == ["e2", "e3", "e4"], "fresh token resumes: %s" % names(rest["items"]))
        # a token used within the ttl keeps working (a ttl longer than this
        # machine can stall between two requests, so the test has no window)
        sim.faults(continue_ttl=int(kjtest.DEADLINE))
        p1 = lst(sim, "labelSelector=kyuubi-unique-tag&limit=2", ns)
        p2 = lst(sim, "labelSelector=kyuubi-unique-tag&limit=2&continue=" + p1["metadata"]["continue"], ns)
        check(names(p2["items"]) == ["e2", "e3"], "live token: %s" % names(p2["items"]))
    ok("continue token expires after --continue-ttl: 410 Expired with a fresh token")


def test_delete(sim):
    ns = "/api/v1/namespaces/del/pods"
    # unscheduled, no finalizers: gone at once, 200 with the pod
    sim.request("POST", ns, pod("d1", ns="del"))
    st, body, _ = sim.request("DELETE", ns + "/d1", {"kind": "DeleteOptions", "apiVersion": "v1",
                                                      "propagationPolicy": "Background"})
    check(st == 200 and body["kind"] == "Pod" and body["metadata"]["name"] == "d1", "DELETE: %s %s" % (st, body))
    check(sim.get(ns + "/d1")[0] == 404, "unscheduled pod gone at once")
    st, body, _ = sim.request("DELETE", ns + "/d1")
    check(st == 404 and body["reason"] == "NotFound", "second DELETE: 404")
    # preconditions
    st, p, _ = sim.request("POST", ns, pod("d2", ns="del"))
    uid = p["metadata"]["uid"]
    st, body, _ = sim.request("DELETE", ns + "/d2", {"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}})
    check(st == 409, "uid precondition: %s" % st)
    want = fixture("status-409-uid-precondition.json")
    want = json.loads(json.dumps(want).replace(want["details"]["name"], "d2")
                      .replace("f4fe7516-4fb5-43d8-9ddc-e2c19a37ef60", uid))
    same_status(body, want, "uid precondition")
    st, body, _ = sim.request("DELETE", ns + "/d2", {"preconditions": {"resourceVersion": "1"}})
    check(st == 409, "rv precondition: %s %s" % (st, body))
    # as recorded: 'the ResourceVersion in the precondition (84) does not
    # match the ResourceVersion in record (85)', details name and kind Pod
    want = fixture("status-409-resourceversion-precondition.json")
    want = json.loads(json.dumps(want).replace('\\"w2\\"', '\\"d2\\"')
                      .replace("(84)", "(1)")
                      .replace("(85)", "(%s)" % p["metadata"]["resourceVersion"]))
    want["details"]["name"] = "d2"
    same_status(body, want, "rv precondition")
    check(body["details"] == want["details"], "rv precondition details: %s" % body["details"])
    # with both, a stale resourceVersion alone fails it too
    st, body, _ = sim.request("DELETE", ns + "/d2", {"preconditions": {
        "uid": uid, "resourceVersion": str(int(p["metadata"]["resourceVersion"]) - 1)}})
    check(st == 409 and body["reason"] == "Conflict" and "ResourceVersion" in body["message"],
          "uid right, rv stale: %s %s" % (st, body))
    st, body, _ = sim.request("DELETE", ns + "/d2", {"preconditions": {"uid": uid,
                                                                      "resourceVersion": p["metadata"]["resourceVersion"]}})
    check(st == 200 and sim.get(ns + "/d2")[0] == 404, "matching preconditions delete")
    # scheduled, running: graceful (terminationGracePeriodSeconds 30 by default)
    sim.request("POST", ns, pod("d3", node="node-1", ns="del"))
    sim.request("PATCH", ns + "/d3/status", {"status": {"phase": "Running"}}, ctype="application/merge-patch+json")
    st, body, _ = sim.request("DELETE", ns + "/d3")
    check(st == 200 and body["metadata"].get("deletionGracePeriodSeconds") == 30 and
          "deletionTimestamp" in body["metadata"], "graceful delete: %s" % body["metadata"])
    check(sim.get(ns + "/d3")[0] == 200, "scheduled running pod stays during its grace period")
    rv = body["metadata"]["resourceVersion"]
    st, body, _ = sim.request("DELETE", ns + "/d3")
    check(st == 200 and body["metadata"]["resourceVersion"] == rv, "second DELETE of a terminating pod: 200, no change")
    st, body, _ = sim.request("DELETE", ns + "/d3", {"gracePeriodSeconds": 0})
    check(st == 200 and sim.get(ns + "/d3")[0] == 404, "grace 0 removes it")
    # the grace period from DeleteOptions, then the kubelet confirms
    sim.request("POST", ns, pod("d4", node="node-1", ns="del"))
    st, body, _ = sim.request("DELETE", ns + "/d4", {"gracePeriodSeconds": 1})
    check(body["metadata"]["deletionGracePeriodSeconds"] == 1, "grace from DeleteOptions")
    took = wait_for(lambda: sim.get(ns + "/d4")[0] == 404)
    check(took >= 0.8, "gone after the grace period, not before: %.2f s" % took)
    # terminal phase: grace forced to 0
    sim.request("POST", ns, pod("d5", node="node-1", ns="del"))
    sim.request("PATCH", ns + "/d5/status", {"status": {"phase": "Failed"}}, ctype="application/merge-patch+json")
    st, body, _ = sim.request("DELETE", ns + "/d5", {"gracePeriodSeconds": 30})
    check(st == 200 and sim.get(ns + "/d5")[0] == 404, "terminal pod deleted at once")
    # spec.terminationGracePeriodSeconds is used when DeleteOptions has none
    sim.request("POST", ns, pod("d6", node="node-1", grace=7, ns="del"))
    st, body, _ = sim.request("DELETE", ns + "/d6")
    check(body["metadata"]["deletionGracePeriodSeconds"] == 7, "grace from the pod spec")
    sim.request("DELETE", ns + "/d6", {"gracePeriodSeconds": 0})
    # query parameter form
    sim.request("POST", ns, pod("d7", node="node-1", ns="del"))
    st, body, _ = sim.request("DELETE", ns + "/d7?gracePeriodSeconds=0")
    check(st == 200 and sim.get(ns + "/d7")[0] == 404, "?gracePeriodSeconds=0")
    ok("DELETE: DeleteOptions body, uid/rv preconditions 409, grace period rules, 200 with the pod")


def test_finalizers(sim):
    p = driver_pod()
    p["metadata"]["name"] = NAME
    sim.request("PATCH", PODS + "/" + NAME, {"metadata": {"finalizers": None}}, ctype="application/merge-patch+json")
    sim.request("DELETE", PODS + "/" + NAME, {"gracePeriodSeconds": 0})
    st, created, _ = sim.request("POST", PODS, p)
    check(st == 201, "create driver: %s" % st)
    st, body, _ = sim.request("DELETE", PODS + "/" + NAME, {"kind": "DeleteOptions", "apiVersion": "v1",
                                                             "propagationPolicy": "Background"})
    want = fixture("pod-delete-with-finalizer.json")
    check(st == 200, "DELETE with finalizer: %s" % st)
    check(body["metadata"]["deletionGracePeriodSeconds"] == 0 and "deletionTimestamp" in body["metadata"],
          "deletionTimestamp and deletionGracePeriodSeconds 0: %s" % body["metadata"])
    wk = [k for k in want["metadata"] if k != "managedFields"]
    check(list(body["metadata"].keys()) == wk, "metadata keys %s, want %s" % (list(body["metadata"]), wk))
    check(sim.get(PODS + "/" + NAME)[0] == 200, "pod with a finalizer stays")
    deleted_rv = body["metadata"]["resourceVersion"]
    # no new finalizers on a terminating pod
    st, body, _ = sim.request("PATCH", PODS + "/" + NAME, [{"op": "add", "path": "/metadata/finalizers/-", "value": "x.io/new"}],
                              ctype="application/json-patch+json")
    check(st == 422, "add finalizer to terminating: %s" % st)
    same_status(body, fixture("status-422-finalizer-on-terminating.json"), "422 finalizer")
    check(body["details"] == fixture("status-422-finalizer-on-terminating.json")["details"], "422 details/causes")
    # a failed JSON Patch test
    st, body, _ = sim.request("PATCH", PODS + "/" + NAME,
                              [{"op": "test", "path": "/metadata/finalizers/0", "value": "wrong"},
                               {"op": "remove", "path": "/metadata/finalizers/0"}],
                              ctype="application/json-patch+json")
    check(st == 422, "failed test: %s" % st)
    same_status(body, fixture("status-422-patch-test.json"), "422 test failed")
    check(body["details"] == {}, "422 test failed: details {}")
    # an undecodable patch
    st, body, _ = sim.request("PATCH", PODS + "/" + NAME, "not json", ctype="application/json-patch+json")
    check(st == 400, "bad patch: %s" % st)
    same_status(body, fixture("status-400-bad-patch.json"), "400 bad patch")
    # removing the last finalizer removes the pod: 200 with the pod, then 404
    st, body, _ = sim.request("PATCH", PODS + "/" + NAME,
                              [{"op": "test", "path": "/metadata/finalizers/0", "value": "kyuubi.apache.org/pod-cleanup"},
                               {"op": "remove", "path": "/metadata/finalizers/0"}],
                              ctype="application/json-patch+json")
    check(st == 200 and body["kind"] == "Pod" and not body["metadata"].get("finalizers"),
          "last finalizer removed: %s %s" % (st, body))
    want = fixture("pod-patch-last-finalizer-removed.json")["metadata"]
    check(list(body["metadata"].keys()) == [k for k in want if k != "managedFields"],
          "metadata keys %s, want %s" % (list(body["metadata"]), list(want)))
    check(body["metadata"]["resourceVersion"] == deleted_rv, "the answer carries the last stored resourceVersion")
    st, body, _ = sim.get(PODS + "/" + NAME)
    check(st == 404, "gone after the last finalizer: %s" % st)
    same_status(body, fixture("status-404-after-finalizer-removed.json"), "404 after finalizer")
    # strategic merge patch: $deleteFromPrimitiveList/finalizers, keep the other one
    sim.request("POST", PODS, pod("f2", finalizers=["kyuubi.apache.org/pod-cleanup", "example.com/other"]))
    st, body, _ = sim.request("PATCH", PODS + "/f2",
                              {"metadata": {"$deleteFromPrimitiveList/finalizers": ["kyuubi.apache.org/pod-cleanup"]}},
                              ctype="application/strategic-merge-patch+json")
    check(st == 200 and body["metadata"]["finalizers"] == ["example.com/other"], "SMP delete: %s" % body["metadata"])
    st, body, _ = sim.request("PATCH", PODS + "/f2", {"metadata": {"finalizers": ["a.io/x"], "labels": {"l": "1"}}},
                              ctype="application/strategic-merge-patch+json")
    check(body["metadata"]["finalizers"] == ["example.com/other", "a.io/x"] and body["metadata"]["labels"]["l"] == "1",
          "SMP merges primitive list: %s" % body["metadata"])
    sim.request("DELETE", PODS + "/f2")
    check(sim.get(PODS + "/f2")[0] == 200, "f2 terminating, kept")
    st, body, _ = sim.request("PATCH", PODS + "/f2", {"metadata": {"finalizers": None}},
                              ctype="application/merge-patch+json")
    check(st == 200 and sim.get(PODS + "/f2")[0] == 404, "merge patch emptying finalizers removes it")
    # PUT emptying finalizers on a terminating pod removes it too
    sim.request("POST", PODS, pod("f3", finalizers=["a.io/x"]))
    sim.request("DELETE", PODS + "/f3")
    st, cur, _ = sim.get(PODS + "/f3")
    cur["metadata"]["finalizers"] = []
    st, body, _ = sim.request("PUT", PODS + "/f3", cur)
    check(st == 200 and sim.get(PODS + "/f3")[0] == 404, "PUT emptying finalizers: %s" % st)
    # graceful + finalizer: stays after the grace period until the finalizer goes
    sim.request("POST", PODS, pod("f4", finalizers=["a.io/x"], node="n1"))
    st, body, _ = sim.request("DELETE", PODS + "/f4", {"gracePeriodSeconds": 1})
    took = wait_for(lambda: sim.get(PODS + "/f4")[1]["metadata"]["deletionGracePeriodSeconds"] == 0)
    st, body, _ = sim.get(PODS + "/f4")
    check(took >= 0.8 and st == 200 and body["metadata"]["deletionGracePeriodSeconds"] == 0,
          "after grace (%.2f s), kept with finalizer: %s" % (took, body))
    sim.request("PATCH", PODS + "/f4", [{"op": "remove", "path": "/metadata/finalizers/0"}], ctype="application/json-patch+json")
    check(sim.get(PODS + "/f4")[0] == 404, "f4 gone once its finalizer is removed")
    ok("finalizers: kept with deletionTimestamp, 422 on new finalizer, removal on last, SMP directives")


def test_status_subresource(sim):
    sim.request("POST", PODS, pod("st1", {"a": "1"}))
    st, body, _ = sim.request("PATCH", PODS + "/st1/status",
                              {"status": {"phase": "Failed", "reason": "OOMKilled"}, "metadata": {"labels": {"a": "2"}}},
                              ctype="application/merge-patch+json")
    check(st == 200 and body["status"]["phase"] == "Failed", "status patch: %s" % st)
    check(body["metadata"]["labels"]["a"] == "1", "status patch does not change labels")
    st, body, _ = sim.get(PODS + "/st1/status")
    check(st == 200 and body["status"]["phase"] == "Failed", "GET status")
    body["status"]["phase"] = "Succeeded"
    st, body, _ = sim.request("PUT", PODS + "/st1/status", body)
    check(st == 200 and body["status"]["phase"] == "Succeeded", "PUT status")
    body["status"]["phase"] = "Running"
    body["metadata"]["labels"]["b"] = "2"
    st, body, _ = sim.request("PUT", PODS + "/st1", body)
    check(st == 200 and body["status"]["phase"] == "Succeeded" and body["metadata"]["labels"]["b"] == "2",
          "PUT of the pod ignores status: %s" % body.get("status"))
    st, body, _ = sim.request("PATCH", PODS + "/st1", {"status": {"phase": "Running"}}, ctype="application/merge-patch+json")
    check(body["status"]["phase"] == "Succeeded", "patch of the pod ignores status")
    ok("status subresource: GET/PUT/PATCH set the phase; the main resource cannot")


def test_leases(sim):
    base = "/apis/coordination.k8s.io/v1/namespaces/%s/leases" % NS
    want = fixture("lease-created.json")
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "kjournal-reconciler"},
             "spec": want["spec"]}
    st, body, _ = sim.request("POST", base, lease)
    check(st == 201, "create lease: %s %s" % (st, body))
    check(list(body.keys()) == list(want.keys()) and body["spec"] == want["spec"], "lease shape %s" % body)
    check(list(body["metadata"].keys()) == [k for k in want["metadata"] if k != "managedFields"], "lease metadata")
    st, got, _ = sim.get(base + "/kjournal-reconciler")
    check(st == 200 and got == body, "GET lease")
    got["spec"]["holderIdentity"] = "kjournald-1"
    st, upd, _ = sim.request("PUT", base + "/kjournal-reconciler", got)
    check(st == 200 and upd["spec"]["holderIdentity"] == "kjournald-1", "PUT lease: %s" % st)
    check(int(upd["metadata"]["resourceVersion"]) > int(got["metadata"]["resourceVersion"]), "rv bumped")
    st, body, _ = sim.request("PUT", base + "/kjournal-reconciler", got)  # stale now
    check(st == 409, "stale lease PUT: %s" % st)
    same_status(body, fixture("status-409-lease-conflict.json"), "lease 409")
    check(body["details"] == fixture("status-409-lease-conflict.json")["details"], "lease 409 details")
    del got["metadata"]["resourceVersion"]
    st, body, _ = sim.request("PUT", base + "/kjournal-reconciler", got)
    check(st == 422, "lease PUT without resourceVersion: %s" % st)
    st, body, _ = sim.get(base + "/nope")
    check(st == 404 and body["message"] == 'leases.coordination.k8s.io "nope" not found'
          and body["details"] == {"name": "nope", "group": "coordination.k8s.io", "kind": "leases"}, "lease 404 %s" % body)
    st, body, _ = sim.request("POST", base, lease)
    check(st == 409 and body["reason"] == "AlreadyExists", "lease exists: %s" % st)
    lst_ = lst(sim, path=base)
    check(lst_["kind"] == "LeaseList" and len(lst_["items"]) == 1, "lease list")
    ok("leases: create 201, get, PUT with optimistic concurrency (409 as the apiserver)")


def test_auth():
    with Sim(token="s3cret") as sim:
        st, body, _ = sim.get(PODS, token=False)
        check(st == 401, "no token: %s" % st)
        same_status(body, fixture("status-401.json"), "401")
        st, body, _ = sim.get(PODS, token=False, headers={"Authorization": "Bearer wrong"})
        same_status(body, fixture("status-401.json"), "401 wrong token")
        check(sim.get(PODS)[0] == 200, "right token")
        check(sim.get("/_sim/stats", token=False)[0] == 200, "/_sim/ needs no token")
    ok("bearer token: 401 Status otherwise")


def dechunk(data):
    """The body of a chunked HTTP/1.1 response, as far as its chunks are
    complete. Events are lines of the body: one chunk may carry several of
    them, or part of one."""
    if b"\r\n\r\n" not in data:
        return b""
    body, rest = b"", data.split(b"\r\n\r\n", 1)[1]
    while b"\r\n" in rest:
        size_line, tail = rest.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if size == 0 or len(tail) < size + 2:
            break
        body, rest = body + tail[:size], tail[size + 2:]
    return body


def test_watch(sim):
    ns = "/api/v1/namespaces/w/pods"
    sim.request("POST", ns, pod("w1", {"k": "v"}, ns="w"))
    sim.request("POST", ns, pod("w2", ns="w"))
    t0 = time.time()
    st, body, _ = sim.get(ns + "?watch=1&timeoutSeconds=1")
    check(st == 200 and 0.8 < time.time() - t0 < kjtest.DEADLINE, "watch ends after timeoutSeconds")
    lines = [json.loads(x) for x in body.splitlines()] if isinstance(body, str) else [body]
    rec = [json.loads(x) for x in open(__import__("simtest").os.path.join(__import__("simtest").FIXTURES,
                                                                          "watch-pods-events.jsonl"))]
    check([e["type"] for e in lines] == ["ADDED", "ADDED"], "initial events %s" % lines)
    check(list(lines[0].keys()) == list(rec[0].keys()) and lines[0]["object"]["kind"] == "Pod", "event shape")
    # events after a resourceVersion, with a selector, over a raw socket
    # (chunked). A watch from rv replays what happened after rv whenever it
    # starts, so the changes need not wait for it; the last change the
    # selector matches (ADDED w3) marks the end of what it must show.
    rv = lst(sim, "", ns)["metadata"]["resourceVersion"]
    s = socket.create_connection(("127.0.0.1", sim.port))
    s.sendall(("GET %s?watch=true&labelSelector=k&resourceVersion=%s&timeoutSeconds=%d HTTP/1.1\r\nHost: x\r\n\r\n"
               % (ns, rv, kjtest.DEADLINE)).encode())
    sim.request("PATCH", ns + "/w1", {"metadata": {"labels": {"x": "1"}}}, ctype="application/merge-patch+json")
    sim.request("PATCH", ns + "/w2", {"metadata": {"labels": {"x": "1"}}}, ctype="application/merge-patch+json")
    sim.request("DELETE", ns + "/w1")
    sim.request("POST", ns, pod("w3", {"k": "end"}, ns="w"))
    data, evs = b"", []
    s.settimeout(kjtest.DEADLINE)
    while not any(e["type"] == "ADDED" and e["object"]["metadata"]["name"] == "w3" for e in evs):
        chunk = s.recv(65536)
        check(chunk, "the watch ended before ADDED w3: %r" % data)
        data += chunk
        evs = [json.loads(line) for line in dechunk(data).split(b"\n")[:-1] if line.strip()]
    s.close()
    text = data.decode()
    check("Transfer-Encoding: chunked" in text, "watch is chunked")
    evs = [json.loads(line) for line in dechunk(data).decode().splitlines() if line.strip()]
    # a graceful delete: MODIFIED (deletionTimestamp) before DELETED, as recorded
    check([(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [("MODIFIED", "w1"), ("MODIFIED", "w1"),
                                                                          ("DELETED", "w1"), ("ADDED", "w3")],
          "watch events %s" % [(e["type"], e["object"]["metadata"]["name"]) for e in evs])
    ok("watch: ADDED for the current state, then MODIFIED/DELETED after resourceVersion, timeoutSeconds")


def on_one_sim():
    with Sim() as sim:
        test_create_get_list(sim)
        test_resource_version(sim)
        test_selectors(sim)
        test_paging(sim)
        test_delete(sim)
        test_finalizers(sim)
        test_status_subresource(sim)
        test_leases(sim)
        test_watch(sim)
        st = sim.stats()
        check(st["deletes"]["removed"] > 0 and st["deletes"]["marked"] > 0 and st["deletes"]["not_found"] > 0,
              "delete effects counted: %s" % st["deletes"])


def main():
    concurrently(on_one_sim, test_expired_continue, test_auth)
    print("all semantics ok")


if __name__ == "__main__":
    main()
