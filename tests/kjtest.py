"""Shared helpers for the script tests: find the programs, start and stop them.

Programs live in $KJ_BUILD_DIR (set by ctest); a test imports this module with
    sys.path.insert(0, os.path.join(os.environ["KJ_SOURCE_DIR"], "tests"))
    import kjtest
"""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("KJ_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "build"))
SOURCE = os.environ.get("KJ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
SHARED = os.environ.get("KJ_SHARED_DIR", os.path.join(SOURCE, "tests", "shared"))

# How long a test waits for something it expects (a port, an answer, a
# process to exit, a row in the journal) before it fails. Waits end as soon
# as the event happens, so this costs nothing on a quiet machine; it is
# generous because the suite must pass on a busy one (ASan, a load of 10+).
DEADLINE = 120.0


def program(name):
    """Path of a built program (kjournald, kjournal, kube-sim, ...)."""
    for sub in ("tools/" + name, "tools", "."):
        p = os.path.join(BUILD, sub, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise FileNotFoundError("program %s not built under %s" % (name, BUILD))


def free_port():
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %d before listening" % proc.returncode)
        with contextlib.closing(socket.socket()) as s:
            s.settimeout(10)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError("nothing listens on port %d" % port)


def start(args, log_path=None, **kw):
    """Starts a program; its stderr goes to log_path (or is inherited)."""
    err = open(log_path, "ab") if log_path else None
    try:
        return subprocess.Popen(args, stdout=kw.pop("stdout", subprocess.DEVNULL), stderr=err, **kw)
    finally:
        if err:
            err.close()


def stop(proc, sig=signal.SIGTERM, timeout=DEADLINE):
    """Stops proc and returns its exit code (negative: killed by a signal)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_for(what, cond, timeout=DEADLINE, every=0.05):
    """Polls cond() until it returns something true and returns that; fails
    the test naming what it waited for when timeout seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        check(time.monotonic() < deadline, "still waiting after %.0f s for %s" % (timeout, what))
        time.sleep(every)


def tmpdir(prefix="kjtest-"):
    return tempfile.mkdtemp(prefix=prefix)


def check(cond, what):
    if not cond:
        print("FAIL: " + what, file=sys.stderr)
        sys.exit(1)
