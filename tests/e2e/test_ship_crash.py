#!/usr/bin/env python3
"""kjournal ship (issue 12) under crashes: a Kyuubi-like writer
(kyuubilog.py) writes sessions across three days (closes into older day
files, partial lines left hanging at the kill points) while the shipper is
SIGKILLed at >= 20 random points and kjournald is SIGKILLed twice meanwhile;
then Kyuubi itself crashes and restarts, truncating the day files it writes
to again (a recovered batch session closes into the first day's file).

The journal must end with every event exactly once and the exact session
states, `kjournal verify` clean, and no secret of the server-info lines
anywhere. KJ_SEED replays a run.

The restart's server-info line closes the interactive sessions open at the
crash as server_restarted; the batch sessions stay open.
"""
import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ingestlib  # noqa: E402
import kjtest  # noqa: E402
import shiplib  # noqa: E402
from kyuubilog import KyuubiLog  # noqa: E402
from shiplib import DAY, T0  # noqa: E402

check = kjtest.check
SEED = int(os.environ.get("KJ_SEED", time.time_ns() % 1000000))
rng = random.Random(SEED)
print("seed %d (KJ_SEED=%d replays this run)" % (SEED, SEED))

work = kjtest.tmpdir("kjship-crash-")
root = os.path.join(work, "events")
out = os.path.join(work, "out")
os.makedirs(out)
state = os.path.join(out, "ship.state")
shiplog = os.path.join(out, "ship.log")
d = ingestlib.Daemon(out).start()
db = d.journal
w = KyuubiLog(root)
clock = [T0 + 3600000]
open_ids = []
counter = [0]
pending = [lambda: None]  # a partial line to complete before the next write


def tick():
    clock[0] += rng.randint(1000, 900000)
    return clock[0]


def write_some(k):
    pending[0]()
    pending[0] = lambda: None
    for _ in range(k):
        r = rng.random()
        split = rng.randint(1, 200) if rng.random() < 0.15 else None
        if r < 0.45 or not open_ids:
            counter[0] += 1
            sid = "sess-%04d" % counter[0]
            kind = "BATCH" if rng.random() < 0.2 else "INTERACTIVE"
            fin = w.open_session(sid, "user%d" % (counter[0] % 5), tick(), kind, split=split)
            open_ids.append(sid)
        elif r < 0.7:
            sid = rng.choice(open_ids)
            if "opened" in w.expect[sid]["phases"]:
                continue
            fin = w.engine_opened(sid, tick(), "spark-" + sid, split=split)
        else:
            sid = rng.choice(open_ids)
            open_ids.remove(sid)
            fin = w.close_session(sid, tick(), split=split)  # into its start day's file
        if split is not None:
            pending[0] = fin
            return


started = [0]  # "following" lines in the shipper log before the last start


def shipper():
    started[0] = shiplib.read(shiplog).count("msg=following ")
    return shiplib.follow(d.endpoint, state, root, shiplog, "--rescan", "300ms", "--progress",
                          "1h", "--timeout", "300", "--retries", "2")


def kill_points(n, kjournald_at=()):
    global p
    for i in range(n):
        if i % 2:  # half the kills land while a started shipper follows new lines
            kjtest.wait_for("the shipper to follow", lambda: shiplib.read(shiplog).count(
                "msg=following ") > started[0])
        write_some(rng.randint(1, 12))
        time.sleep(rng.uniform(0, 0.2))  # the random point
        p.kill()
        p.wait()
        if i in kjournald_at:
            d.stop(signal.SIGKILL)
            write_some(rng.randint(1, 5))
            p = shipper()  # ships into the void for a while
            time.sleep(rng.uniform(0, 0.3))
            p.kill()
            p.wait()
            d.start()
        p = shipper()
    return n + len(kjournald_at)


restarted = set()  # the closes the Kyuubi restart makes in the journal


def caught_up():
    want = w.event_ids() | restarted
    return shiplib.event_ids(db) >= want


def state_at_ends():
    """Whether the shipper's state file holds every file to its end."""
    try:
        with open(state) as f:
            offsets = {e["path"]: e["offset"] for e in json.load(f)["files"]}
    except (OSError, ValueError, KeyError):
        return False
    paths = glob.glob(os.path.join(root, "kyuubi_*", "day=*", "*.json"))
    return all(offsets.get(os.path.relpath(x, root)) == os.path.getsize(x) for x in paths)


def wait_caught_up(what):
    try:
        kjtest.wait_for(what, caught_up)
    except SystemExit:
        print("missing: %s (journal and logs in %s)" %
              (sorted((w.event_ids() | restarted) - shiplib.event_ids(db))[:10], work),
              file=sys.stderr)
        raise


try:
    w.start(T0)
    p = shipper()
    kills = kill_points(22, kjournald_at=(5, 14))
    pending[0]()
    pending[0] = lambda: None
    wait_caught_up("the journal to catch up before Kyuubi restarts")
    # The shipper must know the files Kyuubi is going to truncate (the first
    # start too, which caught_up does not look at): a shipper killed each time
    # before it saved its state reads them all from 0 after the restart, rightly
    # without a word about a truncation it cannot know of.
    kjtest.wait_for("the shipper's state to hold every file to its end", state_at_ends)

    # Kyuubi crashes and restarts: interactive sessions are gone, batch
    # sessions are recovered and go on writing into their start day's file,
    # which the new process truncates.
    open_at_crash = list(open_ids)
    w.crash()
    restart = tick()
    w.start(restart)
    batch = [s for s in open_at_crash if w.expect[s]["type"] == "BATCH"]
    interactive = [s for s in open_at_crash if w.expect[s]["type"] == "INTERACTIVE"]
    restarted.update("kj:restarted:" + s for s in interactive)
    open_ids[:] = batch
    if not batch:  # make sure one recovered batch writes into an old file
        counter[0] += 1
        sid = "sess-%04d" % counter[0]
        w.open_session(sid, "batchuser", T0 + 7200000, "BATCH")
        batch.append(sid)
    w.close_session(batch[0], tick())  # truncates the first day's file
    open_ids[:] = batch[1:]
    kills += kill_points(4)
    pending[0]()

    wait_caught_up("every event in the journal")
    # The journal may have caught up before the last shipper even started
    # (its predecessor shipped everything): a SIGTERM before it blocks the
    # signal would kill it, so wait until it says it is following.
    kjtest.wait_for("the last shipper to follow",
                    lambda: shiplib.read(shiplog).count("msg=following ") > started[0])
    rc = kjtest.stop(p, signal.SIGTERM)
    check(rc == 0, "SIGTERM: exit 0, got %d" % rc)
    logs = shiplib.read(shiplog)
    check("how=truncated" in logs or "how=rewritten" in logs,
          "the shipper saw Kyuubi truncate its files")

    want = w.event_ids() | restarted
    got = shiplib.event_ids(db)
    check(got == want, "every event: missing %s, extra %s" % (sorted(want - got)[:5],
                                                             sorted(got - want)[:5]))
    count, distinct = shiplib.event_id_count(db)
    check(count == distinct == len(want), "each event once: %d rows, %d ids, %d written" %
          (count, distinct, len(want)))
    states = shiplib.sessions(db)
    counts = dict(ingestlib.journal_rows(db, "SELECT session_id, event_count FROM sessions"))
    for sid, e in w.expect.items():
        if e["closed"]:
            exp = "closed"
        elif sid in interactive:
            exp = "closed"
            check(states[sid][1] == "server_restarted",
                  "%s: closed by the restart: %s" % (sid, states[sid]))
        else:
            exp = "open"
        check(states.get(sid, ("missing",))[0] == exp, "%s: %s, expected %s" %
              (sid, states.get(sid), exp))
        n = len(e["phases"]) + ("kj:restarted:" + sid in restarted)
        check(counts[sid] == n, "%s: %d events, %d expected" % (sid, counts[sid], n))
    rc, text = ingestlib.verify(db)
    check(rc == 0, "journal_check verify: %s" % text)
    r = subprocess.run([kjtest.program("kjournal"), "verify", "--journal", db],
                       capture_output=True, text=True, timeout=kjtest.DEADLINE)
    check(r.returncode == 0, "kjournal verify: %s %s" % (r.stdout, r.stderr))
    d.stop()
    leaks = shiplib.leaks([out])
    check(not leaks, "secrets leaked: %s" % leaks)
    print("ok: %d kills (shipper and kjournald), Kyuubi restart with truncation, %d events "
          "once each, %d sessions, %d closed by the restart" % (kills, len(want), len(w.expect),
                                                               len(restarted)))
finally:
    for proc in (globals().get("p"), d.proc):
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
