#!/usr/bin/env python3
"""The official Kubernetes Python client (Debian python3-kubernetes) against
kube-sim: listing with limit/continue across pages, an expired continue token
(410), leases, deletes with preconditions. Plain HTTP, and TLS with a token.
Skipped (77) when the client is not installed."""
import sys
import time

from simtest import SKIP, Sim, concurrently, ok, pod
from kjtest import check

try:
    from kubernetes import client
    from kubernetes.client.rest import ApiException
except ImportError:
    print("python3-kubernetes not installed: skipping")
    sys.exit(SKIP)

NS = "kyuubi"


def api(sim):
    cfg = client.Configuration()
    cfg.host = sim.url
    if sim.tls:
        cfg.ssl_ca_cert = sim.cert
        cfg.verify_ssl = True
    if sim.token:
        cfg.api_key = {"authorization": "Bearer " + sim.token}
    return client.ApiClient(cfg)


def seed(n):
    return {"kind": "PodList", "apiVersion": "v1",
            "items": [pod("py-%03d" % i, {"kyuubi-unique-tag": "tag-%d" % (i % 3), "spark-role": "driver"})
                      for i in range(n)]}


def flows(sim):
    ac = api(sim)
    core = client.CoreV1Api(ac)
    # pages
    seen, pages, cont, rvs = [], 0, None, set()
    while True:
        kw = {"label_selector": "kyuubi-unique-tag in (tag-0,tag-1)", "limit": 7}
        if cont:
            kw["_continue"] = cont
        r = core.list_namespaced_pod(NS, **kw)
        pages += 1
        rvs.add(r.metadata.resource_version)
        seen += [p.metadata.name for p in r.items]
        cont = r.metadata._continue
        if not cont:
            break
        if pages == 2:  # a write between pages does not show
            core.delete_namespaced_pod("py-000", NS)
    want = ["py-%03d" % i for i in range(40) if i % 3 != 2]
    check(seen == want, "paged list: %d items %s..., want %d" % (len(seen), seen[:3], len(want)))
    check(pages == 4 and len(rvs) == 1, "pages %d, resourceVersions %s" % (pages, rvs))
    check(all(p.kind is None for p in r.items), "items carry no kind")
    # field selector and a status change
    body = {"status": {"phase": "Failed"}}
    core.patch_namespaced_pod_status("py-001", NS, body)
    r = core.list_namespaced_pod(NS, field_selector="status.phase=Failed")
    check([p.metadata.name for p in r.items] == ["py-001"], "status.phase=Failed")
    # expired continue token: 410 with a fresh token
    sim.faults(continue_ttl=1)
    r = core.list_namespaced_pod(NS, limit=5)
    time.sleep(1.5)
    try:
        core.list_namespaced_pod(NS, limit=5, _continue=r.metadata._continue)
        check(False, "expired token accepted")
    except ApiException as e:
        check(e.status == 410, "expired token: %s" % e.status)
        import json
        st = json.loads(e.body)
        check(st["reason"] == "Expired" and st["metadata"].get("continue"), "410 body %s" % st)
        rest = core.list_namespaced_pod(NS, limit=500, _continue=st["metadata"]["continue"])
        check(len(rest.items) == 39 - 5, "fresh token continues after the first page: %d" % len(rest.items))
    sim.faults(continue_ttl=300)
    # delete with a uid precondition: 409 for the wrong uid, 200 for the right one
    p = core.read_namespaced_pod("py-002", NS)
    try:
        core.delete_namespaced_pod("py-002", NS, body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid="00000000-0000-0000-0000-000000000000")))
        check(False, "wrong uid deleted")
    except ApiException as e:
        check(e.status == 409, "wrong uid: %s" % e.status)
    out = core.delete_namespaced_pod("py-002", NS, body=client.V1DeleteOptions(
        preconditions=client.V1Preconditions(uid=p.metadata.uid)))
    check(out.metadata.name == "py-002", "delete returns the pod")
    try:
        core.read_namespaced_pod("py-002", NS)
        check(False, "deleted pod still there")
    except ApiException as e:
        check(e.status == 404, "404 after delete")
    # JSON patch removing a finalizer
    core.create_namespaced_pod(NS, pod("py-fin", finalizers=["kyuubi.apache.org/pod-cleanup"]))
    core.delete_namespaced_pod("py-fin", NS)
    p = core.read_namespaced_pod("py-fin", NS)
    check(p.metadata.deletion_timestamp is not None, "terminating")
    core.patch_namespaced_pod("py-fin", NS, [{"op": "test", "path": "/metadata/finalizers/0",
                                              "value": "kyuubi.apache.org/pod-cleanup"},
                                             {"op": "remove", "path": "/metadata/finalizers/0"}])
    try:
        core.read_namespaced_pod("py-fin", NS)
        check(False, "pod with its last finalizer removed still there")
    except ApiException as e:
        check(e.status == 404, "gone")
    # leases with optimistic concurrency
    coord = client.CoordinationV1Api(ac)
    lease = client.V1Lease(metadata=client.V1ObjectMeta(name="kjournal-reconciler"),
                           spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15))
    created = coord.create_namespaced_lease(NS, lease)
    got = coord.read_namespaced_lease("kjournal-reconciler", NS)
    got.spec.holder_identity = "b"
    coord.replace_namespaced_lease("kjournal-reconciler", NS, got)
    created.spec.holder_identity = "c"
    try:
        coord.replace_namespaced_lease("kjournal-reconciler", NS, created)
        check(False, "stale lease update accepted")
    except ApiException as e:
        check(e.status == 409, "stale lease: %s" % e.status)
    check(coord.read_namespaced_lease("kjournal-reconciler", NS).spec.holder_identity == "b", "lease holder")
    ac.close()


def plain():
    with Sim(seed=seed(40)) as sim:
        flows(sim)
    ok("python client over plain HTTP: paged list, 410 with fresh token, preconditions, finalizer patch, leases")


def tls_token():
    with Sim(seed=seed(40), token="py-token", tls=True) as sim:
        flows(sim)
        check(sim.stats()["by_code"].get("401", 0) == 0, "no 401")
    ok("python client over TLS (CA verified) with a token: the same")


concurrently(plain, tls_token)
