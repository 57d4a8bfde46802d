#!/usr/bin/env python3
"""kjournal ship (issue 12): a Kyuubi-like writer (kyuubilog.py) drives the
shipper against a real kjournald.

- --once ships what is there: sessions across two days (a close written into
  yesterday's file), a partial last line that waits for its newline, and bad
  lines (not JSON, wrong event type, invalid UTF-8, a line too large to read,
  a line too large for a request whose exception is cut to its message), each
  skipped and counted while the lines after it arrive; exit codes 0, 1, 2, 3,
  8, 9;
- following: a new day directory, an old day file growing, a partial line
  completed, a SIGTERM that saves the state (a later --once has nothing to do);
- server-info lines lose serverConf/serverEnv: the fake secrets are nowhere
  outside Kyuubi's own files (journal, WAL, logs, outputs, state file).
"""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ingestlib  # noqa: E402
import kjtest  # noqa: E402
import shiplib  # noqa: E402
from kyuubilog import KyuubiLog  # noqa: E402
from shiplib import DAY, T0  # noqa: E402

check = kjtest.check
H = 3600000

work = kjtest.tmpdir("kjship-")
root = os.path.join(work, "events")
out = os.path.join(work, "out")
os.makedirs(out)
state = os.path.join(out, "ship.state")
shiplog = os.path.join(out, "ship.log")
d = ingestlib.Daemon(out).start()
db = d.journal
limits = ("--max-request", "65536", "--max-line", "131072")

try:
    w = KyuubiLog(root)
    w.start(T0 + 1 * H)
    w.open_session("s1", "alice", T0 + 10 * H)
    w.engine_opened("s1", T0 + 10 * H + 5000, "spark-app-1")
    w.raw(T0 + 10 * H, b"this is not json")
    w.raw(T0 + 10 * H, b'{"eventType":"kyuubi_operation","sessionId":"s1"}')
    w.raw(T0 + 10 * H, b'{"eventType":"kyuubi_session","sessionId":"bad-\xff\xfe","user":"x"}')
    w.raw(T0 + 10 * H, b"x" * 300000)  # above --max-line: skipped unread
    w.open_session("s3", "carol", T0 + 12 * H)
    w.failed("s3", "engine launch failed: pod quota exceeded", trace_bytes=100000)
    w.close_session("s3", T0 + 12 * H + 60000)  # still carries the huge exception
    # a new day, and yesterday's session closing into yesterday's file
    w.open_session("s4", "dave", T0 + DAY + 1 * H)
    w.close_session("s1", T0 + DAY + 2 * H)
    finish_s2 = w.open_session("s2", "bob", T0 + 11 * H, split=40)  # partial line

    rc, so, se = shiplib.once(d.endpoint, state, "file://" + root, *limits, log=shiplog)
    n = shiplib.summary(so)
    logs = shiplib.read(shiplog)
    merged = shiplib.server_info_merged(logs)
    check(rc == 1, "--once with rejected and skipped lines exits 1, got %d: %s %s" % (rc, so, se))
    check(n["files"] == 3, "three files (two session days, one server info): %s" % so)
    check(n["skipped"] == 2, "not JSON and too long are skipped: %s" % so)
    check(n["rejected"] == 2 + (0 if merged else 1),
          "wrong type, invalid UTF-8 (and the server info before the journal side) are "
          "rejected: %s" % so)
    for what in ("line=3 code=not_json", "line=4 code=unknown_event_type",
                 "line=5 code=invalid_utf8", "line=6 code=too_large"):
        check(what in logs, "the log names the bad line: %s\n%s" % (what, logs))
    check("day=20251129/server-kyuubi-0.json" in logs, "the log names the file")
    want = w.event_ids() - {"kyuubi:s2:created"}
    got = shiplib.event_ids(db)
    check(got == want, "the events after the bad lines arrived, the partial line waits: "
          "missing %s, extra %s" % (want - got, got - want))
    st = shiplib.sessions(db)
    check(st["s1"][0] == "closed" and st["s3"] == ("closed", "exception") and
          st["s4"][0] == "open", "session states: %s" % st)

    # the partial line completes: only it is shipped
    finish_s2()
    rc, so, se = shiplib.once(d.endpoint, state, root, *limits, log=shiplog)
    n = shiplib.summary(so)
    check(rc == 0 and n["lines"] == 1 and n["stored"] == 1,
          "the completed line alone goes, exit 0: %d %s %s" % (rc, so, se))
    check(shiplib.event_ids(db) == w.event_ids(), "every event is in the journal")

    # following: inotify sees a new day, an old file growing, a partial line
    flog = os.path.join(out, "follow.log")
    p = shiplib.follow(d.endpoint, state, root, flog, "--rescan", "1h", "--progress", "200ms",
                       *limits)
    kjtest.wait_for("the follower's first progress line",
                    lambda: "msg=progress" in shiplib.read(flog))
    w.open_session("s5", "erin", T0 + 2 * DAY + H)  # day=20251201 appears
    kjtest.wait_for("s5 from a new day directory",
                    lambda: "kyuubi:s5:created" in shiplib.event_ids(db))
    w.close_session("s4", T0 + 2 * DAY + 2 * H)  # into day=20251130, written earlier
    kjtest.wait_for("s4's close in its old day file",
                    lambda: shiplib.sessions(db).get("s4", ("",))[0] == "closed")
    fin = w.engine_opened("s5", T0 + 2 * DAY + H + 4000, "spark-app-5", split=100)
    fin()
    kjtest.wait_for("s5 opened", lambda: "kyuubi:s5:opened" in shiplib.event_ids(db))
    # a second shipper on the same state file is refused
    rc, so, se = shiplib.once(d.endpoint, state, root)
    check(rc == 9 and "another kjournal ship" in se, "state file locked: %d %s" % (rc, se))
    rc = kjtest.stop(p, signal.SIGTERM)
    check(rc == 0, "SIGTERM: exit 0, got %d\n%s" % (rc, shiplib.read(flog)))
    flogs = shiplib.read(flog)
    check("behind_bytes=" in flogs and "kjournald=ok" in flogs, "progress in logfmt")
    rc, so, se = shiplib.once(d.endpoint, state, root)
    check(rc == 0 and shiplib.summary(so)["lines"] == 0,
          "after SIGTERM the state holds every ack: %d %s %s" % (rc, so, se))
    check(shiplib.event_ids(db) == w.event_ids(), "every event is in the journal")
    count, distinct = shiplib.event_id_count(db)
    check(count == distinct == len(w.event_ids()), "each event once")

    # exit codes
    dead = "tcp://127.0.0.1:%d" % kjtest.free_port()
    rc, so, se = shiplib.once(dead, os.path.join(out, "dead.state"), root, "--retries", "1")
    check(rc == 8 and "stopped acknowledging" in so, "kjournald unreachable: 8, got %d %s" % (rc, so))
    rc, so, se = shiplib.once(d.endpoint, os.path.join(out, "x.state"), root + "/nope")
    check(rc == 3 and "nope" in se, "no ROOT: 3, got %d %s" % (rc, se))
    for args in ([root], ["--state", state, "hdfs://nn/kyuubi/events"], ["--state", state],
                 ["--state", state, "--chunk", "0", root]):
        r = subprocess.run([kjtest.program("kjournal"), "ship"] + args, capture_output=True,
                           text=True, timeout=kjtest.DEADLINE)
        check(r.returncode == 2 and "--help" in r.stderr, "usage error %s: %d %s" %
              (args, r.returncode, r.stderr))
    r = subprocess.run([kjtest.program("kjournal"), "ship", "--help"], capture_output=True,
                       text=True, timeout=kjtest.DEADLINE)
    check(r.returncode == 0 and "--curve-server-key" in r.stdout and "--state" in r.stdout,
          "--help lists the shared publisher flags")

    # a file larger than the read buffer (1 MiB): lines across its refills
    big = KyuubiLog(os.path.join(work, "big"), host="kyuubi-big")
    for i in range(1500):
        big.open_session("big-%04d" % i, "bulk", T0 + 3 * DAY + i)
        big.close_session("big-%04d" % i, T0 + 3 * DAY + i + 1000)
    size = os.path.getsize(big.path("kyuubi_session", T0 + 3 * DAY))
    check(size > 1 << 20, "the big file is over 1 MiB: %d" % size)
    rc, so, se = shiplib.once(d.endpoint, os.path.join(out, "big.state"), big.root, "--batch",
                              "100", "--chunk", "1000", "--timeout", "10000")
    n = shiplib.summary(so)
    # (a resend after a --timeout of 500 ms answers duplicate: both count)
    check(rc == 0 and n["stored"] + n["duplicate"] == 3000,
          "every line of the big file answered: %d %s %s" % (rc, so, se))
    check(big.event_ids() <= shiplib.event_ids(db), "every line of the big file stored")

    # CURVE: the same flags as kjournal publish
    keys = os.path.join(out, "keys")
    os.makedirs(os.path.join(keys, "allow"))
    for name in ("server", "ship"):
        r = subprocess.run([kjtest.program("kjournal"), "keygen", os.path.join(keys, name)],
                           capture_output=True, text=True, timeout=kjtest.DEADLINE)
        check(r.returncode == 0, "keygen: %s" % r.stderr)
    os.rename(os.path.join(keys, "ship.pub"), os.path.join(keys, "allow", "ship.pub"))
    cd = ingestlib.Daemon(os.path.join(out, "curve"), ["--curve-secret-key",
                          os.path.join(keys, "server.key"), "--curve-allow",
                          os.path.join(keys, "allow")])
    os.makedirs(cd.dir)
    cd.start()
    try:
        rc, so, se = shiplib.once(cd.endpoint, os.path.join(out, "curve.state"), root,
                                  "--curve-server-key", os.path.join(keys, "server.pub"),
                                  "--curve-secret-key", os.path.join(keys, "ship.key"), *limits)
        n = shiplib.summary(so)
        check(n["stored"] == len(w.event_ids()), "over CURVE every event is stored: %s %s" % (so, se))
    finally:
        cd.stop()

    # the secrets of serverConf/serverEnv are nowhere outside Kyuubi's files
    ev = subprocess.run([kjtest.program("kjournal"), "events", "--journal", db, "-o", "json"],
                        capture_output=True, timeout=kjtest.DEADLINE)
    with open(os.path.join(out, "events.json"), "wb") as f:
        f.write(ev.stdout + ev.stderr)
    d.stop()
    leaks = shiplib.leaks([out])
    check(not leaks, "secrets leaked: %s" % leaks)
    print("ok: ship --once and follow; bad lines counted; exit codes; no secret leaked "
          "(server info %s)" % ("stored" if merged else "rejected: journal side not merged"))
finally:
    if d.proc and d.proc.poll() is None:
        d.stop()
