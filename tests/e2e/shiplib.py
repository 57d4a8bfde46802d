"""Helpers for the kjournal ship end-to-end tests: run the shipper (once, or
following), read what reached the journal, look for leaked secrets."""
import os
import re
import subprocess

import ingestlib
import kjtest
from kyuubilog import SECRETS

DAY = 86400000
T0 = 1764374400000  # 2025-11-29T00:00:00Z


def ship_args(endpoint, state, root, *extra):
    return [kjtest.program("kjournal"), "ship", "--endpoint", endpoint, "--state", state,
            "--timeout", "500"] + list(extra) + [root]


def once(endpoint, state, root, *extra, log=None):
    """kjournal ship --once; returns (exit code, stdout, stderr)."""
    r = subprocess.run(ship_args(endpoint, state, root, "--once", *extra), capture_output=True,
                       text=True, errors="replace", timeout=kjtest.DEADLINE)
    if log:
        with open(log, "a") as f:
            f.write(r.stdout + r.stderr)
    return r.returncode, r.stdout, r.stderr


def summary(out):
    """The counts of a --once summary line."""
    m = re.search(r"(\d+) files, (\d+) lines: (\d+) stored, (\d+) duplicate, (\d+) rejected, "
                  r"(\d+) skipped", out)
    kjtest.check(m, "a summary line in %r" % out)
    keys = ("files", "lines", "stored", "duplicate", "rejected", "skipped")
    return dict(zip(keys, map(int, m.groups())))


def follow(endpoint, state, root, log, *extra):
    """kjournal ship following root, its stderr in log."""
    return kjtest.start(ship_args(endpoint, state, root, *extra), log)


def event_ids(db):
    return {r[0] for r in ingestlib.journal_rows(db, "SELECT event_id FROM events")}


def event_id_count(db):
    return ingestlib.journal_rows(db, "SELECT count(*), count(DISTINCT event_id) FROM events")[0]


def sessions(db):
    """session_id -> (state 'open'/'closed', close reason)"""
    rows = ingestlib.journal_rows(db, "SELECT session_id, state, close_reason FROM sessions")
    return {sid: ("open" if st == 1 else "closed", reason) for sid, st, reason in rows}


def server_info_merged(logs):
    """Whether kjournald took the server-info lines (issue 12's journal side):
    before it, every one is rejected as an unknown event type."""
    return not re.search(r'file="?kyuubi_server_info/[^ ]* line=\d+ code=unknown_event_type',
                         logs)


def leaks(paths):
    """The files among paths (and directories under them) that hold a secret."""
    found = []
    for top in paths:
        walk = [top] if os.path.isfile(top) else [
            os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs]
        for p in walk:
            try:
                with open(p, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            for s in SECRETS:
                if s.encode() in data:
                    found.append((p, s))
    return found


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""
