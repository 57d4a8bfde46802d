#!/usr/bin/env python3
"""kjournal ship (issue 12): a SIGTERM as soon as the shipper says it is
following stops it cleanly (exit 0, its progress line), every time.

The bug: SIGTERM and SIGINT were blocked (for the signalfd) only after the
publisher had started ZeroMQ's threads, which inherit the mask of the thread
that creates them; one that had not run yet (libzmq blocks every signal
first thing in its threads) could take the SIGTERM with its default action and
kill the shipper (exit -15), a few times in a hundred under ASan. It needs a
start followed at once by a SIGTERM, so the test makes many."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ingestlib  # noqa: E402,F401 (puts kjtest on the path)
import kjtest  # noqa: E402
import shiplib  # noqa: E402

check = kjtest.check
ROUNDS = 100
work = kjtest.tmpdir("kjship-sigterm-")
root = os.path.join(work, "events")
os.makedirs(root)
state = os.path.join(work, "ship.state")
p = None
try:
    for i in range(ROUNDS):
        log = os.path.join(work, "ship-%d.log" % i)
        # nothing listens there: the shipper follows all the same
        p = shiplib.follow("tcp://127.0.0.1:9", state, root, log, "--rescan", "100ms",
                           "--progress", "1h")
        kjtest.wait_for("the shipper to follow",
                        lambda: "msg=following " in shiplib.read(log), every=0.001)
        rc = kjtest.stop(p, signal.SIGTERM)
        check(rc == 0, "round %d: SIGTERM right after 'following': exit 0, got %d" % (i, rc))
        check("msg=progress " in shiplib.read(log), "round %d: the last progress line" % i)
    print("ok: %d shippers stopped by a SIGTERM as soon as they followed, each exit 0" % ROUNDS)
finally:
    if p is not None and p.poll() is None:
        p.kill()
        p.wait()
