#!/usr/bin/env python3
"""Runs shared/checks/kube-semantics.sh (which passes against a real
kube-apiserver) against kube-sim: plain HTTP, and over TLS with a token."""
import os
import shutil
import subprocess
import sys

from simtest import SKIP, Sim, concurrently, ok
import kjtest
from kjtest import SHARED, check

if not shutil.which("kubectl"):
    print("kubectl not installed: skipping")
    sys.exit(SKIP)
script = os.path.join(SHARED, "checks", "kube-semantics.sh")


def against(tls, token):
    with Sim(token=token, tls=tls) as sim:
        args = ["bash", script, sim.url] + ([token] if token else [])
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=5 * kjtest.DEADLINE)
        check(r.returncode == 0, "kube-semantics.sh %s: %s" % (sim.url, r.stdout))
        st = sim.stats()
        check(st["by_code"].get("401", 0) == 0, "no 401 with the right token")
        ok("kube-semantics.sh against %s%s: %s" % (sim.url, " with a token" if token else "", r.stdout.strip()))


concurrently(lambda: against(False, None), lambda: against(True, "t0ken-for-check"))
