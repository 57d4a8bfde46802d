"""Helpers for the ingest end-to-end tests: run kjournald, talk to it with
pyzmq (a ZeroMQ implementation we did not write), read the journal read-only."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import kjtest  # noqa: E402

import zmq  # noqa: E402  (Debian python3-zmq)

T0 = 1764391200000


def shared_dir():
    d = kjtest.SHARED
    if os.path.isdir(os.path.join(d, "fixtures", "kyuubi")):
        return d
    return os.path.join(os.path.dirname(__file__), "..", "shared")


def fixture_lines(name):
    with open(os.path.join(shared_dir(), "fixtures", "kyuubi", name), "rb") as f:
        return [l.rstrip(b"\n") for l in f if l.strip()]


def event(eid, session, typ="session_open", t=T0, **kw):
    ev = {"event_id": eid, "type": typ, "session_id": session, "time_ms": t}
    ev.update(kw)
    return ev


class Daemon:
    """kjournald as a real process on a free tcp port."""

    def __init__(self, workdir, extra=(), journal=None, port=None, env=None):
        self.dir = workdir
        self.journal = journal or os.path.join(workdir, "journal.db")
        self.port = port or kjtest.free_port()
        self.endpoint = "tcp://127.0.0.1:%d" % self.port
        self.extra = list(extra)
        self.log = os.path.join(workdir, "kjournald.log")
        self.env = env
        self.proc = None

    def start(self, wait=True):
        args = [kjtest.program("kjournald"), "--journal", self.journal,
                "--listen", self.endpoint] + self.extra
        self.proc = kjtest.start(args, self.log, env=self.env)
        if wait:
            kjtest.wait_port(self.port, self.proc)
        return self

    def stop(self, sig=signal.SIGTERM):
        return kjtest.stop(self.proc, sig)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def alive(self):
        return self.proc.poll() is None


# How long a send may block (the peer's queue full) and a receive may wait
# for the answer: a busy machine is slow, never silent for this long.
TIMEOUT_MS = int(kjtest.DEADLINE * 1000)


def connect(endpoint, kind=zmq.REQ, timeout_ms=TIMEOUT_MS, ctx=None, **curve):
    ctx = ctx or zmq.Context.instance()
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, timeout_ms)
    s.setsockopt(zmq.SNDTIMEO, timeout_ms)
    for k, v in curve.items():
        s.setsockopt(getattr(zmq, k.upper()), v)
    s.connect(endpoint)
    return s


# The events of a socket monitor that end a client's handshake without success.
HANDSHAKE_FAILED = {zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused by ZAP",
                    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol error",
                    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed",
                    zmq.EVENT_DISCONNECTED: "disconnected by the server"}


def send_refused(endpoint, body, **curve):
    """Sends body from a DEALER (CURVE options in curve) and waits for the
    event a refused client sees, from the socket's monitor: its handshake
    failed or the server hung up, or else it succeeded. No timing: however
    slow the machine, the handshake ends one way or the other. Returns
    (what happened, the reply if one came with it, else None)."""
    from zmq.utils.monitor import recv_monitor_message
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    for k, v in curve.items():
        s.setsockopt(getattr(zmq, k.upper()), v)
    mon = s.get_monitor_socket()
    mon.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    try:
        s.connect(endpoint)
        s.send_multipart([b"", body])
        while True:
            ev = recv_monitor_message(mon)["event"]
            if ev == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                what = "handshake succeeded"
                break
            if ev in HANDSHAKE_FAILED:
                what = HANDSHAKE_FAILED[ev]
                break
        reply = s.recv_multipart() if s.poll(0) else None
        return what, reply
    finally:
        s.disable_monitor()
        mon.close(0)
        s.close(0)


def send_until_hangup(endpoint, frames):
    """Sends frames from a DEALER and waits for what comes first: a reply
    (returned), or the server hanging up on the connection (the monitor's
    EVENT_DISCONNECTED; returns None). Fails the test when neither comes
    within the generous deadline."""
    from zmq.utils.monitor import recv_monitor_message
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    mon = s.get_monitor_socket()
    try:
        s.connect(endpoint)
        s.send_multipart(frames)
        poller = zmq.Poller()
        poller.register(s, zmq.POLLIN)
        poller.register(mon, zmq.POLLIN)
        deadline = time.monotonic() + kjtest.DEADLINE
        while True:
            left = deadline - time.monotonic()
            check(left > 0, "neither a reply nor a hang-up within %.0f s" % kjtest.DEADLINE)
            ready = dict(poller.poll(left * 1000))
            if s in ready:
                return s.recv_multipart()
            if mon in ready and recv_monitor_message(mon)["event"] == zmq.EVENT_DISCONNECTED:
                return None
    finally:
        s.disable_monitor()
        mon.close(0)
        s.close(0)


def request(sock, body):
    """One REQ round trip; body is bytes or a JSON-able object."""
    if not isinstance(body, (bytes, bytearray)):
        body = json.dumps(body).encode()
    sock.send(body)
    return json.loads(sock.recv())


def journal_rows(path, sql, args=()):
    if not os.path.exists(path):
        return []
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=kjtest.DEADLINE)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def last_seq(path):
    rows = journal_rows(path, "SELECT coalesce(max(seq), 0), count(*) FROM events")
    return tuple(rows[0]) if rows else (0, 0)


def verify(path):
    """Runs the journal's own verify (kj_journal_verify) through journal_check."""
    exe = os.path.join(kjtest.BUILD, "tests", "e2e", "journal_check")
    r = subprocess.run([exe, path], capture_output=True, text=True, timeout=kjtest.DEADLINE)
    return r.returncode, r.stdout + r.stderr


def check(cond, what):
    kjtest.check(cond, what)
