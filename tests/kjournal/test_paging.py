"""Listings longer than a page (KJ_JOURNAL_PAGE rows), with pages ending in the
middle of rows that share a time: every command's rows against the same query
asked of SQLite directly, forwards, backwards, filtered, last N."""
import json
import os
import sqlite3
import subprocess
import sys

import kjcli

T0 = 1795860000000
MIN = 60000


def iso(ms):
    import datetime
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc) \
        .strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def main():
    d = kjcli.tmpdir()
    failures = []
    try:
        j = os.path.join(d, "j.db")
        subprocess.run([kjcli.KJT, "ties", j], check=True)
        db = sqlite3.connect("file:%s?mode=ro" % j, uri=True)
        ev_sql = ("SELECT e.seq FROM events e JOIN sessions s ON s.id = e.session WHERE %s"
                  " ORDER BY e.time_ms %s, e.seq %s")
        se_sql = "SELECT session_id FROM sessions WHERE %s ORDER BY created_ms %s, id %s"
        cases = [
            (["events"], ev_sql, "1", False, None),
            (["events", "-r"], ev_sql, "1", True, None),
            (["events", "-n", "700"], ev_sql, "1", True, 700),
            (["events", "-r", "-n", "333"], ev_sql, "1", True, 333),
            (["events", "--since", iso(T0 + 2 * MIN)], ev_sql,
             "e.time_ms >= %d" % (T0 + 2 * MIN), False, None),
            (["events", "-r", "--until", iso(T0 + 3 * MIN)], ev_sql,
             "e.time_ms < %d" % (T0 + 3 * MIN), True, None),
            (["sessions"], se_sql, "1", False, None),
            (["sessions", "-r"], se_sql, "1", True, None),
            (["sessions", "--state", "open"], se_sql, "state = 1", False, None),
            (["sessions", "-r", "--state", "closed"], se_sql, "state = 2", True, None),
            (["sessions", "--user", "bob"], se_sql, "user = 'bob'", False, None),
            (["sessions", "-r", "--user", "carol", "-n", "300"], se_sql, "user = 'carol'", True,
             300),
            (["sessions", "-n", "260"], se_sql, "1", True, 260),
        ]
        for args, sql, where, reverse, last in cases:
            order = "DESC" if reverse else "ASC"
            want = [r[0] for r in db.execute(sql % (where, order, order))]
            if last:
                want = want[:last]
                if "-r" not in args:
                    want.reverse()
            rc, out, err = kjcli.run(args + ["-o", "json", "--utc"], journal=j)
            key = "seq" if args[0] == "events" else "session_id"
            got = [json.loads(line)[key] for line in out.splitlines()]
            if rc != 0 or got != want:
                failures.append("kjournal %s: exit %d, %d rows (want %d), first difference at %s"
                                % (" ".join(args), rc, len(got), len(want),
                                   next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                                        min(len(got), len(want)))))
        kjcli.check(len(want) > 256, "the journal is longer than a page")
    finally:
        kjcli.cleanup(d)
    for f in failures:
        print("FAIL: " + f, file=sys.stderr)
    if failures:
        sys.exit(1)
    print("paging: all listings match SQLite's")


if __name__ == "__main__":
    main()
