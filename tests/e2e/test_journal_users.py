#!/usr/bin/env python3
"""Read commands and the journal's -wal/-shm files, across users (issue 10,
item 8). SQLite creates journal.db-wal and -shm as whoever opens the
journal first, and gives them to the journal's owner only when that is
root with CAP_CHOWN; kjournald, as the owner, then could not write them
(exit 3, "attempt to write a readonly database").

The journal belongs to OWNER, who runs kjournald; READER may read it and
write its directory (a shared group). With kjournald stopped each time:

A. after a clean stop, `kjournal sessions` as READER creates and changes no
   file (kjournald leaves its -wal and -shm in place for readers), and
   kjournald starts again and stores events;
B. with no -wal and no -shm at all (a journal from an older kjournald, or
   restored), READER's `sessions` creates nothing (it reads the file as a
   snapshot), and READER's `events -f`, started then, follows the events
   kjournald stores once it starts;
C. the same as root without CAP_CHOWN (setpriv), and as root with it (SQLite
   gives the files it creates to OWNER);
D. with changes in the WAL and no -shm (a crash, then the -shm removed),
   READER's `sessions` is refused with a message saying why and creates
   nothing; kjournald then starts with every acknowledged event.

Needs root (setpriv to other uids, capabilities dropped): skipped (77)
otherwise.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import ingestlib as L
import kjtest

if os.geteuid() != 0:
    print("skipped: needs root to run as other users")
    sys.exit(77)

OWNER, READER, GROUP = 40131, 40132, 40130
DEADLINE = 60
AS_OWNER = ["setpriv", "--reuid=%d" % OWNER, "--regid=%d" % OWNER, "--clear-groups"]
AS_READER = ["setpriv", "--reuid=%d" % READER, "--regid=%d" % READER, "--groups=%d" % GROUP]
NO_CHOWN = ["setpriv", "--inh-caps=-chown", "--bounding-set=-chown"]
PROCS = []


class Journal:
    def __init__(self, work):
        self.work = work
        self.dir = os.path.join(work, "journal")
        os.makedirs(self.dir)
        os.chown(self.dir, OWNER, GROUP)
        os.chmod(self.dir, 0o2775)  # the group may write it (and new files get the group)
        self.path = os.path.join(self.dir, "journal.db")
        self.n = 0
        self.logs = 0

    def files(self):
        """The directory as (name, uid, gid, size) of each file."""
        out = set()
        for f in sorted(os.listdir(self.dir)):
            st = os.lstat(os.path.join(self.dir, f))
            out.add((f, st.st_uid, st.st_gid, st.st_size))
        return out

    def start(self):
        """kjournald as OWNER; returns (proc, endpoint, log)."""
        port = kjtest.free_port()
        self.logs += 1
        log = os.path.join(self.work, "kjournald-%d.log" % self.logs)
        p = kjtest.start(AS_OWNER + [kjtest.program("kjournald"), "--journal", self.path,
                                     "--listen", "tcp://127.0.0.1:%d" % port, "--no-reconcile"],
                         log)
        PROCS.append(p)
        try:
            kjtest.wait_port(port, p, timeout=DEADLINE)
        except RuntimeError:
            L.check(False, "kjournald as the journal's owner did not start: exit %s\n%s"
                    % (p.returncode, read(log)[-2000:]))
        return p, "tcp://127.0.0.1:%d" % port, log

    def publish(self, ep, k):
        """k more events, each stored; returns their ids."""
        s = L.connect(ep, timeout_ms=30000)
        ids = []
        try:
            for _ in range(k):
                self.n += 1
                eid = "e-%d" % self.n
                r = L.request(s, L.event(eid, "s-%d" % self.n, t=L.T0 + self.n))
                L.check(r.get("ok") and r["results"][0]["status"] == "stored",
                        "event %s: %r" % (eid, r))
                ids.append(eid)
        finally:
            s.close()
        return ids

    def cycle(self, k=3, why=""):
        """Starts kjournald as OWNER, stores k events, stops it cleanly."""
        p, ep, log = self.start()
        self.publish(ep, k)
        rc = kjtest.stop(p)
        L.check(rc == 0, "%skjournald exit %d\n%s" % (why, rc, read(log)[-2000:]))

    def share(self):
        """Group-readable, as a deployment that lets a group read the journal does."""
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.chown(self.path + suffix, OWNER, GROUP)
                os.chmod(self.path + suffix, 0o640)

    def remove_wal_shm(self):
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.unlink(self.path + suffix)


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def kjournal(prefix, *args):
    return subprocess.run(prefix + [kjtest.program("kjournal")] + list(args), capture_output=True,
                          text=True, timeout=DEADLINE)


def sessions(j, prefix, why):
    before = j.files()
    r = kjournal(prefix, "sessions", "--journal", j.path, "-o", "json", "-n", "all")
    L.check(r.returncode == 0, "%s: kjournal sessions: exit %d: %s" % (why, r.returncode, r.stderr))
    got = len([l for l in r.stdout.splitlines() if l.strip()])
    L.check(got == j.n, "%s: %d sessions, expected %d" % (why, got, j.n))
    after = j.files()
    L.check(after == before, "%s: the read changed the journal's directory: %s -> %s"
            % (why, sorted(before - after), sorted(after - before)))


def verify(j, why):
    rc, out = L.verify(j.path)
    L.check(rc == 0, "%s: verify: %s" % (why, out))


def case_a(j):
    j.cycle(5, "A: ")
    j.share()
    sessions(j, AS_READER, "A (reader, after a clean stop)")
    j.cycle(5, "A, after the reader: ")
    verify(j, "A")
    print("A. after a clean stop: the reader creates nothing; kjournald starts and stores")


def case_b(j):
    j.remove_wal_shm()
    sessions(j, AS_READER, "B (reader, no -wal/-shm)")
    # Following from a snapshot: sees what kjournald stores once it starts.
    f = subprocess.Popen(AS_READER + [kjtest.program("kjournal"), "events", "-f", "-o", "json",
                                      "--journal", j.path],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    PROCS.append(f)
    seen = set()

    def line():
        l = f.stdout.readline()
        if not l:
            L.check(False, "B: events -f ended: %s" % f.stderr.read())
        return json.loads(l)["event_id"]
    for _ in range(min(10, j.n)):  # its first listing: the last ten
        seen.add(line())
    p, ep, log = j.start()
    ids = j.publish(ep, 3)
    deadline = time.time() + DEADLINE
    while not set(ids) <= seen and time.time() < deadline:
        seen.add(line())
    L.check(set(ids) <= seen, "B: events -f did not show %s" % sorted(set(ids) - seen))
    f.kill()
    f.wait()
    L.check(kjtest.stop(p) == 0, "B: kjournald exit\n%s" % read(log)[-2000:])
    L.check(not [x for x in j.files() if x[1] == READER],
            "B: files of the reader in the journal's directory: %s" % sorted(j.files()))
    j.cycle(2, "B, after the reader: ")
    verify(j, "B")
    print("B. no -wal/-shm: the reader creates nothing, and follows once kjournald starts")


def case_c(j):
    j.remove_wal_shm()
    sessions(j, NO_CHOWN, "C (root without CAP_CHOWN)")
    j.cycle(2, "C, after root without CAP_CHOWN: ")
    j.remove_wal_shm()
    r = kjournal([], "sessions", "--journal", j.path)
    L.check(r.returncode == 0, "C: root's sessions: %s" % r.stderr)
    L.check(all(x[1] == OWNER for x in j.files()),
            "C: root (with CAP_CHOWN) left files not the owner's: %s" % sorted(j.files()))
    j.cycle(2, "C, after root: ")
    verify(j, "C")
    print("C. root without CAP_CHOWN creates nothing; with it, SQLite gives the files to the owner")


def case_d(j):
    p, ep, log = j.start()
    ids = j.publish(ep, 4)
    p.kill()  # SIGKILL: the WAL keeps the acknowledged events
    p.wait()
    L.check(os.path.getsize(j.path + "-wal") > 0, "D: the WAL is empty after the crash")
    os.unlink(j.path + "-shm")
    before = j.files()
    r = kjournal(AS_READER, "sessions", "--journal", j.path)
    L.check(r.returncode != 0 and "-wal holds changes" in r.stderr and j.path in r.stderr,
            "D: the reader: exit %d: %s" % (r.returncode, r.stderr))
    L.check(j.files() == before, "D: the refused read changed the directory: %s"
            % sorted(j.files() ^ before))
    p, ep, log = j.start()
    L.check(kjtest.stop(p) == 0, "D: kjournald exit\n%s" % read(log)[-2000:])
    got = {r[0] for r in L.journal_rows(j.path, "SELECT event_id FROM events")}
    L.check(set(ids) <= got, "D: acknowledged events missing after the crash: %s"
            % sorted(set(ids) - got))
    verify(j, "D")
    print("D. changes in the WAL and no -shm: the reader refuses, saying why, and creates nothing")


def main():
    work = kjtest.tmpdir("kj-journal-users-")
    os.chmod(work, 0o755)
    try:
        j = Journal(work)
        case_a(j)
        case_b(j)
        case_c(j)
        case_d(j)
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
                p.wait()
    shutil.rmtree(work, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
