#!/usr/bin/env python3
"""kjournal ship (issue 12): Kyuubi restarts and writes a day file again
(same path, same inode, here even the same size: a server-info file whose
one STARTED line only changes its times) while the shipper waits for the
acknowledgement of the line it read before. The new line must be shipped:
the file's fingerprint is that of the bytes the shipped lines came from, not
of the file as it is after the acknowledgement (the bug: it was taken after,
from the new content, so the restart's start never reached the journal and
the restart closed nothing).

A relay between the shipper and kjournald holds the acknowledgement until the
file has been written again, so the race is met on every run."""
import os
import signal
import sys

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ingestlib  # noqa: E402
import kjtest  # noqa: E402
import shiplib  # noqa: E402
from kyuubilog import KyuubiLog  # noqa: E402
from shiplib import T0  # noqa: E402

check = kjtest.check
work = kjtest.tmpdir("kjship-rewrite-")
root = os.path.join(work, "events")
out = os.path.join(work, "out")
os.makedirs(out)
state = os.path.join(out, "ship.state")
shiplog = os.path.join(out, "ship.log")
d = ingestlib.Daemon(out).start()
ctx = zmq.Context.instance()
front = ctx.socket(zmq.ROUTER)  # the shipper's kjournald
front.setsockopt(zmq.LINGER, 0)
port = front.bind_to_random_port("tcp://127.0.0.1")
back = ctx.socket(zmq.DEALER)  # to the real one
back.setsockopt(zmq.LINGER, 0)
back.connect(d.endpoint)
p = None


def recv(sock):
    """One message of sock, waiting at most the test's deadline."""
    check(sock.poll(kjtest.DEADLINE * 1000), "no message within %d s" % kjtest.DEADLINE)
    return sock.recv_multipart()


def relay(msg):
    """Sends the shipper's request msg ([peer, request id, "", body]) to
    kjournald and its reply back."""
    back.send_multipart(msg[1:])
    front.send_multipart([msg[0]] + recv(back))


def pump():
    """Relays whatever the shipper sent meanwhile."""
    while front.poll(0):
        relay(front.recv_multipart())


def starts():
    return {r[0] for r in ingestlib.journal_rows(
        d.journal, "SELECT time_ms FROM server_events WHERE type = 3")}


try:
    w = KyuubiLog(root)
    w.start(T0)
    info = w.path("kyuubi_server_info", T0)
    size = os.path.getsize(info)
    p = shiplib.follow("tcp://127.0.0.1:%d" % port, state, root, shiplog, "--rescan", "300ms",
                       "--timeout", "100000", "--retries", "0")
    held = recv(front)  # the shipper has read the first life's start...
    check(b'"startTime":%d' % T0 in held[-1], "the first request is the start: %r" % held[-1])

    # ... and Kyuubi restarts the same day before kjournald answers: the file
    # is truncated and written again, same inode, same size.
    ino = os.stat(info).st_ino
    w.crash()
    w.start(T0 + 3600000)
    check(w.path("kyuubi_server_info", T0 + 3600000) == info, "the same day's file")
    check(os.stat(info).st_ino == ino and os.path.getsize(info) == size,
          "written again in place, %d bytes as before" % size)
    relay(held)

    def both():
        pump()
        return starts() >= {T0, T0 + 3600000}
    kjtest.wait_for("the restart's start in the journal", both)
    check("how=rewritten" in shiplib.read(shiplog), "the shipper saw the file written again")
    p.send_signal(signal.SIGTERM)

    def stopped():
        pump()
        return p.poll() is not None
    kjtest.wait_for("the shipper to stop", stopped)
    check(p.returncode == 0, "SIGTERM: exit 0, got %d" % p.returncode)
    d.stop()
    check(not shiplib.leaks([out]), "secrets leaked: %s" % shiplib.leaks([out]))
    print("ok: a day file written again in place while its acknowledgement was held is "
          "shipped again")
finally:
    for proc in (p, d.proc):
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    front.close()
    back.close()
