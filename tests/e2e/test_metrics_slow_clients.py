#!/usr/bin/env python3
"""kjournald's /healthz under slow and idle clients, with real sockets
(issue 10, item 13).

1. Trickling cannot hold a connection: 10 connections each send a request
   line, then one header byte a second, forever. kjournald closes every one
   of them (an idle timeout, which each byte resets, never would).
2. Probes get in: 70 connections (more than the endpoint serves at once)
   trickle the same way and are reopened before each probe; every one of 40
   /healthz probes is answered 200 (each with a generous 30 s timeout: a
   refused connection, not a slow answer, is what the bug looked like).
3. libmicrohttpd's own messages go through kjournald's logger: every line
   kjournald wrote is a logfmt record, and the closed connections were
   logged (rate-limited) and counted in /metrics.
"""
import os
import re
import select
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.environ.get("KJ_SOURCE_DIR", "../.."), "tests"))
import kjtest  # noqa: E402

DEADLINE_S = 60  # generous: the endpoint's own deadline is 10 s
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "


class Tricklers:
    """n connections sending one byte a second; closed ones are noted and,
    with reopen, opened again."""

    def __init__(self, port, n, reopen):
        self.port, self.n, self.reopen = port, n, reopen
        self.socks = {}  # socket -> opened at
        self.closed_by_server = []  # lifetimes (s) of connections the server closed
        for _ in range(n):
            self.open()

    def open(self):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", self.port))
            s.sendall(PARTIAL)
        except OSError:
            s.close()
            return
        s.setblocking(False)
        self.socks[s] = time.time()

    def tick(self):
        """One byte on each connection; notes and replaces those closed."""
        gone = []
        for s in list(self.socks):
            try:
                r, _, _ = select.select([s], [], [], 0)
                if r and s.recv(4096) == b"":
                    gone.append(s)
                    continue
                s.send(b"a")
            except OSError:
                gone.append(s)
        for s in gone:
            self.closed_by_server.append(time.time() - self.socks.pop(s))
            s.close()
            if self.reopen:
                self.open()

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = {}


def healthz(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=30) as r:
        return r.status, r.read()


def metric(port, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=30) as r:
        text = r.read().decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def main():
    wd = kjtest.tmpdir("kj-metrics-slow-")
    mport = kjtest.free_port()
    zport = kjtest.free_port()
    log = os.path.join(wd, "kjournald.log")
    d = kjtest.start([kjtest.program("kjournald"), "--journal", os.path.join(wd, "j.db"),
                      "--listen", "tcp://127.0.0.1:%d" % zport, "--no-reconcile",
                      "--metrics", "127.0.0.1:%d" % mport], log)
    try:
        kjtest.wait_port(mport, d)

        # 1. trickling does not keep a connection open
        t = Tricklers(mport, 10, reopen=False)
        kjtest.check(len(t.socks) == 10, "could not open 10 connections")
        start = time.time()
        while t.socks and time.time() - start < DEADLINE_S:
            t.tick()
            time.sleep(1)
        left = len(t.socks)
        t.close()
        kjtest.check(left == 0, "%d of 10 trickling connections still open after %d s"
                     % (left, DEADLINE_S))
        print("trickling connections closed after %.1f..%.1f s"
              % (min(t.closed_by_server), max(t.closed_by_server)))

        # 2. probes answered while 70 trickling connections are held open
        t = Tricklers(mport, 70, reopen=True)
        probes = 40
        for _ in range(probes):
            t.tick()  # reopens what was closed: 70 are open when the probe connects
            code, body = healthz(mport)
            kjtest.check(code == 200 and body == b"ok\n",
                         "/healthz answered %d %r during the trickle" % (code, body))
            time.sleep(0.5)  # the pace of the trickle, not a wait for an event
        held = len(t.socks)
        closed = len(t.closed_by_server)
        t.close()
        print("%d/%d probes answered 200 while %d trickling connections were held open "
              "(%d closed and reopened)" % (probes, probes, held, closed))

        deadline = metric(mport, 'kjournal_metrics_connections_closed_total{reason="deadline"}')
        evicted = metric(mport, 'kjournal_metrics_connections_closed_total{reason="evicted"}')
        kjtest.check(deadline is not None and deadline >= 10,
                     "/metrics: connections closed at their deadline: %s" % deadline)
        kjtest.check(evicted is not None and evicted >= 1,
                     "/metrics: connections closed to make room: %s" % evicted)
    finally:
        rc = kjtest.stop(d)
    with open(log, errors="replace") as f:
        lines = f.read().splitlines()
    kjtest.check(rc == 0, "kjournald exit code %d; log:\n%s" % (rc, "\n".join(lines[-30:])))

    # 3. everything kjournald wrote is logfmt, libmicrohttpd's messages included
    rec = re.compile(r'^ts=\S+ level=(debug|info|warn|error) msg=("[^"]*"|\S+)( |$)')
    bad = [line for line in lines if not rec.match(line)]
    kjtest.check(not bad, "lines that are not logfmt records:\n" + "\n".join(bad[:20]))
    kjtest.check(any("metrics: connection closed" in line for line in lines),
                 "the closed connections were not logged")
    # rate-limited: a minute's flood is a handful of lines, not one per connection
    closed_lines = sum("metrics: connection closed" in line for line in lines)
    kjtest.check(closed_lines <= 40, "%d log lines for closed connections" % closed_lines)
    print("ok: %d log lines, all logfmt" % len(lines))


if __name__ == "__main__":
    main()
