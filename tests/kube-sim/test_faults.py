#!/usr/bin/env python3
"""Fault injection (flags and POST /_sim/faults), /_sim/stats accounting,
malformed input (bad JSON, huge bodies, bad selectors, bad paths: a Status
error, never a crash), and the command line (--help, bad flags, signals)."""
import json
import os
import signal
import socket
import subprocess
import time

from simtest import PODS, Sim, ok, pod
import kjtest
from kjtest import check

BIN = kjtest.program("kube-sim")


def test_cli():
    r = subprocess.run([BIN, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    check(r.returncode == 0, "--help exits 0")
    for flag in ("--listen", "--token", "--tls-cert", "--tls-key", "--seed", "--latency-ms", "--jitter-ms",
                 "--error-rate", "--error-codes", "--retry-after", "--drop-rate", "--drop-after-rate",
                 "--continue-ttl", "--fail-nth", "--client-ca",
                 "/_sim/stats", "/_sim/faults", "/_sim/state"):
        check(flag in r.stdout, "--help explains %s" % flag)
    bad = [["--bogus"], ["--error-rate", "150"], ["--latency-ms", "x"], ["--fail-nth", "frob:1:500"],
           ["--fail-nth", "get:0:500"], ["--listen", "nohostport"], ["--tls-cert", "/nonexistent"],
           ["--error-codes", "200"], ["--continue-ttl"], ["extra-arg"]]
    for args in bad:
        r = subprocess.run([BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=kjtest.DEADLINE)
        check(r.returncode == 2 and "kube-sim:" in r.stderr, "%s: rc %d, %s" % (args, r.returncode, r.stderr))
    d = kjtest.tmpdir()
    seed = os.path.join(d, "bad.json")
    with open(seed, "w") as f:
        f.write("{not json")
    r = subprocess.run([BIN, "--seed", seed, "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True, timeout=kjtest.DEADLINE)
    check(r.returncode == 1 and "seed" in r.stderr, "bad seed: %d %s" % (r.returncode, r.stderr))
    # port 0 + --port-file, logfmt, SIGINT -> exit 0
    pf = os.path.join(d, "port")
    log = os.path.join(d, "log")
    p = kjtest.start([BIN, "--listen", "127.0.0.1:0", "--port-file", pf], log_path=log)
    kjtest.wait_for("the port file", lambda: os.path.exists(pf) and open(pf).read().strip())
    port = int(open(pf).read())
    kjtest.wait_port(port, p)
    check(kjtest.stop(p, signal.SIGINT) == 0, "SIGINT: exit 0")
    text = open(log).read()
    check('level=info msg="listening" addr=127.0.0.1:%d' % port in text and "ts=" in text, "logfmt: %s" % text)
    ok("command line: --help, bad flags exit 2, bad seed exit 1, port 0 + --port-file, SIGINT exit 0")


# One validator for the fault settings: a flag and POST /_sim/faults refuse a
# value with the same words. (flag, its argument, the JSON value, the words)
FAULT_WORDING = [
    ("latency-ms", "600001", 600001, "want milliseconds from 0 to 600000"),
    ("jitter-ms", "-1", -1, "want milliseconds from 0 to 600000"),
    ("error-rate", "150", 150, "want a percentage from 0 to 100"),
    ("drop-rate", "x", "x", "want a percentage from 0 to 100"),
    ("drop-after-rate", "100.5", 100.5, "want a percentage from 0 to 100"),
    ("retry-after", "3601", 3601, "want seconds from 0 to 3600"),
    ("continue-ttl", "86401", 86401, "want seconds from 0 to 86400"),
    ("watch-drop-rate", "101", 101, "want a percentage from 0 to 100"),
    ("watch-end-after", "-1", -1, "want seconds from 0 to 86400"),
    ("error-codes", "200", [200], "want 1 to 8 codes from 400 to 599"),
    ("error-codes", "429,500,503,429,500,503,429,500,503", [429, 500, 503] * 3,
     "want 1 to 8 codes from 400 to 599"),
    ("fail-nth", "get:0:500", ["get:0:500"],
     "want VERB:N:CODE, e.g. delete:3:500, patch:1:drop or delete:1:drop-after"),
]


def test_fault_wording():
    with Sim() as sim:
        for flag, arg, value, words in FAULT_WORDING:
            r = subprocess.run([BIN, "--" + flag, arg], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=10)
            want = "kube-sim: bad value '%s' for --%s: %s\n" % (arg, flag, words)
            check(r.returncode == 2 and r.stderr.startswith(want), "--%s %s: %r, want %r" % (flag, arg, r.stderr, want))
            name = flag.replace("-", "_")
            st, body, _ = sim.request("POST", "/_sim/faults", {name: value}, token=False)
            want = "%s: %s%s" % (name, arg + ": " if flag == "fail-nth" else "", words)
            check(st == 400 and body["message"] == want, "%s %r: %s %r, want %r" % (name, value, st, body, want))
    ok("fault settings: a flag and POST /_sim/faults refuse a value with the same words")


def test_faults():
    with Sim("--fail-nth", "delete:2:500", "--fail-nth", "get:3:429", "--fail-nth", "list:1:drop",
             "--retry-after", "3") as sim:
        for n in ("a", "b", "c"):
            sim.request("POST", PODS, pod(n))
        # list #1 is dropped: the connection closes without a reply
        s = socket.create_connection(("127.0.0.1", sim.port))
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % PODS).encode())
        s.settimeout(kjtest.DEADLINE)
        check(s.recv(100) == b"", "dropped: connection closed without a reply")
        s.close()
        check(sim.get(PODS)[0] == 200, "list #2 fine")
        codes = [sim.get(PODS + "/a")[0] for _ in range(4)]
        check(codes == [200, 200, 429, 200], "get #3 is 429: %s" % codes)
        sim.faults(fail_nth=["get:1:429", {"verb": "delete", "n": 2, "code": 500}])  # replaces the rules
        st, body, h = sim.get(PODS + "/a")
        check(st == 429 and h["Retry-After"] == "3" and h["Content-Type"].startswith("text/plain")
              and isinstance(body, str) and "Too many requests" in body, "429: %s %s %s" % (st, dict(h), body))
        st, _, _ = sim.request("DELETE", PODS + "/a")
        st2, _, _ = sim.request("DELETE", PODS + "/b")
        check((st, st2) == (200, 500), "delete #2 is 500: %s %s" % (st, st2))
        stats = sim.stats()
        check(stats["faults"]["fail_nth"] == 4 and stats["faults"]["dropped"] == 1, "fault stats %s" % stats["faults"])
        check(stats["deletes"]["removed"] == 1, "the 500 delete removed nothing: %s" % stats["deletes"])
        check(sim.get(PODS + "/b")[0] == 200, "b still there after the injected 500")

        # random errors: 100% of 503 only
        sim.faults(error_rate=100, error_codes=[503], retry_after=2)
        st, body, h = sim.get(PODS)
        check(st == 503 and h["Retry-After"] == "2" and body["reason"] == "ServiceUnavailable", "503: %s" % body)
        check(sim.get("/_sim/stats", token=False)[0] == 200, "/_sim/ is never faulted")
        sim.faults(error_rate=30, error_codes=[429, 500, 503])
        codes = [sim.get(PODS)[0] for _ in range(200)]
        bad = sum(1 for c in codes if c != 200)
        check(30 <= bad <= 100 and set(codes) <= {200, 429, 500, 503}, "30%% errors: %d of 200 %s" % (bad, set(codes)))
        sim.faults(error_rate=0, drop_rate=50)
        drops = 0
        for _ in range(60):
            try:
                sim.conn = None
                sim.request("GET", PODS)  # request() retries once on a dropped connection
            except Exception:
                drops += 1
        got = sim.stats()["faults"]["dropped"]
        check(got >= 15, "drops counted: %d" % got)
        sim.faults(drop_rate=0, latency_ms=150, jitter_ms=0)
        t0 = time.time()
        sim.get(PODS)
        check(time.time() - t0 >= 0.14, "latency applied")
        f = sim.get("/_sim/faults", token=False)[1]
        check(f["latency_ms"] == 150 and f["continue_ttl"] == 300 and "fail_nth" in f, "GET /_sim/faults %s" % f)
        st, body, _ = sim.request("DELETE", "/_sim/faults", token=False)
        check(body["latency_ms"] == 0 and body["error_rate"] == 0, "DELETE /_sim/faults clears")
        for bad in ('{"error_rate": 150}', '{"nope": 1}', '[1]', 'nope', '{"fail_nth": ["x:1:1"]}',
                    '{"error_codes": [200]}'):
            st, body, _ = sim.request("POST", "/_sim/faults", bad, token=False)
            check(st == 400 and body["kind"] == "Status", "bad faults %s: %s" % (bad, st))
        # stats: counts by verb, kind and code; second pass mutates nothing
        sim.request("DELETE", "/_sim/stats", token=False)
        sim.request("PATCH", PODS + "/b", {"metadata": {"labels": {"x": "1"}}}, ctype="application/merge-patch+json")
        before = sim.stats()["mutations"]
        sim.request("PATCH", PODS + "/b", {"metadata": {"labels": {"x": "1"}}}, ctype="application/merge-patch+json")
        sim.request("DELETE", PODS + "/zzz")
        st = sim.stats()
        check(st["mutations"] == before == 1, "a repeated patch mutates nothing: %s" % st)
        check(st["by_verb_kind_code"].get("patch pods 200") == 2 and st["by_verb_kind_code"].get("delete pods 404") == 1,
              "by_verb_kind_code %s" % st["by_verb_kind_code"])
        check(st["by_verb"]["patch"] == 2 and st["by_kind"]["pods"] == 3 and st["by_code"]["404"] == 1, "stats %s" % st)
        check(st["deletes"]["not_found"] == 1, "404 delete is counted as not_found")
        state = sim.get("/_sim/state", token=False)[1]
        check(sorted(p["metadata"]["name"] for p in state["pods"]) == ["b", "c"], "state dump %s" % state.keys())
        st, body, _ = sim.request("POST", "/_sim/seed", [pod("seeded")], token=False)
        check(st == 200 and body["loaded"] == 1 and sim.get(PODS + "/seeded")[0] == 200, "POST /_sim/seed")
        st, body, _ = sim.request("POST", "/_sim/reset", "", token=False)
        check(sim.stats()["objects"]["pods"] == 0, "reset drops every object")
    ok("faults: fail-nth (codes, drop), 429 plain text + Retry-After, 503, random error/drop rates, latency; stats; state; seed; reset")


def lost_answer(sim, method, path, body=None, ctype="application/json"):
    """Sends one request on a fresh connection; checks the connection closes
    without a byte of answer."""
    data = b"" if body is None else (body if isinstance(body, str) else json.dumps(body)).encode()
    s = socket.create_connection(("127.0.0.1", sim.port))
    s.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
               % (method, path, ctype, len(data))).encode() + data)
    s.settimeout(kjtest.DEADLINE)
    got = s.recv(100)
    s.close()
    check(got == b"", "%s %s: closed without a reply, got %r" % (method, path, got))


def test_drop_after():
    """drop-after: the request is done, then the answer is lost."""
    with Sim("--fail-nth", "delete:1:drop-after", "--fail-nth", "create:2:drop-after") as sim:
        sim.request("POST", PODS, pod("a", finalizers=["f"]))
        lost_answer(sim, "POST", PODS, pod("b"))
        check(sim.get(PODS + "/b")[0] == 200, "create #2: answer lost, pod created")
        st, body, _ = sim.request("POST", PODS, pod("b"))
        check(st == 409 and body["reason"] == "AlreadyExists", "a repeated create: 409 %s" % body)
        lost_answer(sim, "DELETE", PODS + "/b", {"preconditions": {"uid": sim.get(PODS + "/b")[1]["metadata"]["uid"]}})
        check(sim.get(PODS + "/b")[0] == 404, "delete #1: answer lost, pod removed")
        st = sim.stats()
        check(st["faults"]["dropped_after"] == 2 and st["faults"]["dropped"] == 0 and st["faults"]["fail_nth"] == 2,
              "drop-after counted apart from drops: %s" % st["faults"])
        check(st["deletes"]["removed"] == 1 and st["by_code"].get("0") == 2 and st["mutations"] == 3,
              "the lost answers' work is counted (removed 1, code 0 twice, 3 mutations): %s" % st)
        # at run time: a JSON Patch removing a finalizer, guarded by test
        f = sim.faults(fail_nth=[{"verb": "patch", "n": 1, "code": "drop-after"}])
        check(f["fail_nth"][0]["code"] == "drop-after", "GET /_sim/faults shows drop-after: %s" % f)
        sim.request("DELETE", PODS + "/a")
        guarded = [{"op": "test", "path": "/metadata/finalizers/0", "value": "f"},
                   {"op": "remove", "path": "/metadata/finalizers/0"}]
        lost_answer(sim, "PATCH", PODS + "/a", guarded, "application/json-patch+json")
        check(sim.get(PODS + "/a")[0] == 404, "patch: answer lost, finalizer removed, pod gone")
        # drop_after_rate: every request done, no answer
        sim.faults(fail_nth=[], drop_after_rate=100)
        lost_answer(sim, "POST", PODS, pod("c"))
        lost_answer(sim, "GET", PODS + "/c")
        lost_answer(sim, "GET", "/api/v1")
        sim.conn = None
        sim.request("DELETE", "/_sim/faults", token=False)
        check(sim.get(PODS + "/c")[0] == 200 and sim.stats()["faults"]["dropped_after"] == 6,
              "drop_after_rate 100: created, 6 answers lost in all")
        for bad in ('{"drop_after_rate": 101}', '{"fail_nth": ["get:1:drop-afterwards"]}'):
            st, body, _ = sim.request("POST", "/_sim/faults", bad, token=False)
            check(st == 400 and body["kind"] == "Status", "bad faults %s: %s" % (bad, st))
    for args in (["--drop-after-rate", "150"], ["--fail-nth", "delete:1:drop-later"]):
        r = subprocess.run([BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=kjtest.DEADLINE)
        check(r.returncode == 2 and "kube-sim:" in r.stderr, "%s: rc %d, %s" % (args, r.returncode, r.stderr))
    ok("drop-after (flag, fail-nth, /_sim/faults): the write is applied, the answer lost, counted in stats")


def test_malformed():
    with Sim() as sim:
        sim.request("POST", PODS, pod("m"))
        cases = [
            ("POST", PODS, "{", "application/json", 400),
            ("POST", PODS, "", "application/json", 400),
            ("POST", PODS, "[]", "application/json", 400),
            ("POST", PODS, '{"metadata":{"name":"Bad_Name"},"spec":{"containers":[{"name":"c"}]}}', "application/json", 422),
            ("POST", PODS, '{"metadata":{"name":"nospec"}}', "application/json", 422),
            ("POST", PODS, '{"metadata":{}}', "application/json", 422),
            ("POST", PODS, '{"metadata":{"name":"rv","resourceVersion":"5"},"spec":{"containers":[{}]}}',
             "application/json", 400),
            ("POST", PODS, '{"metadata":{"name":"x","namespace":"other"},"spec":{"containers":[{}]}}', "application/json", 400),
            ("PUT", PODS + "/m", '{"metadata":{"name":"other"}}', "application/json", 400),
            ("PUT", PODS + "/nope", '{"metadata":{"name":"nope"}}', "application/json", 404),
            ("PATCH", PODS + "/m", '{"a":1}', "application/json-patch+json", 400),
            ("PATCH", PODS + "/m", '[{"op":"remove","path":"/nope/x"}]', "application/json-patch+json", 422),
            ("PATCH", PODS + "/m", '[{"op":"frob","path":"/x"}]', "application/json-patch+json", 422),
            ("PATCH", PODS + "/m", '[{"op":"add"}]', "application/json-patch+json", 422),
            ("PATCH", PODS + "/m", '[1,2]', "application/json-patch+json", 400),
            ("PATCH", PODS + "/m", '[1]', "application/merge-patch+json", 400),
            ("PATCH", PODS + "/m", '{"a":', "application/strategic-merge-patch+json", 400),
            ("PATCH", PODS + "/m", '{}', "text/plain", 415),
            ("PATCH", PODS + "/m", '{}', "application/apply-patch+yaml", 415),
            ("DELETE", PODS + "/m", "{bad", "application/json", 400),
            ("GET", PODS + "?limit=abc", None, None, 400),
            ("GET", PODS + "?labelSelector=%28%28", None, None, 400),
            ("GET", PODS + "?fieldSelector=nonsense", None, None, 400),
            ("GET", PODS + "?fieldSelector=status.podIP%3D1,spec.x%3D1", None, None, 400),
            ("GET", "/api/v1/namespaces/kyuubi/services", None, None, 404),
            ("GET", "/api/v1/namespaces/kyuubi/pods/m/log", None, None, 404),
            ("GET", "/apis/nope.io/v1/things", None, None, 404),
            ("POST", PODS + "/m", "{}", "application/json", 405),
            ("DELETE", PODS, None, None, 405),
            ("PUT", "/api/v1/pods", "{}", "application/json", 405),
        ]
        for method, path, body, ctype, want in cases:
            st, got, _ = sim.request(method, path, body, ctype=ctype or "application/json")
            check(st == want, "%s %s %r: %s, want %s (%s)" % (method, path, body, st, want, got))
            check(isinstance(got, dict) and got.get("kind") == "Status" and got.get("code") == want,
                  "%s %s: a Status with code %d: %r" % (method, path, want, got))
        st, got, _ = sim.get("/nonsense")
        check(st == 404 and "404 page not found" in got, "unknown path: plain 404 like the apiserver")
        # a huge body: 413, and the server keeps serving
        st, got, _ = sim.request("POST", PODS, "x" * (4 * 1024 * 1024))
        check(st == 413 and got["reason"] == "RequestEntityTooLarge", "huge body: %s" % st)
        # deep nesting and binary garbage
        st, got, _ = sim.request("POST", PODS, "[" * 100000)
        check(st == 400, "deep nesting: %s" % st)
        st, got, _ = sim.request("POST", PODS, bytes(range(256)))
        check(st == 400, "binary: %s" % st)
        # raw protocol garbage
        s = socket.create_connection(("127.0.0.1", sim.port))
        s.sendall(b"\x16\x03\x01garbage\r\n\r\n")
        s.settimeout(5)
        try:
            s.recv(100)
        except OSError:
            pass
        s.close()
        check(sim.get(PODS + "/m")[0] == 200, "still serving after malformed input")
        check(json.dumps(sim.stats()), "stats")
    ok("malformed input: Status errors (400/404/405/413/415/422), never a crash")


def test_fuzz():
    """Random selectors, patches, deletes and updates (fixed seed): only
    expected codes, and a clean exit under the sanitizers."""
    import random
    import urllib.parse as up
    rnd = random.Random(7)
    alphabet = list('ab=!,() in notin/.-_~0123456789{}[]":%\\\x00\xff') + ["in", "notin", "metadata.name", "status.phase", "spec.nodeName"]
    def junk(n):
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, n)))
    with Sim() as sim:
        for i in range(30):
            sim.request("POST", PODS, pod("p%d" % i, {"a": str(i % 3)}, finalizers=["f"] if i % 2 else None, node="n" if i % 3 == 0 else None))
        import urllib.parse as up
        for it in range(600):
            k = rnd.randint(0, 7)
            name = "p%d" % rnd.randint(0, 35)
            try:
                if k == 0:
                    sim.get(PODS + "?labelSelector=" + up.quote(junk(20)))
                elif k == 1:
                    sim.get(PODS + "?fieldSelector=" + up.quote(junk(20)) + "&limit=" + str(rnd.randint(0, 5)))
                elif k == 2:
                    ops = [{"op": rnd.choice(["add", "remove", "replace", "test", "move", "copy", "x"]),
                            "path": rnd.choice(["/metadata/finalizers/0", "/metadata/finalizers/-", "/metadata/labels/a", "/spec", "", "/", "/status/phase", "/metadata/name", "/metadata/resourceVersion", "/kind"]),
                            "from": "/metadata/labels", "value": rnd.choice(["x", 1, None, [], {}])} for _ in range(rnd.randint(0, 3))]
                    sim.request("PATCH", PODS + "/" + name, rnd.choice([json.dumps(ops), junk(30)]), ctype="application/json-patch+json")
                elif k == 3:
                    body = rnd.choice([{"metadata": {"finalizers": rnd.choice([None, [], ["f", "g"]]), "labels": {"a": rnd.choice(["1", None])}}},
                                       {"metadata": {"$deleteFromPrimitiveList/finalizers": ["f"]}, "spec": {"containers": [{"name": "c", "$patch": "delete"}]}},
                                       {"status": {"phase": rnd.choice(["Failed", "Running"])}}, junk(30)])
                    sim.request("PATCH", PODS + "/" + name + rnd.choice(["", "/status"]), body, ctype=rnd.choice(["application/merge-patch+json", "application/strategic-merge-patch+json"]))
                elif k == 4:
                    sim.request("DELETE", PODS + "/" + name, rnd.choice([None, {"gracePeriodSeconds": rnd.choice([0, 1, -3, 30])}, {"preconditions": {"uid": "x"}}, junk(10)]))
                elif k == 5:
                    sim.request("POST", PODS, rnd.choice([pod(name, {"a": "1"}, finalizers=["f"]), junk(40)]))
                elif k == 6:
                    st, body, _ = sim.get(PODS + "?limit=3")
                    c = body["metadata"].get("continue") if isinstance(body, dict) else None
                    if c:
                        sim.get(PODS + "?limit=3&continue=" + up.quote(rnd.choice([c, c[:-3], c + "x", junk(10)])))
                else:
                    st, cur, _ = sim.get(PODS + "/" + name)
                    if st == 200:
                        cur["metadata"]["finalizers"] = rnd.choice([[], ["f"], ["g", "f"]])
                        if rnd.random() < 0.3:
                            cur["metadata"]["resourceVersion"] = "1"
                        sim.request("PUT", PODS + "/" + name, cur)
            except Exception as e:
                check(False, "fuzz step %d (kind %d): %r" % (it, k, e))
        codes = sim.stats()["by_code"]
        check(set(codes) <= {"200", "201", "400", "404", "409", "422"}, "fuzz codes %s" % codes)
    ok("fuzz: 600 random requests, only Status codes the apiserver uses")


test_cli()
test_fault_wording()
test_faults()
test_drop_after()
test_malformed()
test_fuzz()
