"""The journal file under a running kjournald (issue 10), with real processes.

1. Deleted or replaced while kjournald runs: no event is answered `stored`
   after it (`journal_unavailable` with `retry`, or no answer at all);
   kjournald exits 10 and says why. `rm j.db j.db-wal j.db-shm`; `rm` of the
   -wal and -shm only (every acknowledged event is then in j.db); `mv
   other.db j.db` (the other journal's events intact, `verify` clean, none
   of the old journal's events in it).
2. One writer per journal: a second kjournald, and `kjournal recover`, on a
   journal kjournald holds exit 9, naming the journal and kjournald's pid;
   read commands are not blocked; once the first stops, the second starts.
   (`recover --dry-run` beside kjournald: test_recover_interrupted.py.)
9. A journal kjournald cannot write (the file, its directory, a -shm it
   cannot write) is refused at start with exit 3 and a message saying which,
   rather than served until the first commit fails. Run as an unprivileged
   uid (setpriv) when the test runs as root, since root writes anything.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import ingestlib as L
import kjtest
import zmq

DEADLINE = 60  # generous: the machine may be busy
EXIT_NOTWRITABLE, EXIT_LOCKED, EXIT_REPLACED = 3, 9, 10
ROOT = os.geteuid() == 0
UID = 40123  # the unprivileged user kjournald runs as when the test is root
PROCS = []  # every kjournald started, stopped at the end whatever happens


def daemon(*args, **kw):
    d = L.Daemon(*args, **kw).start()
    PROCS.append(d.proc)
    return d


def start(args, log, port):
    p = kjtest.start(args, log)
    PROCS.append(p)
    kjtest.wait_port(port, p, timeout=DEADLINE)
    return p


def publish(endpoint, prefix, n, batch=500):
    """n events in batches over one REQ socket; every one must be stored."""
    s = L.connect(endpoint, timeout_ms=30000)
    try:
        for start in range(0, n, batch):
            evs = [L.event("%s-%d" % (prefix, i), "%s-s%d" % (prefix, i), t=L.T0 + i)
                   for i in range(start, min(n, start + batch))]
            r = L.request(s, {"events": evs})
            L.check(r.get("ok") and all(x["status"] == "stored" for x in r["results"]),
                    "publish %s: %r" % (prefix, str(r)[:300]))
    finally:
        s.close()


def one_more(endpoint, eid):
    """Sends one event; returns the reply, or None when none came."""
    s = L.connect(endpoint, timeout_ms=10000)
    try:
        return L.request(s, L.event(eid, "s-" + eid))
    except zmq.Again:
        return None
    finally:
        s.close()


def wait_exit(proc, what):
    try:
        return proc.wait(DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        kjtest.check(False, "%s: kjournald still running %d s later" % (what, DEADLINE))


def read_log(d):
    with open(d.log, errors="replace") as f:
        return f.read()


def events_in(path):
    return {r[0] for r in L.journal_rows(path, "SELECT event_id FROM events")}


def check_not_stored(reply, what):
    if reply is None:
        return
    L.check(not reply.get("ok") and reply.get("retry") is True
            and reply.get("error", {}).get("code") == "journal_unavailable",
            "%s: the event after it was answered %r" % (what, reply))


def readyz(port):
    """The /readyz status, or None when nothing answers (kjournald exited)."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % port, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def lost_case(work, name, damage, n=300):
    """kjournald with n events acknowledged, then damage(journal), then one
    more event. Returns the daemon and the journal path."""
    wd = os.path.join(work, name)
    os.makedirs(wd)
    mport = kjtest.free_port()
    d = daemon(wd, ["--metrics", "127.0.0.1:%d" % mport])
    publish(d.endpoint, name, n)
    L.check(readyz(mport) == 200, "%s: /readyz before: %s" % (name, readyz(mport)))
    damage(d.journal)
    reply = one_more(d.endpoint, name + "-after")
    check_not_stored(reply, name)
    # it noticed: not ready (503) until it has exited
    ready = readyz(mport)
    L.check(ready in (503, None), "%s: /readyz after: %s" % (name, ready))
    rc = wait_exit(d.proc, name)
    log = read_log(d)
    L.check(rc == EXIT_REPLACED, "%s: kjournald exit %d, expected %d\n%s"
            % (name, rc, EXIT_REPLACED, log[-2000:]))
    L.check("journal deleted or replaced" in log and "level=error" in log,
            "%s: the log does not say why:\n%s" % (name, log[-2000:]))
    return d, d.journal


def item1(work):
    # rm of all three files: nothing stored after it, exit 10
    def rm_all(j):
        for suffix in ("", "-wal", "-shm"):
            os.unlink(j + suffix)
    d, j = lost_case(work, "rm-all", rm_all)
    L.check("deleted" in read_log(d), "rm-all: the log does not say 'deleted'")
    L.check(not os.path.exists(j), "rm-all: %s was created again" % j)

    # rm of the -wal and -shm only: the journal file gets every acknowledged event
    def rm_wal(j):
        for suffix in ("-wal", "-shm"):
            os.unlink(j + suffix)
    d, j = lost_case(work, "rm-wal", rm_wal)
    got = events_in(j)
    L.check({"rm-wal-%d" % i for i in range(300)} <= got and "rm-wal-after" not in got,
            "rm-wal: %d events in the journal file, expected the 300 acknowledged" % len(got))
    rc, out = L.verify(j)
    L.check(rc == 0, "rm-wal: verify: %s" % out)

    # mv other.db j.db: the other journal stays as it was
    od = os.path.join(work, "other")
    os.makedirs(od)
    o = daemon(od)
    publish(o.endpoint, "other", 3000)
    L.check(o.stop() == 0, "the other journal's kjournald did not stop cleanly")
    other = o.journal
    other_events = events_in(other)
    L.check(len(other_events) == 3000, "other journal: %d events" % len(other_events))

    def mv_other(j):
        os.rename(other, j)
    d, j = lost_case(work, "mv-other", mv_other)
    got = events_in(j)
    L.check(got == other_events, "mv-other: the replacement holds %d events (%d of the old "
            "journal's), expected the other journal's 3000"
            % (len(got), len([e for e in got if e.startswith("mv-other")])))
    rc, out = L.verify(j)
    L.check(rc == 0, "mv-other: the replacement does not verify: %s" % out)
    # and kjournald starts on it and stores
    d2 = daemon(os.path.dirname(j), journal=j)
    publish(d2.endpoint, "after-mv", 10)
    L.check(d2.stop() == 0, "kjournald on the replacement did not stop cleanly")
    L.check(len(events_in(j)) == 3010, "kjournald on the replacement: %d events" % len(events_in(j)))
    print("1. deleted/replaced journal: exit 10, nothing stored after, the replacement intact")


def item2(work):
    wd = os.path.join(work, "two")
    os.makedirs(wd)
    d1 = daemon(wd)
    publish(d1.endpoint, "first", 5)
    port = kjtest.free_port()
    second = [kjtest.program("kjournald"), "--journal", d1.journal,
              "--listen", "tcp://127.0.0.1:%d" % port, "--no-reconcile"]
    rc, err = start_or_exit(second, port, "a second kjournald on the journal")
    L.check(rc == EXIT_LOCKED, "second kjournald: exit %d, expected %d: %s"
            % (rc, EXIT_LOCKED, err))
    L.check(d1.journal in err and ("pid %d" % d1.proc.pid) in err and "another writer" in err,
            "second kjournald: the message names neither the journal nor the holder: %s" % err)

    kj = kjtest.program("kjournal")
    sim = "http://127.0.0.1:%d" % kjtest.free_port()  # nothing listens: recover stops at the lock first
    r = subprocess.run([kj, "recover", "--journal", d1.journal, "--server", sim, "--quiet"],
                       capture_output=True, text=True, timeout=DEADLINE)
    L.check(r.returncode == EXIT_LOCKED and ("pid %d" % d1.proc.pid) in r.stderr,
            "kjournal recover beside kjournald: exit %d: %s" % (r.returncode, r.stderr))
    r = subprocess.run([kj, "sessions", "--journal", d1.journal, "-o", "json"],
                       capture_output=True, text=True, timeout=DEADLINE)
    L.check(r.returncode == 0 and len(r.stdout.splitlines()) == 5,
            "kjournal sessions beside kjournald: exit %d: %s" % (r.returncode, r.stderr))
    L.check(d1.alive(), "the first kjournald died")
    L.check(d1.stop() == 0, "the first kjournald did not stop cleanly")
    d2 = daemon(wd, port=port)
    publish(d2.endpoint, "second", 5)
    L.check(d2.stop() == 0, "the second kjournald did not stop cleanly")
    print("2. second writer refused (exit 9, pid named); readers not blocked")


def as_user(args):
    if not ROOT:
        return args
    return ["setpriv", "--reuid=%d" % UID, "--regid=%d" % UID, "--clear-groups"] + args


def start_or_exit(args, port, what):
    """Runs kjournald until it exits (its code and stderr) or listens (a failure)."""
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    PROCS.append(p)
    deadline = time.time() + DEADLINE
    while time.time() < deadline:
        if p.poll() is not None:
            return p.returncode, p.stderr.read()
        try:
            kjtest.wait_port(port, None, timeout=0.2)
        except TimeoutError:
            continue
        p.terminate()
        p.wait()
        kjtest.check(False, "%s: kjournald started and listens: %s" % (what, p.stderr.read()))
    p.kill()
    p.wait()
    kjtest.check(False, "%s: kjournald neither exited nor listened within %d s" % (what, DEADLINE))


def own(path):
    if ROOT:
        os.chown(path, UID, UID)


def item9(work):
    wd = os.path.join(work, "ro")
    os.makedirs(wd)
    os.chmod(work, 0o755)
    os.chmod(wd, 0o755)
    own(wd)
    j = os.path.join(wd, "j.db")
    port = kjtest.free_port()
    args = as_user([kjtest.program("kjournald"), "--journal", j,
                    "--listen", "tcp://127.0.0.1:%d" % port, "--no-reconcile"])
    # a journal to start with, made by that user
    p = start(args, os.path.join(wd, "first.log"), port)
    L.check(kjtest.stop(p) == 0, "kjournald as uid %d did not stop cleanly" % UID)

    cases = [
        ("read-only file", lambda: os.chmod(j, 0o444), lambda: os.chmod(j, 0o644),
         "not writable"),
        ("read-only directory", lambda: os.chmod(wd, 0o555), lambda: os.chmod(wd, 0o755),
         "cannot write in its directory"),
        ("read-only -shm", lambda: os.chmod(j + "-shm", 0o444),
         lambda: os.chmod(j + "-shm", 0o644), "-shm"),
    ]
    if ROOT:
        # what a reader of another user (an older kjournal) leaves behind
        cases.append(("-shm of another user", lambda: os.chown(j + "-shm", 0, 0),
                      lambda: os.chown(j + "-shm", UID, UID), "belongs to uid 0"))
    for what, damage, repair, says in cases:
        damage()
        try:
            rc, err = start_or_exit(args, port, what)
        finally:
            repair()
        L.check(rc == EXIT_NOTWRITABLE and says in err and j in err,
                "%s: exit %d, expected %d with '%s': %s" % (what, rc, EXIT_NOTWRITABLE, says, err))
    # repaired, it starts and stores
    p = start(args, os.path.join(wd, "last.log"), port)
    publish("tcp://127.0.0.1:%d" % port, "ro", 3)
    L.check(kjtest.stop(p) == 0, "kjournald after the repairs did not stop cleanly")
    print("9. unwritable journal, directory or -shm: exit 3 at start, saying which")


def main():
    work = kjtest.tmpdir("kj-journal-files-")
    items = {"1": item1, "2": item2, "9": item9}
    try:
        for name in sys.argv[1:] or ["2", "9", "1"]:
            items[name](work)
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
                p.wait()
    shutil.rmtree(work, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
