"""Crash test: publishers send continuously (pyzmq Lazy Pirate clients and
kj_publisher processes); kjournald is killed with SIGKILL at random moments
and restarted, several times. Afterwards every acknowledged event_id is in
the journal exactly once, nothing was stored that was not sent, and verify
passes."""
import json
import os
import shutil
import random
import subprocess
import threading
import time

import ingestlib as L
import kjtest
import zmq

SEED = 20261129
KILLS = 5
# How long a publisher waits for an answer before it sends the same request
# again: long enough for a busy machine to answer (a shorter wait only adds
# duplicates to the load), short enough to get past a killed daemon soon.
RETRY_MS = 5000
rng = random.Random(SEED)
work = kjtest.tmpdir("kj-crash-")
d = L.Daemon(work).start()
stop = threading.Event()
acked = set()
sent = set()
lock = threading.Lock()


def pyzmq_publisher(k):
    """A Lazy Pirate DEALER client: same request (same event ids) until acked."""
    ctx = zmq.Context()
    n = 0
    while not stop.is_set():
        batch = [L.event("py%d-%d" % (k, n + i), "py%d-s%d" % (k, (n + i) % 20), t=L.T0 + n + i)
                 for i in range(5)]
        n += 5
        body = json.dumps({"events": batch}).encode()
        with lock:
            sent.update(e["event_id"] for e in batch)
        for attempt in range(200):
            s = L.connect(d.endpoint, zmq.DEALER, timeout_ms=RETRY_MS, ctx=ctx)
            s.send_multipart([b"r%d" % n, b"", body])
            try:
                f = s.recv_multipart()
            except zmq.Again:
                s.close()
                continue
            s.close()
            r = json.loads(f[-1])
            if not r.get("ok"):
                time.sleep(0.05)
                continue
            with lock:
                for x in r["results"]:
                    if x["status"] in ("stored", "duplicate"):
                        acked.add(x["event_id"])
            break
    ctx.term()


threads = [threading.Thread(target=pyzmq_publisher, args=(k,)) for k in range(3)]
for t in threads:
    t.start()
bursts = []
burst_dir = os.path.join(kjtest.BUILD, "tests", "e2e")
for k in range(2):
    out = open(os.path.join(work, "burst%d.out" % k), "w")
    bursts.append((subprocess.Popen([os.path.join(burst_dir, "publish_burst"), d.endpoint, "c%d" % k, "20000",
                                     str(RETRY_MS)],
                                    stdout=out, stderr=subprocess.DEVNULL), out, k))


def acks_after(n):
    """Waits until the publishers have more than n acknowledgements: the
    daemon serves them (the sleeps below only vary when a kill lands)."""
    def more():
        with lock:
            return len(acked) > n
    kjtest.wait_for("an acknowledgement after %d" % n, more)


try:
    for i in range(KILLS):
        acks_after(len(acked))
        time.sleep(rng.uniform(0.3, 1.5))
        d.kill()
        print("kill %d: acked so far %d" % (i + 1, len(acked)))
        time.sleep(rng.uniform(0.05, 0.4))
        d.start()
    # a graceful stop under load: the batch in hand is committed and acked, exit 0
    acks_after(len(acked))
    code = d.stop()
    L.check(code == 0, "SIGTERM under load: exit 0, got %r" % code)
    d.start()
    acks_after(len(acked))
finally:
    stop.set()
    for t in threads:
        t.join(5 * kjtest.DEADLINE)
for p, out, k in bursts:
    try:
        p.wait(5 * kjtest.DEADLINE)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    out.close()
    with open(out.name) as f:
        ids = [l.split()[1] for l in f if l.startswith("acked ")]
    acked.update(ids)
    sent.update("c%d-%d" % (k, i) for i in range(20000))
    print("publish_burst %d: exit %d, %d acked" % (k, p.returncode, len(ids)))
code = d.stop()
L.check(code == 0, "final SIGTERM exit 0, got %r" % code)

rows = L.journal_rows(d.journal, "SELECT event_id FROM events")
stored = [r[0] for r in rows]
L.check(len(stored) == len(set(stored)), "no event stored twice")
missing = acked - set(stored)
L.check(not missing, "%d acknowledged events are missing, e.g. %r" % (len(missing), sorted(missing)[:5]))
L.check(set(stored) <= sent, "only sent events are stored")
rc, out = L.verify(d.journal)
L.check(rc == 0, "verify: " + out)
print("ok: %d kills, %d acknowledged, %d stored, all acknowledged present once (%s)"
      % (KILLS, len(acked), len(stored), out.strip()))
shutil.rmtree(work, ignore_errors=True)  # kept on failure, for a look
