"""Damaged journals: verify fails (non-zero) and names the problem; every
other command fails cleanly with the exit code for what it found: no crash,
no sanitizer report, a message that says what is wrong."""
import os
import shutil
import sqlite3
import sys

import kjcli
from kjcli import CORRUPT, FAILURE, NOTJOURNAL, OK

READERS = [["sessions"], ["show", "s-bob-1"], ["events"], ["events", "--session", "s-bob-1"],
           ["stats"], ["actions"], ["actions", "--runs"], ["backup", "--to", "@D@/copy.db"],
           ["prune", "--older-than", "1d"]]


def page_size(path):
    with open(path, "rb") as f:
        return int.from_bytes(f.read(100)[16:18], "big")


def schema_pages(path):
    """The 0-based indexes of the pages holding the schema (sqlite_master):
    page 1, and its children once the schema outgrows one page."""
    try:
        c = sqlite3.connect(path)
        rows = c.execute("SELECT pageno FROM dbstat WHERE name = 'sqlite_schema'"
                         " OR name = 'sqlite_master'").fetchall()
        c.close()
        return {r[0] - 1 for r in rows} | {0}
    except sqlite3.Error:  # no dbstat in this SQLite
        return {0}


def garble(path, offset_in_page, length):
    """Overwrites length bytes at offset_in_page of every page but the
    schema's: the damage is to the data, which verify must find."""
    ps = page_size(path)
    size = os.path.getsize(path)
    skip = schema_pages(path)
    with open(path, "r+b") as f:
        for p in range(size // ps):
            if p in skip:
                continue
            f.seek(p * ps + offset_in_page)
            f.write(bytes([0xA5]) * length)


def damage_page_headers(path):
    garble(path, 0, 64)


def damage_page_contents(path):
    garble(path, page_size(path) - 200, 200)


def damage_header(path):
    with open(path, "r+b") as f:
        f.write(b"this is no longer a SQLite header" + bytes(67))


def truncate_half(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def break_invariant(path):
    c = sqlite3.connect(path)
    c.execute("UPDATE sessions SET event_count = 5 WHERE session_id = 's-bob-1'")
    c.commit()
    c.close()


# damage, exit codes readers may give, what verify must say, verify's exit codes
SCENARIOS = [
    ("page headers", damage_page_headers, {CORRUPT}, "integrity", {FAILURE}),
    ("page contents", damage_page_contents, {OK, CORRUPT}, "integrity", {FAILURE}),
    ("file header", damage_header, {NOTJOURNAL}, "not a kjournal database", {NOTJOURNAL}),
    ("truncated", truncate_half, {CORRUPT}, "", {FAILURE, CORRUPT}),
    ("invariant", break_invariant, {OK}, "session s-bob-1: event_count 5 but 2 events", {FAILURE}),
]


def main():
    d = kjcli.tmpdir()
    failures = []
    try:
        master = kjcli.golden_journal(d, "master.db")
        for name, damage, reader_codes, verify_says, verify_codes in SCENARIOS:
            j = os.path.join(d, "j.db")
            for f in os.listdir(d):
                if f != "master.db":
                    os.unlink(os.path.join(d, f))
            shutil.copy(master, j)
            damage(j)
            rc, out, err = kjcli.run(["verify"], journal=j)
            if rc not in verify_codes or verify_says not in out + err or rc == OK:
                failures.append("%s: verify exit %d (want %s), out %r err %r (want %r)"
                                % (name, rc, verify_codes, out[:300], err[:300], verify_says))
            for args in READERS:
                args = [a.replace("@D@", d) for a in args]
                if os.path.exists(os.path.join(d, "copy.db")):
                    os.unlink(os.path.join(d, "copy.db"))
                rc, out, err = kjcli.run(args, journal=j)
                if rc not in reader_codes or "Sanitizer" in err or "runtime error" in err:
                    failures.append("%s: kjournal %s: exit %d (want %s), %r"
                                    % (name, " ".join(args), rc, reader_codes, err[:400]))
                if rc == CORRUPT and "damaged" not in err:
                    failures.append("%s: kjournal %s: the message should say the journal is "
                                    "damaged: %r" % (name, " ".join(args), err))
                if rc != OK and args[0] == "backup" and os.path.exists(os.path.join(d, "copy.db")):
                    failures.append("%s: a failed backup left a partial copy" % name)
    finally:
        kjcli.cleanup(d)
    for f in failures:
        print("FAIL: " + f, file=sys.stderr)
    if failures:
        sys.exit(1)
    print("corrupt: %d scenarios x %d commands" % (len(SCENARIOS), len(READERS) + 1))


if __name__ == "__main__":
    main()
