"""The catalogue of bad inputs (ingest_bad_inputs.json): each gets a clear
error reply, the journal is unchanged, and kjournald keeps serving."""
import json
import os
import shutil

import ingestlib as L
import kjtest
import zmq

MAX = 65536
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "ingest_bad_inputs.json")) as f:
    cases = json.load(f)["cases"]
L.check(len(cases) >= 25, "at least 25 cases")


def frame(spec):
    if isinstance(spec, str):
        return spec.encode()
    if "hex" in spec:
        return bytes.fromhex(spec["hex"])
    g = spec["gen"]
    if g == "deep":
        return b'{"events":' + b"[" * 200 + b"]" * 200 + b"}"
    if g == "oversized":
        return b'{"event_id":"' + b"x" * MAX + b'"}'
    if g == "huge":
        return b'{"event_id":"' + b"x" * (MAX + 200000) + b'"}'
    if g == "over_cap":
        return b'{"event_id":"' + b"x" * (16 * 1024 * 1024 + 100000) + b'"}'
    if g == "eleven":
        return json.dumps({"events": [L.event("x%d" % i, "s") for i in range(11)]}).encode()
    if g == "long_id":
        return json.dumps(L.event("x" * 200, "s")).encode()
    raise ValueError(g)


work = kjtest.tmpdir("kj-bad-")
d = L.Daemon(work, ["--max-message", str(MAX), "--max-events", "10"]).start()
try:
    req = L.connect(d.endpoint)
    L.check(L.request(req, L.event("good-0", "s-good"))["results"][0]["status"] == "stored", "first good event")
    before = L.last_seq(d.journal)
    for c in cases:
        frames = [frame(x) for x in c["frames"]]
        level = c["level"]
        if level == "none":
            # no reply: the server hangs up on the connection (an event to
            # wait for, not a silence of some length)
            reply = L.send_until_hangup(d.endpoint, frames if c.get("socket") == "dealer" else [b""] + frames)
            body = None if reply is None else json.loads(reply[-1])
        elif c.get("socket") == "dealer":
            s = L.connect(d.endpoint, zmq.DEALER)
            s.send_multipart(frames)
            body = json.loads(s.recv_multipart()[-1])
            s.close()
        else:
            s = L.connect(d.endpoint)
            s.send_multipart(frames)
            body = json.loads(s.recv())
            s.close()
        name = c["name"]
        if level == "none":
            L.check(body is None, "%s: no reply expected, got %r" % (name, body))
        elif level == "request":
            L.check(body and body["ok"] is False and body["error"]["code"] == c["code"]
                    and body["error"]["message"], "%s: %r" % (name, body))
        else:
            res = body["results"][0]
            L.check(body["ok"] is True and res["status"] == "rejected" and res["error"]["code"] == c["code"]
                    and c["field"] in res["error"]["message"], "%s: %r" % (name, body))
        L.check(L.last_seq(d.journal) == before, "%s: the journal changed" % name)
        L.check("s3cr3t" not in json.dumps(body), "%s: the reply quotes a secret" % name)
        L.check(d.alive(), "%s: kjournald died" % name)
        # still serving, on a fresh connection
        r = L.request(req, L.event("good-0", "s-good"))
        L.check(r["results"][0]["status"] == "duplicate", "%s: kjournald stopped serving" % name)
        print("ok: %-32s %s" % (name, (body or {}).get("error", (body or {}).get("results", ["dropped"])[0])))
    L.check(L.request(req, L.event("good-1", "s-good"))["results"][0]["status"] == "stored", "last good event")
    L.check(L.last_seq(d.journal)[1] == 2, "exactly the two good events are stored")
finally:
    code = d.stop()
L.check(code == 0, "exit 0 after SIGTERM, got %r" % code)
rc, out = L.verify(d.journal)
L.check(rc == 0, "verify: " + out)
# Server-info cases carry fake secrets (serverConf, serverEnv): none reaches
# the journal, its WAL or the log.
for f in [d.log] + [d.journal + x for x in ("", "-wal", "-shm")]:
    if os.path.exists(f):
        with open(f, "rb") as fh:
            L.check(b"s3cr3t" not in fh.read(), "a secret in %s" % f)
print("ok: %d bad inputs" % len(cases))
shutil.rmtree(work, ignore_errors=True)  # kept on failure, for a look
