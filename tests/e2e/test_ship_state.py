#!/usr/bin/env python3
"""kjournal ship (issue 12): the state file read as hostile input. Each case
is a row: what the file holds, and the exit code (6: damaged, with a message
naming the file; never a crash). A state that is valid but does not fit the
files (an offset past the end, another inode, another fingerprint) makes the
shipper read the file again from 0, and the journal answers duplicate."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ingestlib  # noqa: E402
import kjtest  # noqa: E402
import shiplib  # noqa: E402
from kyuubilog import KyuubiLog  # noqa: E402
from shiplib import T0  # noqa: E402

check = kjtest.check
REL = "kyuubi_session/day=20251129/server-kyuubi-0.json"


def entry(**kw):
    e = {"path": REL, "dev": "1", "ino": "2", "fp": "00000000000000ff", "fp_len": 10,
         "offset": 100, "line": 2}
    e.update(kw)
    return e


def doc(*entries, version=1):
    return json.dumps({"version": version, "files": list(entries)}).encode()


DAMAGED = [
    ("empty", b""),
    ("truncated", doc(entry())[:-7]),
    ("not an object", b"[]"),
    ("NUL byte", b'{"version":1,"files":[]}\x00'),
    ("binary", bytes(range(256)) * 4),
    ("version 2", doc(version=2)),
    ("version as text", b'{"version":"1","files":[]}'),
    ("no files", b'{"version":1}'),
    ("files not an array", b'{"version":1,"files":{}}'),
    ("entry not an object", b'{"version":1,"files":[42]}'),
    ("path escapes the root", doc(entry(path="../../etc/passwd"))),
    ("absolute path", doc(entry(path="/etc/shadow"))),
    ("path of another event type", doc(entry(path="kyuubi_operation/day=1/a.json"))),
    ("dot-dot day", doc(entry(path="kyuubi_session/../x.json"))),
    ("control character in path", doc(entry(path="kyuubi_session/day=1/a\x1b[2J.json"))),
    ("negative offset", doc(entry(offset=-1))),
    ("huge offset", doc(entry(offset=1e300))),
    ("fractional offset", doc(entry(offset=1.5))),
    ("offset as text", doc(entry(offset="100"))),
    ("dev as number", doc(entry(dev=1))),
    ("ino with sign", doc(entry(ino="-2"))),
    ("ino too long", doc(entry(ino="1" * 40))),
    ("fp not hex", doc(entry(fp="zz"))),
    ("fp_len too large", doc(entry(fp_len=100000))),
    ("more lines than bytes", doc(entry(offset=1, line=5))),
    ("path listed twice", doc(entry(), entry())),
    ("deep nesting", b"[" * 100000 + b"]" * 100000),
    ("17 MiB", b'{"version":1,"files":[' + b" " * (17 << 20) + b"]}"),
]

work = kjtest.tmpdir("kjship-state-")
root = os.path.join(work, "events")
out = os.path.join(work, "out")
os.makedirs(out)
d = ingestlib.Daemon(out).start()
try:
    w = KyuubiLog(root)
    w.open_session("s1", "alice", T0 + 3600000)
    w.close_session("s1", T0 + 7200000)
    state = os.path.join(out, "state")
    for name, data in DAMAGED:
        with open(state, "wb") as f:
            f.write(data)
        rc, so, se = shiplib.once(d.endpoint, state, root)
        check(rc == 6, "%s: exit 6, got %d: %s" % (name, rc, se))
        check("state file damaged" in se and state in se and "Sanitizer" not in se,
              "%s: a clear message naming the file: %s" % (name, se))
        with open(state, "rb") as f:
            check(f.read() == data, "%s: a damaged state file is left as it was" % name)
    os.unlink(state)
    os.mkdir(state)
    rc, so, se = shiplib.once(d.endpoint, state, root)
    check(rc == 6 and "not a regular file" in se, "a directory: %d %s" % (rc, se))
    os.rmdir(state)

    # valid states that do not fit the file: read again from 0, all duplicate
    rc, so, se = shiplib.once(d.endpoint, state, root)
    check(rc == 0 and shiplib.summary(so)["stored"] == 2, "first ship: %d %s %s" % (rc, so, se))
    with open(state) as f:
        good = json.load(f)
    size = os.path.getsize(os.path.join(root, REL))
    g = good["files"][0]
    for name, change in (("offset past the end", {"offset": size + 1000, "line": 3}),
                         ("another inode", {"ino": str(int(g["ino"]) + 1)}),
                         ("another fingerprint", {"fp": "0123456789abcdef"}),
                         ("offset inside a line", {"offset": 7, "fp_len": 0, "line": 0})):
        bad = dict(g, **change)
        with open(state, "w") as f:
            json.dump({"version": 1, "files": [bad]}, f)
        rc, so, se = shiplib.once(d.endpoint, state, root)
        n = shiplib.summary(so)
        if name == "offset inside a line":
            # the rest of the first line is not JSON; the second line is a duplicate
            check(rc == 1 and n["skipped"] == 1 and n["duplicate"] == 1,
                  "%s: %d %s %s" % (name, rc, so, se))
        else:
            check(rc == 0 and n["duplicate"] == 2 and n["stored"] == 0,
                  "%s: read again, duplicates: %d %s %s" % (name, rc, so, se))
            check("reading it again from the start" in se, "%s: logged: %s" % (name, se))
    count, distinct = shiplib.event_id_count(d.journal)
    check(count == distinct == 2, "each event once: %d %d" % (count, distinct))
    print("ok: %d damaged state files refused with exit 6; misfit states re-read" % len(DAMAGED))
finally:
    d.stop()
