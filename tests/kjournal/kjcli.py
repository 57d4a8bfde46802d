"""What the kjournal CLI tests share: the programs, a golden journal, runs
that also measure what the process wrote.

A run returns (exit code, stdout, stderr, wchar): wchar is the number of
bytes the process passed to write(2) and friends over its whole life
(/proc/PID/io, read while it is a zombie). A reader whose wchar equals the
bytes of its stdout and stderr wrote nothing else: not the journal, not its
WAL. (The -shm index is memory-mapped and not counted: readers must update
it to register their snapshot, as every SQLite WAL reader does.)
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ.get("KJ_SOURCE_DIR",
                                               os.path.join(os.path.dirname(__file__), "..", "..")),
                                "tests"))
import kjtest  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
KJOURNAL = kjtest.program("kjournal")
KJT = os.path.join(kjtest.BUILD, "tests", "kjournal", "kjt_journal")

# Exit codes (tools/kjournal/cli.h).
OK, FAILURE, USAGE, NOFILE, NOTJOURNAL, TOONEW, CORRUPT, NOTFOUND = 0, 1, 2, 3, 4, 5, 6, 7


def env():
    e = dict(os.environ)
    e.pop("NO_COLOR", None)
    e.pop("KJOURNAL_JOURNAL", None)
    e["TZ"] = "UTC"
    return e


def run(args, journal=None, timeout=5 * kjtest.DEADLINE, stdin=subprocess.DEVNULL):
    """Runs kjournal ARGS; returns (rc, out, err)."""
    argv = [KJOURNAL] + list(args[:1])
    if journal is not None:
        argv += ["--journal", journal]
    argv += list(args[1:])
    p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env())
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise
    return p.returncode, out.decode(), err.decode()


def run_measured(args, journal=None, timeout=5 * kjtest.DEADLINE):
    """Like run(), plus the bytes the process wrote (see above)."""
    argv = [KJOURNAL] + list(args[:1])
    if journal is not None:
        argv += ["--journal", journal]
    argv += list(args[1:])
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out_f, stderr=err_f, env=env())
        # Wait without reaping, so that /proc/PID/io still answers.
        try:
            import time
            deadline = time.time() + timeout
            while True:
                r = os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
                if r is not None:
                    break
                if time.time() > deadline:
                    p.kill()
                    raise TimeoutError("kjournal %s did not finish" % " ".join(args))
                time.sleep(0.005)
            wchar = io_wchar(p.pid)
        finally:
            p.wait()
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
        # Only what went to stdout and stderr: nothing else was written.
        return p.returncode, out.decode(), err.decode(), wchar - len(out) - len(err)


def io_wchar(pid):
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise RuntimeError("no wchar for %d" % pid)


def golden_journal(dirpath, name="j.db"):
    path = os.path.join(dirpath, name)
    subprocess.run([KJT, "golden", path], check=True)
    return path


def check(cond, what):
    kjtest.check(cond, what)


def tmpdir():
    return tempfile.mkdtemp(prefix="kjcli-")


def cleanup(d):
    shutil.rmtree(d, ignore_errors=True)
