#!/usr/bin/env python3
"""kube-sim's watch against the recordings of a real kube-apiserver
(watch-pods-bookmark.jsonl and the fixtures README's watch notes): bookmarks
when asked, MODIFIED (deletionTimestamp) before DELETED for a graceful delete,
replay from an old resourceVersion within the window, an in-stream ERROR 410
beyond it, timeoutSeconds; and the watch faults (watch_drop_rate,
watch_end_after) by flag and by POST /_sim/faults."""
import json
import os
import socket
import time

from simtest import FIXTURES, Sim, concurrently, ok, pod, wait_for
import kjtest
from kjtest import check

NS = "/api/v1/namespaces/kyuubi/pods"


def recording(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return [json.loads(line) for line in f if line.strip()]


def list_rv(sim):
    st, body, _ = sim.get(NS)
    check(st == 200, "list: %s" % st)
    return body["metadata"]["resourceVersion"]


def watch(sim, query, timeout=kjtest.DEADLINE):
    """The events of a whole watch (it must end by itself)."""
    t0 = time.time()
    st, body, _ = sim.get(NS + "?" + query)
    check(st == 200, "watch %s: %s %r" % (query, st, body))
    text = body if isinstance(body, str) else json.dumps(body) if body else ""
    evs = [json.loads(x) for x in text.splitlines() if x.strip()]
    return evs, time.time() - t0


class Stream:
    """A watch read as it arrives (raw socket, HTTP/1.1 chunked)."""

    def __init__(self, sim, query):
        self.s = socket.create_connection(("127.0.0.1", sim.port))
        self.s.sendall(("GET %s?%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (NS, query)).encode())
        self.s.settimeout(kjtest.DEADLINE)
        self.data = b""
        self.closed = False

    def events(self):
        from test_semantics import dechunk
        return [json.loads(x) for x in dechunk(self.data).split(b"\n")[:-1] if x.strip()]

    def read_until(self, cond):
        while not cond(self.events()) and not self.ended_cleanly():
            chunk = self.s.recv(65536)
            if not chunk:
                self.closed = True
                return
            self.data += chunk

    def ended_cleanly(self):
        return self.data.endswith(b"0\r\n\r\n")

    def close(self):
        self.s.close()


def test_like_the_recording():
    """The recording's scenario: one pod label-patched, another (unscheduled)
    deleted, a watch from the list's version with bookmarks."""
    rec = recording("watch-pods-bookmark.jsonl")
    with Sim() as sim:
        sim.request("POST", NS, pod("w3", {"kyuubi-unique-tag": "w3"}))
        sim.request("POST", NS, pod("w4", {"kyuubi-unique-tag": "w4"}))
        rv = list_rv(sim)
        w = Stream(sim, "watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=2" % rv)
        sim.request("PATCH", NS + "/w3", {"metadata": {"labels": {"x": "y"}}},
                    ctype="application/merge-patch+json")
        sim.request("DELETE", NS + "/w4")
        w.read_until(lambda evs: False)  # to the end of the stream
        evs = w.events()
        w.close()
        check(w.ended_cleanly(), "the stream ends with its last chunk")
        got = [(e["type"], e["object"]["metadata"].get("name")) for e in evs]
        want = [(e["type"], e["object"]["metadata"].get("name")) for e in rec]
        check(got == want, "events %s, recorded %s" % (got, want))
        check("deletionTimestamp" in evs[1]["object"]["metadata"], "MODIFIED carries deletionTimestamp")
        check(evs[1]["object"]["metadata"]["deletionGracePeriodSeconds"] == 0, "grace 0 (unscheduled)")
        bm, rbm = evs[-1]["object"], rec[-1]["object"]
        check(set(bm.keys()) == set(rbm.keys()) and set(bm["metadata"].keys()) == set(rbm["metadata"].keys())
              and bm["spec"] == rbm["spec"], "BOOKMARK shaped as recorded: %s vs %s" % (bm, rbm))
        check(bm["metadata"]["resourceVersion"] == evs[2]["object"]["metadata"]["resourceVersion"],
              "the bookmark is where the watch got to")
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs[:3]]
        check(rvs == sorted(rvs) and len(set(rvs)) == 3, "versions grow: %s" % rvs)
        # no bookmarks unless asked
        evs, took = watch(sim, "watch=1&resourceVersion=%s&timeoutSeconds=1" % rv)
        check([e["type"] for e in evs] == ["MODIFIED", "MODIFIED", "DELETED"], "no bookmark: %s" % evs)
        check(took >= 0.8, "timeoutSeconds honoured (%.2fs)" % took)
        # a bookmark asked of a watch from "now": after the synthetic ADDED
        evs, _ = watch(sim, "watch=1&allowWatchBookmarks=true&timeoutSeconds=1")
        check([e["type"] for e in evs] == ["ADDED", "BOOKMARK"], "ADDED then BOOKMARK: %s" % evs)
    ok("watch as recorded: MODIFIED, MODIFIED (deletionTimestamp), DELETED, BOOKMARK before the end")


def test_replay_and_expired():
    n = 9000  # beyond the event window kube-sim keeps (8192 events)
    seed = [pod("s%05d" % i, {"kyuubi-unique-tag": "s%d" % i}) for i in range(n)]
    with Sim(seed=seed) as sim:
        rv = int(list_rv(sim))
        # within the window: every change since then, in order
        since = rv - 250
        evs, _ = watch(sim, "watch=1&resourceVersion=%d&timeoutSeconds=1" % since)
        check(len(evs) == 250 and all(e["type"] == "ADDED" for e in evs), "replayed %d" % len(evs))
        check(int(evs[0]["object"]["metadata"]["resourceVersion"]) == since + 1, "from the next version")
        # beyond it: an ERROR event with a 410 Expired Status in a 200 stream
        evs, took = watch(sim, "watch=1&resourceVersion=2&timeoutSeconds=30")
        check(len(evs) == 1 and evs[0]["type"] == "ERROR", "in-stream error: %s" % evs)
        st = evs[0]["object"]
        check(st["kind"] == "Status" and st["code"] == 410 and st["reason"] == "Expired"
              and "too old resource version" in st["message"], "410 Expired Status: %s" % st)
        check(took < 20, "the stream ends after the error")
    ok("watch: replay from an old resourceVersion within the window, ERROR 410 Expired beyond it")


def test_faults():
    with Sim("--watch-end-after", "1") as sim:
        f = sim.get("/_sim/faults", token=False)[1]
        check(f["watch_end_after"] == 1 and f["watch_drop_rate"] == 0, "flags: %s" % f)
        sim.request("POST", NS, pod("f1", {"kyuubi-unique-tag": "f1"}))
        evs, took = watch(sim, "watch=1&allowWatchBookmarks=true&timeoutSeconds=60")
        check(took < 30 and [e["type"] for e in evs] == ["ADDED", "BOOKMARK"],
              "ended early (%.1fs), cleanly, with a bookmark: %s" % (took, evs))
        check(sim.stats()["faults"]["watch_ended_early"] >= 1, "counted")
        # dropped streams: the connection closes without the final chunk
        sim.faults(watch_end_after=0, watch_drop_rate=100)
        w = Stream(sim, "watch=1&timeoutSeconds=60")
        t0 = time.time()
        w.read_until(lambda evs: False)
        w.close()
        check(w.closed and not w.ended_cleanly() and time.time() - t0 < 30, "cut: %r" % w.data[-40:])
        check(sim.stats()["faults"]["watch_dropped"] >= 1, "counted")
        st, body, _ = sim.request("DELETE", "/_sim/faults", token=False)
        check(body["watch_drop_rate"] == 0 and body["watch_end_after"] == 0, "cleared: %s" % body)
        # the same validator as every fault
        st, body, _ = sim.request("POST", "/_sim/faults", {"watch_drop_rate": 101}, token=False)
        check(st == 400 and body["message"] == "watch_drop_rate: want a percentage from 0 to 100", "%s" % body)
    ok("watch faults: watch_end_after ends streams early (cleanly), watch_drop_rate cuts them; flag and POST")


concurrently(test_like_the_recording, test_replay_and_expired, test_faults)
print("all watch semantics ok")
