#!/usr/bin/env python3
"""Client-certificate authentication (--client-ca): a certificate signed by
the CA is admitted; no certificate, a self-signed one and one from another CA
get the apiserver's 401 Status; with --token as well either one admits;
/_sim/ needs neither. The CA and the certificates are made here with openssl;
the clients are Python's ssl module and, when installed, the curl program."""
import os
import shutil
import subprocess

from simtest import PODS, Sim, fixture, make_ca, make_client_cert, ok, pod, same_status
import kjtest
from kjtest import check

BIN = kjtest.program("kube-sim")
D = kjtest.tmpdir()
CA = make_ca(D, "ca")
OTHER_CA = make_ca(D, "other-ca")
GOOD = make_client_cert(D, CA, "good")
SELF_SIGNED = make_client_cert(D, None, "self-signed")
FOREIGN = make_client_cert(D, OTHER_CA, "foreign")
UNAUTHORIZED = fixture("status-401.json")


def as_client(sim, cert):
    """Switches sim's connection to one presenting cert ((cert, key) or None)."""
    if sim.conn:
        sim.conn.close()
        sim.conn = None
    sim.client_cert = cert


def refused(sim, cert, what, token=True):
    as_client(sim, cert)
    st, body, _ = sim.get(PODS, token=token)
    check(st == 401, "%s: %s %s" % (what, st, body))
    same_status(body, UNAUTHORIZED, what)


def test_cert_only():
    with Sim(tls=True, client_ca=CA[0]) as sim:
        refused(sim, None, "no client certificate")
        refused(sim, SELF_SIGNED, "a self-signed client certificate")
        refused(sim, FOREIGN, "a client certificate from another CA")
        as_client(sim, None)
        check(sim.stats()["by_code"].get("401") == 3, "/_sim/ needs no certificate; 3 refusals counted")
        # signed by the CA: every verb, several requests on one keep-alive connection
        as_client(sim, GOOD)
        st, body, _ = sim.request("POST", PODS, pod("cc"))
        check(st == 201, "create with a client certificate: %s %s" % (st, body))
        for _ in range(3):
            check(sim.get(PODS + "/cc")[0] == 200, "get on the same connection")
        st, body, _ = sim.request("DELETE", PODS + "/cc")
        check(st == 200, "delete with a client certificate: %s" % st)
        # a refused connection stays refused, an admitted one stays admitted
        refused(sim, FOREIGN, "the foreign certificate again")
        if shutil.which("curl"):
            base = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", sim.cert, sim.url + PODS]
            codes = [subprocess.run(base + extra, stdout=subprocess.PIPE, text=True, timeout=kjtest.DEADLINE).stdout
                     for extra in ([], ["--cert", GOOD[0], "--key", GOOD[1]],
                                   ["--cert", SELF_SIGNED[0], "--key", SELF_SIGNED[1]])]
            check(codes == ["401", "200", "401"], "curl: none, signed, self-signed: %s" % codes)
    ok("--client-ca: a certificate from the CA is admitted; none, self-signed, another CA's: 401 Status")


def test_cert_or_token():
    with Sim(token="t0ken", tls=True, client_ca=CA[0]) as sim:
        as_client(sim, None)
        check(sim.get(PODS)[0] == 200, "the token alone admits")
        refused(sim, None, "no token, no certificate", token=False)
        refused(sim, FOREIGN, "another CA's certificate, no token", token=False)
        as_client(sim, GOOD)
        check(sim.get(PODS, token=False)[0] == 200, "the certificate alone admits")
        st, _, _ = sim.get(PODS, token=False, headers={"Authorization": "Bearer wrong"})
        check(st == 200, "a good certificate with a wrong token: %s" % st)
        as_client(sim, FOREIGN)
        check(sim.get(PODS)[0] == 200, "a good token with a foreign certificate")
    ok("--client-ca with --token: either admits")


def test_cli():
    r = subprocess.run([BIN, "--help"], stdout=subprocess.PIPE, text=True, timeout=kjtest.DEADLINE)
    check("--client-ca" in r.stdout and "--drop-after-rate" in r.stdout and "drop-after" in r.stdout,
          "--help explains --client-ca and drop-after")
    for args, want in ((["--client-ca", CA[0]], 2),
                       (["--client-ca", os.path.join(D, "missing.pem"), "--tls-cert", GOOD[0],
                         "--tls-key", GOOD[1]], 1),
                       (["--client-ca", GOOD[1], "--tls-cert", GOOD[0], "--tls-key", GOOD[1]], 1)):
        r = subprocess.run([BIN, "--listen", "127.0.0.1:0"] + args, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=kjtest.DEADLINE)
        check(r.returncode == want and "kube-sim:" in r.stderr, "%s: rc %d, %s" % (args, r.returncode, r.stderr))
    ok("--client-ca without TLS: exit 2; a missing or certificate-less file: exit 1")


test_cli()
test_cert_only()
test_cert_or_token()
shutil.rmtree(D, ignore_errors=True)
