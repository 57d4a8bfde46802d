"""Kyuubi's own lines through kjournald and its reconciler, against kube-sim
(issue 12): linking sessions to pods as Kyuubi does, and server restarts.

One kjournald (engine grace 0, submit grace 1 s, a resync every second) is
fed Kyuubi lines made from the fixtures in shared/fixtures/kyuubi:

- an interactive session with Kyuubi's default engine name, and one whose
  user set spark.app.name=nightly_etl_job (its pod has another
  kyuubi-unique-tag: it is found by spark-app-selector alone);
- a BATCH session, created only (no engineId yet), whose pod (tagged with the
  batch id) stays Pending for much longer than the submit grace: it is never
  closed engine_missing;
- the server's first start and its stop (closing nothing);
- then the server's kyuubi_server_info STARTED line, as Kyuubi writes it
  (serverConf and serverEnv with fake secrets), with a later startTime: the
  two interactive sessions close (server_restarted) and their pods go; the
  batch session and its pod stay.

Nothing of the secrets reaches the journal, its WAL or kjournald's log;
verify is clean.
"""
import json
import os
import sqlite3
import sys

sys.path.insert(0, os.path.join(os.environ.get("KJ_SOURCE_DIR", "../.."), "tests"))
sys.path.insert(0, os.path.dirname(__file__))
import kjtest  # noqa: E402
from recoverlib import KubeSim, NS, OURS, check, cleanup, kjournal, now_ms, pod  # noqa: E402
from test_kjournald_reconcile import publish, read, start_kjournald  # noqa: E402

SERVER = "10.244.1.23:10009"
IA = "0f6c4a5e-2d4b-4c1e-9a7f-3b8e2d1c5a90"  # default engine name
CN = "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f"  # spark.app.name=nightly_etl_job
CN_REF = "5d6e7f80-91a2-4b3c-8d4e-5f60718293a4"  # the engine ref id Kyuubi gave its pod
BT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"  # a batch


def fixture(name, line=1):
    with open(os.path.join(kjtest.SHARED, "fixtures", "kyuubi", name)) as f:
        return json.loads(f.readlines()[line - 1])


def session_line(sid, t, stype="INTERACTIVE", engine_name="", engine_id="", opened=-1):
    """A KyuubiSessionEvent as Kyuubi's JSON logger writes it (fixture keys)."""
    ev = fixture("session-connection.jsonl", 1)
    ev.update({"sessionId": sid, "sessionType": stype, "startTime": t, "eventTime": t + 5,
               "engineName": engine_name, "engineId": engine_id, "openedTime": opened,
               "remoteSessionId": sid if opened > 0 else ""})
    return ev


def reduced(info):
    """A server-info line as `kjournal ship` forwards it."""
    return {k: info[k] for k in ("serverName", "serverIP", "startTime", "eventTime", "state",
                                 "eventType")}


def pod_of(sim, name):
    code, body = sim.call("GET", "/api/v1/namespaces/%s/pods/%s" % (NS, name), ok=None)
    return body if code == 200 else None


def has_ours(sim, name):
    p = pod_of(sim, name)
    return p is not None and OURS in (p["metadata"].get("finalizers") or [])


def rows(journal, sql, *args):
    c = sqlite3.connect("file:%s?mode=ro" % journal, uri=True)
    try:
        return c.execute(sql, args).fetchall()
    finally:
        c.close()


def session(journal, sid):
    r = rows(journal, "SELECT state, session_type, engine_tag, engine_id, close_reason"
                      " FROM sessions WHERE session_id = ?", sid)
    return r[0] if r else None


def main():
    workdir = kjtest.tmpdir("kj-kyuubi-")
    sim = KubeSim(workdir).start()
    journal = os.path.join(workdir, "kyuubi.db")
    t = now_ms() - 60000  # the sessions started a minute ago
    sim.seed([pod("drv-ia", tag=IA, app="spark-ia", fins=()),
              pod("drv-cn", tag=CN_REF, app="spark-cn", fins=()),
              pod("drv-bt", tag=BT, phase="Pending", fins=(), age=60000)])
    d, ep, log = start_kjournald(workdir, journal, "--server", sim.url, "--namespace", NS,
                                 "--engine-grace", "0s", "--submit-grace", "1s",
                                 "--resync", "1s", "--log-level", "debug")
    try:
        publish(workdir, ep, [
            session_line(IA, t),
            session_line(IA, t, engine_name="kyuubi_CONNECTION_SPARK_SQL_alice_" + IA,
                         engine_id="spark-ia", opened=t + 2000),
            session_line(CN, t, engine_name="nightly_etl_job", engine_id="spark-cn",
                         opened=t + 3000),
            session_line(BT, t, stype="BATCH"),
            # the server's earlier life, as the shipper forwards it (reduced)
            # and as Kyuubi writes it: a start before these sessions and a
            # stop, which close nothing
            reduced(fixture("server-info-restart.jsonl", 1)),
            fixture("server-info-restart.jsonl", 2),
        ])
        for name in ("drv-ia", "drv-cn", "drv-bt"):
            kjtest.wait_for("our finalizer on " + name, lambda: has_ours(sim, name))
        check(session(journal, CN)[2] is None,
              "a custom spark.app.name gave a tag: %r" % (session(journal, CN),))
        check(session(journal, BT)[2] == BT, "the batch's tag is not its id: %r"
              % (session(journal, BT),))

        # Passes that start well after the submit grace ended must leave the
        # Pending batch alone.
        after = now_ms() + 2000
        kjtest.wait_for("two complete passes after the submit grace",
                        lambda: rows(journal, "SELECT count(*) FROM reconcile_runs"
                                              " WHERE started_ms > ? AND finished_ms > 0",
                                     after)[0][0] >= 2)
        check(session(journal, BT)[0] == 1, "the Pending batch was closed: %r"
              % (session(journal, BT),))
        check(all(s[0] == 1 for s in (session(journal, IA), session(journal, CN))),
              "an interactive session closed before the restart")

        # Kyuubi restarts: its STARTED line, whole, secrets and all.
        info = fixture("server-info-restart.jsonl", 3)
        check("s3cr3t-" in json.dumps(info), "the fixture lost its fake secrets")
        info["startTime"] = now_ms()
        info["eventTime"] = info["startTime"] + 400
        publish(workdir, ep, [info])
        for name in ("drv-ia", "drv-cn"):
            kjtest.wait_for("the restarted server's pod %s to go" % name,
                            lambda: pod_of(sim, name) is None)
        check(has_ours(sim, "drv-bt"), "the batch's pod lost our finalizer or went")
        for sid in (IA, CN):
            s = session(journal, sid)
            check(s[0] == 2 and s[4] == "server_restarted", "session %s: %r" % (sid, s))
        check(session(journal, BT)[0] == 1, "the batch session closed on the restart")
        # A replay of the start, whole or reduced, changes nothing.
        publish(workdir, ep, [info, reduced(info)])
    finally:
        rc = kjtest.stop(d)
        sim.stop()
    check(rc == 0, "kjournald exit code %d; log:\n%s" % (rc, read(log)[-3000:]))

    r = kjournal(workdir, "show", "--journal", journal, IA)
    check(r.returncode == 0 and "interactive" in r.stdout and "server_restarted" in r.stdout,
          "kjournal show: %s%s" % (r.stdout, r.stderr))
    r = kjournal(workdir, "sessions", "--journal", journal, "-o", "json")
    check(r.returncode == 0 and '"type": "batch"' in r.stdout, "kjournal sessions: %s" % r.stdout)
    r = kjournal(workdir, "verify", "--journal", journal)
    check(r.returncode == 0, "verify: %s%s" % (r.stdout, r.stderr))
    check(rows(journal, "SELECT count(*) FROM server_events")[0][0] == 3,
          "the two starts and the stop are not stored once each")
    for f in [log] + [journal + x for x in ("", "-wal", "-shm")]:
        if os.path.exists(f):
            with open(f, "rb") as fh:
                check(b"s3cr3t" not in fh.read(), "a secret in " + f)
    cleanup(workdir)
    print("ok: default and custom engine names, a Pending batch past the submit grace, "
          "a server restart closing its interactive sessions only, no secret stored")


if __name__ == "__main__":
    main()
