#!/usr/bin/env python3
"""Credentials in the Kubernetes configuration, with real processes (issue 10,
items 12 and 16).

1. Header injection: a kubeconfig whose inline token holds CR LF and a header
   ('abc\\r\\nX-Injected: yes') is refused by `kjournal recover` and by
   kjournald (exit 2, a message that names the user, not the token), and an
   HTTP server standing in for the API server receives no request at all.
2. Credentials in the server URL (http://alice:PASSWORD@host) never reach a
   log line or a message: `kjournal recover` and kjournald show the URL as
   http://xxxxx@host, and both warn that the bearer token goes over plain
   http. Against kube-sim requiring the token, the pass still works.
"""
import http.server
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.environ.get("KJ_SOURCE_DIR", "../.."), "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kjtest  # noqa: E402
from recoverlib import (KubeSim, NS, check, cleanup, kjournal, quiet_env,  # noqa: E402
                        write_journal)

TOKEN = "tok-e2e-SECRET-1234"
URL_PASSWORD = "pw-in-url-SECRET-5678"


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records every request line and its headers; answers 404."""
    seen = []

    def do_GET(self):
        Recorder.seen.append((self.requestline, str(self.headers)))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PATCH = do_DELETE = do_POST = do_PUT = do_GET

    def log_message(self, *a):
        pass


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def wait_for(what, cond, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    check(False, "timed out waiting for " + what)


def header_injection(wd, journal):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        kc = os.path.join(wd, "injected.yaml")
        with open(kc, "w") as f:
            f.write("apiVersion: v1\nkind: Config\ncurrent-context: a\n"
                    "clusters:\n- name: c1\n  cluster: {server: 'http://127.0.0.1:%d'}\n"
                    "users:\n- name: u1\n  user:\n    token: \"%s\\r\\nX-Injected: yes\"\n"
                    "contexts:\n- name: a\n  context: {cluster: c1, user: u1, namespace: %s}\n"
                    % (srv.server_address[1], TOKEN, NS))
        r = kjournal(wd, "recover", "--journal", journal, "--kubeconfig", kc, "--quiet")
        check(r.returncode == 2, "kjournal recover with an injected token: exit %d, expected 2\n%s"
              % (r.returncode, r.stderr))
        check("not allowed in a token" in r.stderr and "user 'u1'" in r.stderr,
              "kjournal recover does not say what is wrong: %s" % r.stderr)
        check(TOKEN not in r.stdout + r.stderr, "the token is printed: %s" % r.stderr)

        log = os.path.join(wd, "kjournald-injected.log")
        port = kjtest.free_port()
        d = kjtest.start([kjtest.program("kjournald"), "--journal", journal, "--listen",
                          "tcp://127.0.0.1:%d" % port, "--kubeconfig", kc], log,
                         env=quiet_env(wd))
        try:
            rc = d.wait(60)
        finally:
            kjtest.stop(d)
        text = read(log)
        check(rc == 2, "kjournald with an injected token: exit %s, expected 2\n%s" % (rc, text))
        check("not allowed in a token" in text, "kjournald does not say why:\n" + text)
        check(TOKEN not in text, "kjournald logs the token:\n" + text)
        check(Recorder.seen == [], "requests reached the server: %s" % Recorder.seen)
    finally:
        srv.shutdown()
        srv.server_close()


def url_credentials(wd, journal):
    sim = KubeSim(wd, ["--token", TOKEN]).start()
    try:
        tok = os.path.join(wd, "token")
        with open(tok, "w") as f:
            f.write(TOKEN + "\n")
        url = "http://alice:%s@127.0.0.1:%d" % (URL_PASSWORD, sim.port)
        shown = "http://xxxxx@127.0.0.1:%d" % sim.port

        r = kjournal(wd, "recover", "--journal", journal, "--server", url, "--token-file", tok,
                     "--namespace", NS)
        out = r.stdout + r.stderr
        check(r.returncode == 0, "kjournal recover: exit %d\n%s" % (r.returncode, out))
        check(URL_PASSWORD not in out and TOKEN not in out,
              "kjournal recover prints a secret:\n" + out)
        check(shown in out, "kjournal recover does not show the masked URL %s:\n%s" % (shown, out))
        check("credentials sent over plain http" in out and "bearer token" in out,
              "kjournal recover does not warn about the token over http:\n" + out)

        # a broken URL is named masked too
        r = kjournal(wd, "recover", "--journal", journal, "--server",
                     "ftp://alice:%s@127.0.0.1:1" % URL_PASSWORD, "--quiet")
        check(r.returncode == 2 and "ftp://xxxxx@127.0.0.1:1" in r.stderr
              and URL_PASSWORD not in r.stderr, "bad URL: exit %d: %s" % (r.returncode, r.stderr))

        log = os.path.join(wd, "kjournald-url.log")
        port = kjtest.free_port()
        d = kjtest.start([kjtest.program("kjournald"), "--journal", journal, "--listen",
                          "tcp://127.0.0.1:%d" % port, "--server", url, "--token-file", tok,
                          "--namespace", NS], log, env=quiet_env(wd))
        try:
            kjtest.wait_port(port, d)
            wait_for("the recovery pass to finish",
                     lambda: "reconcile pass done" in read(log) or "reconcile pass failed" in read(log))
        finally:
            rc = kjtest.stop(d)
        text = read(log)
        check(rc == 0, "kjournald exit %d\n%s" % (rc, text))
        check("reconcile pass done" in text, "the pass did not work:\n" + text)
        check(URL_PASSWORD not in text and TOKEN not in text, "kjournald logs a secret:\n" + text)
        check(shown in text, "kjournald does not log the masked URL:\n" + text)
        check("credentials sent over plain http" in text,
              "kjournald does not warn about the token over http:\n" + text)
    finally:
        sim.stop()


def main():
    wd = kjtest.tmpdir("kj-kube-cred-")
    journal = write_journal(wd, [])
    header_injection(wd, journal)
    url_credentials(wd, journal)
    cleanup(wd)
    print("ok: injected token refused before any request; URL credentials masked, "
          "plain-http token warned about")


if __name__ == "__main__":
    main()
