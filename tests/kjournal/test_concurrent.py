"""Every read command while a writer appends continuously: no error, no write
by the reader, output consistent with itself; -f sees every new event; a
reader stuck on a full pipe holds no snapshot (a checkpoint completes);
prune, the one writer, works alongside the other writer.

"No write": a reader's write(2) bytes (/proc/PID/io wchar) equal its stdout
plus stderr, so it wrote nothing to the journal or its WAL (see kjcli.py).
"""
import fcntl
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import termios

import kjcli
import kjtest

ROUNDS = 2


def stats(j):
    rc, out, err = kjcli.run(["stats", "-o", "json"], journal=j)
    kjcli.check(rc == 0, "stats: %d %s" % (rc, err))
    return json.loads(out)


def jsonl(out):
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def check_sessions(out, what):
    rows = jsonl(out)
    ids = [r["session_id"] for r in rows]
    kjcli.check(len(ids) == len(set(ids)), "%s: a session listed twice" % what)
    created = [r["created"] for r in rows]
    kjcli.check(created == sorted(created), "%s: not ordered by creation" % what)
    return rows


def check_events(out, what, reverse=False):
    rows = jsonl(out)
    seqs = [r["seq"] for r in rows]
    kjcli.check(len(seqs) == len(set(seqs)), "%s: an event listed twice" % what)
    keys = [(r["time"], r["seq"]) for r in rows]
    kjcli.check(keys == sorted(keys, reverse=reverse), "%s: not ordered by (time, seq)" % what)
    return rows


def main():
    d = kjcli.tmpdir()
    j = os.path.join(d, "j.db")
    writer = subprocess.Popen([kjcli.KJT, "writer", j], stdout=subprocess.PIPE)
    follower = None
    try:
        def writer_started():
            kjcli.check(writer.poll() is None, "the writer runs")
            if not os.path.exists(j):
                return False
            rc, out, err = kjcli.run(["stats", "-o", "json"], journal=j)
            if rc == kjcli.NOTJOURNAL:
                return False  # the file exists before the writer's first commit makes it a journal
            kjcli.check(rc == 0, "stats: %d %s" % (rc, err))
            return json.loads(out)["events"] >= 200
        kjtest.wait_for("the writer's first 200 events", writer_started)

        # -f from now on, its output in a file.
        fout = tempfile.TemporaryFile()
        ferr = tempfile.TemporaryFile()
        follower = subprocess.Popen([kjcli.KJOURNAL, "events", "--journal", j, "-f", "-o", "json"],
                                    stdout=fout, stderr=ferr, env=kjcli.env())

        def followed():
            """The events -f has printed so far (whole lines only)."""
            fout.seek(0)
            return jsonl(fout.read().decode().rpartition("\n")[0])
        # -f has started once it printed its first ten
        kjtest.wait_for("events -f to print its first ten", lambda: len(followed()) >= 10)
        seq_at_follow = stats(j)["events"]

        commands = [
            ["sessions", "-o", "json"],
            ["sessions", "--state", "open", "-o", "json"],
            ["sessions", "--user", "alice", "-n", "20", "-o", "json"],
            ["sessions", "-r", "-n", "5"],
            ["show", "w-0-0", "-o", "json"],
            ["events", "-o", "json"],
            ["events", "--since", "2026-11-28T10:00:01Z", "-o", "csv"],
            ["events", "-r", "-n", "5", "-o", "json"],
            ["events", "--session", "w-1-3", "-o", "json"],
            ["stats", "-o", "json"],
            ["stats"],
            ["actions"],
            ["actions", "--runs", "-o", "json"],
            ["verify"],
        ]
        reads = 0
        for r in range(ROUNDS):
            for args in commands:
                before = stats(j)
                rc, out, err, other = kjcli.run_measured(args, journal=j)
                what = "round %d: kjournal %s" % (r, " ".join(args))
                kjcli.check(rc == 0 and err == "", "%s: exit %d, %r" % (what, rc, err))
                kjcli.check(other == 0, "%s: wrote %d bytes besides its output" % (what, other))
                reads += 1
                if args[0] == "sessions" and "-o" in args:
                    rows = check_sessions(out, what)
                    if "open" in args:
                        kjcli.check(rows and all(x["state"] == "open" for x in rows),
                                    "%s: only open sessions" % what)
                    if len(args) == 3:
                        kjcli.check(len(rows) >= before["sessions"], "%s: sessions missing" % what)
                elif args[0] == "events" and "json" in args:
                    rows = check_events(out, what, reverse="-r" in args)
                    if len(args) == 3:
                        kjcli.check(len(rows) >= before["events"], "%s: events missing" % what)
                    if "--session" in args:
                        kjcli.check(len(rows) == 2, "%s: an open and a close" % what)
                    if "-n" in args:
                        kjcli.check(len(rows) == 5, "%s: five events" % what)
                elif args[0] == "show":
                    s = json.loads(out)
                    kjcli.check(s["state"] == "closed" and len(s["events"]) == 2
                                and s["events_count"] == 2, "%s: %r" % (what, s))
                elif args == ["stats", "-o", "json"]:
                    s = json.loads(out)
                    # One snapshot: every session has its open event, every
                    # closed one its close event.
                    kjcli.check(s["sessions"] == s["events_session_open"]
                                and s["sessions_closed"] == s["events_session_close"],
                                "%s: totals disagree: %r" % (what, s))
                    kjcli.check(s["sessions"] >= before["sessions"], "%s: went back" % what)
                    kjcli.check(sum(u["total"] for u in s["by_user"]) >= s["sessions"],
                                "%s: by user short of the total" % what)

        # A consistent copy, taken while the writer writes, is clean.
        copy = os.path.join(d, "copy.db")
        rc, out, err, other = kjcli.run_measured(["backup", "--to", copy], journal=j)
        kjcli.check(rc == 0 and err == "", "backup: %d %r" % (rc, err))
        kjcli.check(other <= os.path.getsize(copy) + 64 * 1024,
                    "backup wrote %d bytes for a %d-byte copy" % (other, os.path.getsize(copy)))
        rc, out, err = kjcli.run(["verify"], journal=copy)
        kjcli.check(rc == 0, "verify of the backup: %d %s %s" % (rc, out, err))

        # A reader stuck on a full pipe (nobody reads it) holds no read
        # transaction: a TRUNCATE checkpoint, which waits for every reader to
        # leave old snapshots, completes while the writer goes on.
        stuck = subprocess.Popen([kjcli.KJOURNAL, "events", "--journal", j, "-o", "json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=kjcli.env())
        # stuck: its pipe is full (less room than one write) and it still
        # runs, so it waits in write(2)
        room = fcntl.fcntl(stuck.stdout.fileno(), fcntl.F_GETPIPE_SZ) - 4096

        def pipe_full():
            held = struct.unpack("i", fcntl.ioctl(stuck.stdout.fileno(), termios.FIONREAD, b"\0" * 4))[0]
            return stuck.poll() is not None or held > room
        kjtest.wait_for("the reader to fill its pipe", pipe_full)
        kjcli.check(stuck.poll() is None, "the stuck reader is still running")
        # A TRUNCATE checkpoint blocks new writers while it waits (its busy
        # timeout) for readers to move on: short waits, so the other writer
        # is never held up for long, tried again until the deadline.
        db = sqlite3.connect(j, timeout=1)
        busy = None

        def checkpointed():
            nonlocal busy
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return busy == 0
        kjtest.wait_for("a checkpoint to complete", checkpointed, every=0.1)
        db.close()
        kjcli.check(busy == 0, "a checkpoint completes while a reader is stuck on its pipe")
        stuck.stdout.close()  # the reader now gets EPIPE and ends quietly
        kjcli.check(stuck.wait(kjtest.DEADLINE) == 0, "the stuck reader ends cleanly when its pipe closes: %d %s"
                    % (stuck.returncode, stuck.stderr.read()))
        stuck.stderr.close()

        # -f: once it printed an event committed after it started, stop it;
        # then every event it printed after its first ten is new, in commit
        # order, none missing.
        kjtest.wait_for("events -f to print a new event",
                        lambda: any(x["seq"] > seq_at_follow for x in followed()))
        follower.send_signal(signal.SIGINT)
        kjcli.check(follower.wait(kjtest.DEADLINE) == 0, "events -f ends cleanly on SIGINT")
        fout.seek(0)
        ferr.seek(0)
        err = ferr.read().decode()
        kjcli.check(err == "", "events -f: %r" % err)
        rows = jsonl(fout.read().decode())
        kjcli.check(len(rows) > 10, "events -f saw new events (%d rows)" % len(rows))
        seqs = [x["seq"] for x in rows[10:]]
        kjcli.check(seqs == list(range(seqs[0], seqs[0] + len(seqs))),
                    "events -f: every new event once, in commit order")
        kjcli.check(seqs[-1] > seq_at_follow, "events -f: events committed after it started")
        first = [x["seq"] for x in rows[:10]]
        kjcli.check(first[-1] < seqs[0], "events -f: the first ten come before the new ones")

        # -f whose reader goes away (| head -1) ends quietly, exit 0.
        head = subprocess.Popen([kjcli.KJOURNAL, "events", "--journal", j, "-f", "-n", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=kjcli.env())
        kjcli.check(head.stdout.readline() != b"", "events -f printed its first line")
        head.stdout.close()
        kjcli.check(head.wait(kjtest.DEADLINE) == 0, "events -f ends cleanly when its reader goes away: %s"
                    % head.stderr.read())
        head.stderr.close()

        # prune, the one writer, next to the other writer.
        rc, out, err = kjcli.run(["prune", "--older-than", "1ms", "-o", "json"], journal=j)
        kjcli.check(rc == 0 and err == "", "prune while the writer writes: %d %r" % (rc, err))
        pruned = json.loads(out)
        kjcli.check(pruned["sessions_removed"] > 0 and pruned["events_removed"] >= 2 *
                    pruned["sessions_removed"], "prune says what it removed: %r" % pruned)
        s = stats(j)
        kjcli.check(s["sessions"] == s["events_session_open"], "totals after prune: %r" % s)
    finally:
        if follower and follower.poll() is None:
            follower.kill()
        writer.send_signal(signal.SIGTERM)
        out, _ = writer.communicate(timeout=kjtest.DEADLINE)
        kjcli.cleanup(d)
    kjcli.check(writer.returncode == 0, "the writer ran without error")
    print("concurrent: %d reads while the writer committed %s batches, no writes by readers"
          % (reads, out.decode().strip()))


if __name__ == "__main__":
    main()
