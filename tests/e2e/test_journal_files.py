"""Issue 10, items 3, 5, 11 and 17 with the real programs: the journal and
its backups are private whatever the umask (0640 with --group-readable);
session totals stay right when a session's user changes; the publisher's
clock cannot end or stretch a grace period; `kjournal backup` to a missing
directory exits 1 with a clear message; gen_journal has a --help and takes
no option for a path."""
import json
import os
import shutil
import stat
import subprocess
import time

import ingestlib as L
import kjtest

work = kjtest.tmpdir("kj-files-")
kj = kjtest.program("kjournal")


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: os.umask(0o022), **kw)


def start_daemon(name, extra=()):
    d = L.Daemon(work, list(extra) + ["--no-reconcile"], journal=os.path.join(work, name))
    # The umask most systems run with: without the fix it made 0644 files.
    old = os.umask(0o022)
    try:
        d.start()
    finally:
        os.umask(old)
    return d


now = int(time.time() * 1000)

# --- kjournald: a new journal is 0600; the clock rules; totals ---------------
d = start_daemon("j.db")
try:
    req = L.connect(d.endpoint, timeout_ms=30000)
    r = L.request(req, L.event("o-1", "s-1", t=now - 1000, user="alice"))
    L.check(r["results"][0]["status"] == "stored", "open stored %r" % r)
    for suffix in ("", "-wal", "-shm"):
        p = d.journal + suffix
        L.check(os.path.exists(p) and mode(p) == 0o600,
                "%s is 0600 under umask 022, got %o" % (p, mode(p) if os.path.exists(p) else 0))

    # A close dated 2000-01-01 for a session opened now would release its
    # engine at once; a 2099 one would hold it forever.
    r = L.request(req, L.event("c-2000", "s-1", "session_close", t=946684800000))
    res = r["results"][0]
    L.check(res["status"] == "rejected" and res["error"]["code"] == "close_before_open",
            "close before open rejected %r" % r)
    r = L.request(req, L.event("c-2099", "s-1", "session_close", t=4070908800000))
    res = r["results"][0]
    L.check(res["status"] == "rejected" and res["error"]["code"] == "time_in_future"
            and "time_ms" in res["error"]["message"], "close in 2099 rejected %r" % r)
    # An old session replayed (a shipper after an outage) is still stored.
    day = 86400 * 1000
    r = L.request(req, {"events": [L.event("old-o", "old", t=now - 2 * day),
                                   L.event("old-c", "old", "session_close", t=now - 2 * day + 60000)]})
    L.check([x["status"] for x in r["results"]] == ["stored", "stored"], "old replay stored %r" % r)
    r = L.request(req, L.event("c-1", "s-1", "session_close", t=now))
    L.check(r["results"][0]["status"] == "stored", "close now stored %r" % r)

    # Item 3: an open without a user closed with one; alice then bob.
    r = L.request(req, {"events": [L.event("u-o", "u", t=now - 5000),
                                   L.event("u-c", "u", "session_close", t=now - 4000, user="carol"),
                                   L.event("v-o1", "v", t=now - 5000, user="dave"),
                                   L.event("v-o2", "v", t=now - 4500, user="erin"),
                                   L.event("v-c", "v", "session_close", t=now - 4000)]})
    L.check([x["status"] for x in r["results"]] == ["stored"] * 5, "user changes stored %r" % r)
    req.close()

    st = run([kj, "stats", "--journal", d.journal, "-o", "json"])
    L.check(st.returncode == 0, "stats: %s" % st.stderr)
    by_user = {u["user"]: (u["open"], u["closed"]) for u in json.loads(st.stdout)["by_user"]}
    L.check(by_user == {"alice": (0, 1), "carol": (0, 1), None: (0, 1), "erin": (0, 1)},
            "totals by user follow the sessions: %r" % by_user)
    v = run([kj, "verify", "--journal", d.journal])
    L.check(v.returncode == 0, "verify clean: %s%s" % (v.stdout, v.stderr))

    # --- kjournal backup: 0600, 0640 on request; a missing directory -----------
    b = os.path.join(work, "b.db")
    r = run([kj, "backup", "--journal", d.journal, "--to", b])
    L.check(r.returncode == 0 and mode(b) == 0o600, "backup 0600: %d %s" % (r.returncode, r.stderr))
    g = os.path.join(work, "g.db")
    r = run([kj, "backup", "--journal", d.journal, "--to", g, "--group-readable"])
    L.check(r.returncode == 0 and mode(g) == 0o640, "backup --group-readable 0640: %s" % r.stderr)
    missing = os.path.join(work, "nonexistent-dir", "x.db")
    r = run([kj, "backup", "--journal", d.journal, "--to", missing])
    L.check(r.returncode == 1, "backup to a missing directory exits 1, got %d" % r.returncode)
    L.check("does not exist" in r.stderr and "nonexistent-dir" in r.stderr
            and "session" not in r.stderr, "clear message: %r" % r.stderr)
    L.check(not os.path.exists(missing), "nothing created")
    r = run([kj, "backup", "--help"])
    L.check(r.returncode == 0 and "--group-readable" in r.stdout, "backup --help")
finally:
    L.check(d.stop() == 0, "kjournald stops cleanly")

# --- kjournald --group-readable --------------------------------------------------
d = start_daemon("group.db", ["--group-readable"])
try:
    req = L.connect(d.endpoint, timeout_ms=30000)
    r = L.request(req, L.event("g-1", "g", t=now))
    L.check(r["results"][0]["status"] == "stored", "stored %r" % r)
    req.close()
    for suffix in ("", "-wal", "-shm"):
        L.check(mode(d.journal + suffix) == 0o640, "%s%s is 0640" % (d.journal, suffix))
finally:
    d.stop()
r = run([kjtest.program("kjournald"), "--help"])
L.check("--group-readable" in r.stdout, "kjournald --help names --group-readable")

# --- gen_journal: --help is help, an option is no path -------------------------
gen = os.path.join(kjtest.BUILD, "tools", "bench", "gen_journal")
if os.path.exists(gen):
    r = run([gen, "--help"], cwd=work)
    L.check(r.returncode == 0 and "usage: gen_journal" in r.stdout, "gen_journal --help")
    r = run([gen, "-x", "10"], cwd=work)
    L.check(r.returncode == 2 and "not a path" in r.stderr, "gen_journal -x: exit 2 %r" % r.stderr)
    L.check(not any(n.startswith("-") for n in os.listdir(work)), "no file named like an option")

shutil.rmtree(work, ignore_errors=True)
print("ok")
