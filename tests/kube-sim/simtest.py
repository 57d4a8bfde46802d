"""Helpers for the kube-sim tests: start kube-sim, talk plain HTTP(S) to it.

The client side here is Python's http.client on purpose: an independent client,
not kjournal's reconciler, so one misunderstanding of the API cannot sit on both
sides of a test.
"""
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.environ.get("KJ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")), "tests"))
import kjtest  # noqa: E402

SKIP = 77
FIXTURES = os.path.join(kjtest.SHARED, "fixtures", "k8s")
NS = "kyuubi"
PODS = "/api/v1/namespaces/%s/pods" % NS


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


def make_cert(d):
    """A self-signed EC certificate for 127.0.0.1 in directory d: (cert, key)."""
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def make_ca(d, name="ca"):
    """A CA (EC P-256, self-signed, CA:TRUE) in directory d: (cert, key)."""
    cert, key = os.path.join(d, name + ".pem"), os.path.join(d, name + "-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=kube-sim test " + name],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def make_client_cert(d, ca, name="client", cn="kjournal"):
    """A client certificate (clientAuth) signed by ca = (cert, key), or
    self-signed when ca is None: (cert, key)."""
    cert, key = os.path.join(d, name + ".pem"), os.path.join(d, name + "-key.pem")
    subj = "/O=system:masters/CN=" + cn
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key]
    quiet = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if ca is None:
        subprocess.run(["openssl", "req", "-x509"] + ec + ["-out", cert, "-days", "2", "-subj", subj], **quiet)
        return cert, key
    csr, ext = os.path.join(d, name + ".csr"), os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n")
    subprocess.run(["openssl", "req", "-new"] + ec + ["-out", csr, "-subj", subj], **quiet)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-set_serial",
                    str(int.from_bytes(os.urandom(8), "big")), "-out", cert, "-days", "2", "-extfile", ext],
                   **quiet)
    return cert, key


class Sim:
    """A running kube-sim. Use as a context manager; stop() checks a clean exit."""

    def __init__(self, *args, token=None, tls=False, seed=None, client_ca=None, start_timeout=kjtest.DEADLINE):
        self.dir = tempfile.mkdtemp(prefix="kube-sim-test-")
        self.port = kjtest.free_port()
        self.token = token
        self.tls = tls
        self.log = os.path.join(self.dir, "kube-sim.log")
        cmd = [kjtest.program("kube-sim"), "--listen", "127.0.0.1:%d" % self.port]
        if token:
            cmd += ["--token", token]
        if tls:
            self.cert, self.key = make_cert(self.dir)
            cmd += ["--tls-cert", self.cert, "--tls-key", self.key]
        if client_ca:
            cmd += ["--client-ca", client_ca]
        self.client_cert = None  # (cert, key) that connection() presents
        if seed is not None:
            path = os.path.join(self.dir, "seed.json")
            with open(path, "w") as f:
                json.dump(seed, f)
            cmd += ["--seed", path]
        cmd += list(args)
        self.proc = kjtest.start(cmd, log_path=self.log)
        kjtest.wait_port(self.port, self.proc, timeout=start_timeout)
        self.url = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
        self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop(check=exc[0] is None)

    def stop(self, check=True):
        if self.conn:
            self.conn.close()
            self.conn = None
        rc = kjtest.stop(self.proc)
        with open(self.log, errors="replace") as f:
            log = f.read()
        if check:
            kjtest.check(rc == 0, "kube-sim exited with %s; log:\n%s" % (rc, log[-4000:]))
            kjtest.check("ERROR: AddressSanitizer" not in log and "runtime error" not in log,
                         "sanitizer report in kube-sim log:\n" + log[-4000:])
            kjtest.check('msg="stopped"' in log, "no clean stop in the log:\n" + log[-2000:])
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc

    def connection(self):
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.cert)
            if self.client_cert:
                ctx.load_cert_chain(*self.client_cert)
            return http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=kjtest.DEADLINE)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=kjtest.DEADLINE)

    def request(self, method, path, body=None, ctype="application/json", headers=None, token=True):
        """Returns (status, parsed JSON or raw text, response headers)."""
        h = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if body is not None:
            h["Content-Type"] = ctype
        if token and self.token:
            h["Authorization"] = "Bearer " + self.token
        for attempt in range(2):
            if self.conn is None:
                self.conn = self.connection()
            try:
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                raw = r.read()
                break
            except (http.client.HTTPException, ConnectionError, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        text = raw.decode("utf-8", "replace")
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = text
        return r.status, data, r.headers

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def stats(self):
        return self.get("/_sim/stats", token=False)[1]

    def faults(self, **kw):
        st, body, _ = self.request("POST", "/_sim/faults", kw, token=False)
        kjtest.check(st == 200, "POST /_sim/faults %s: %s %s" % (kw, st, body))
        return body


def pod(name, labels=None, finalizers=None, node=None, grace=None, ns=NS):
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
         "spec": {"containers": [{"name": "c", "image": "apache/spark:3.5.1"}]}}
    if finalizers is not None:
        p["metadata"]["finalizers"] = finalizers
    if node:
        p["spec"]["nodeName"] = node
    if grace is not None:
        p["spec"]["terminationGracePeriodSeconds"] = grace
    return p


def same_status(got, want, what, message=True):
    """got and want are Status objects: same kind, status, reason, code, details (and message)."""
    kjtest.check(isinstance(got, dict), "%s: not JSON: %r" % (what, got))
    keys = ["kind", "apiVersion", "status", "reason", "code"] + (["message"] if message else [])
    for k in keys:
        kjtest.check(got.get(k) == want.get(k), "%s: %s is %r, want %r" % (what, k, got.get(k), want.get(k)))
    kjtest.check(list(got.keys()) == list(want.keys()),
                 "%s: keys %s, want %s" % (what, list(got.keys()), list(want.keys())))
    if "details" in want:
        gd, wd = got.get("details", {}), want["details"]
        kjtest.check(sorted(gd.keys()) == sorted(wd.keys()), "%s: details keys %s, want %s" % (what, gd, wd))
        for k in ("kind", "group"):
            kjtest.check(gd.get(k) == wd.get(k), "%s: details.%s %r, want %r" % (what, k, gd.get(k), wd.get(k)))


def ok(msg):
    print("ok: " + msg, flush=True)


def concurrently(*fns):
    """Runs independent checks (each with its own kube-sim) in threads, and
    fails as a failing one did: kjtest.check() has printed why."""
    import threading
    import traceback
    failed = []

    def run(fn):
        try:
            fn()
        except SystemExit:
            failed.append(fn.__name__)
        except BaseException:
            traceback.print_exc()
            failed.append(fn.__name__)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kjtest.check(not failed, "failed: " + ", ".join(failed))


def wait_for(cond, timeout=kjtest.DEADLINE, every=0.05):
    """Polls cond() until it is true; returns the seconds it took (timeout: fails)."""
    t0 = time.monotonic()
    while not cond():
        kjtest.check(time.monotonic() - t0 < timeout, "still waiting after %.0f s" % timeout)
        time.sleep(every)
    return time.monotonic() - t0
