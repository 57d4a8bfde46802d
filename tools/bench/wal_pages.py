#!/usr/bin/env python3
"""wal_pages.py JOURNAL [EVENTS]: which b-trees the WAL frames of JOURNAL wrote.

JOURNAL and JOURNAL-wal are copies taken before the journal was closed (as
`bench_journal --keep-wal DIR` leaves them). Each WAL frame is one page
written at a commit; the page's b-tree (table or index) is found through
SQLite's dbstat table in a scratch copy, so the files given are never
changed. Prints the frames per b-tree, per commit and, given the number of
EVENTS the WAL holds, per event. Frames of a WAL reused after a checkpoint
are the last cycle's only: keep the run under wal_autocheckpoint (4000 pages).
"""
import collections
import os
import shutil
import sqlite3
import struct
import sys
import tempfile


def frames(wal):
    """(page number, commit?) for every valid frame of the WAL file."""
    with open(wal, "rb") as f:
        data = f.read()
    if len(data) < 32:
        return []
    magic, _, page_size, _, salt1, salt2 = struct.unpack(">IIIIII", data[:24])
    if magic not in (0x377F0682, 0x377F0683):
        sys.exit("wal_pages: %s: not a WAL file" % wal)
    out, off = [], 32
    while off + 24 + page_size <= len(data):
        pgno, commit, s1, s2 = struct.unpack(">IIII", data[off:off + 16])
        if (s1, s2) != (salt1, salt2):
            break  # left over from an earlier cycle of the WAL
        out.append((pgno, commit != 0))
        off += 24 + page_size
    return out


def owners(db, wal):
    """page number -> b-tree name, read from a scratch copy of db and wal."""
    tmp = tempfile.mkdtemp(prefix="wal_pages.")
    try:
        shutil.copy(db, os.path.join(tmp, "j.db"))
        shutil.copy(wal, os.path.join(tmp, "j.db-wal"))
        c = sqlite3.connect(os.path.join(tmp, "j.db"))
        m = {p: n for n, p in c.execute("SELECT name, pageno FROM dbstat")}
        c.close()
        return m
    finally:
        shutil.rmtree(tmp)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: wal_pages.py JOURNAL [EVENTS]")
    db = sys.argv[1]
    events = int(sys.argv[2]) if len(sys.argv) == 3 else 0
    fr = frames(db + "-wal")
    names = owners(db, db + "-wal")
    commits = sum(1 for _, c in fr if c)
    per = collections.Counter(names.get(p, "(free or header)") for p, _ in fr)
    print("%d frames, %d commits: %.1f pages a commit%s" %
          (len(fr), commits, len(fr) / max(commits, 1),
           ", %.2f an event" % (len(fr) / events) if events else ""))
    for name, n in per.most_common():
        print("  %-28s %7d  %5.1f%%%s" % (name, n, 100.0 * n / len(fr),
                                         "  %.2f/event" % (n / events) if events else ""))


if __name__ == "__main__":
    main()
