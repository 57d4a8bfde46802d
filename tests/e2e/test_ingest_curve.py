"""CURVE: a client whose key is in --curve-allow is served; an unknown key, a
plaintext client and a client with the wrong server key are not, and nothing
they send reaches the journal. Keys come from 'kjournal keygen' when it is
built (else pyzmq writes the same format)."""
import json
import os
import shutil
import stat
import subprocess

import ingestlib as L
import kjtest
import zmq

work = kjtest.tmpdir("kj-curve-")
allow = os.path.join(work, "allow")
os.mkdir(allow)
try:
    kj = kjtest.program("kjournal")
except FileNotFoundError:
    kj = None


def keygen(prefix):
    if kj:
        r = subprocess.run([kj, "keygen", prefix], capture_output=True, text=True, timeout=kjtest.DEADLINE)
        L.check(r.returncode == 0, "keygen: " + r.stderr)
        r = subprocess.run([kj, "keygen", prefix], capture_output=True, text=True, timeout=kjtest.DEADLINE)
        L.check(r.returncode != 0, "keygen refuses to overwrite")
    else:
        pub, sec = zmq.curve_keypair()
        fd = os.open(prefix + ".key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, sec + b"\n")
        os.close(fd)
        with open(prefix + ".pub", "wb") as f:
            f.write(pub + b"\n")
    L.check(stat.S_IMODE(os.stat(prefix + ".key").st_mode) == 0o600, "secret key file is 0600")
    with open(prefix + ".pub", "rb") as f:
        pub = f.read().strip()
    with open(prefix + ".key", "rb") as f:
        sec = f.read().strip()
    return pub, sec


server_pub, server_sec = keygen(os.path.join(work, "server"))
good_pub, good_sec = keygen(os.path.join(work, "good"))
bad_pub, bad_sec = keygen(os.path.join(work, "bad"))
other_pub, _ = keygen(os.path.join(work, "other"))
with open(os.path.join(allow, "good.pub"), "wb") as f:
    f.write(good_pub + b"\n")
with open(os.path.join(allow, "README"), "w") as f:
    f.write("only *.pub files count\n")

d = L.Daemon(work, ["--curve-secret-key", os.path.join(work, "server.key"), "--curve-allow", allow]).start()
try:
    s = L.connect(d.endpoint, zmq.DEALER, curve_serverkey=server_pub, curve_publickey=good_pub,
                  curve_secretkey=good_sec)
    s.send_multipart([b"", json.dumps(L.event("allowed-1", "s-curve")).encode()])
    r = json.loads(s.recv_multipart()[-1])
    s.close()
    L.check(r["results"][0]["status"] == "stored", "allowed key served: %r" % r)
    # the others: the handshake fails (an event, not a silence of so long)
    for what, eid, curve in (
            ("unknown key", "unknown-1", dict(curve_serverkey=server_pub, curve_publickey=bad_pub,
                                              curve_secretkey=bad_sec)),
            ("plaintext client", "plain-1", {}),
            ("wrong server key", "wrongserver-1", dict(curve_serverkey=other_pub, curve_publickey=good_pub,
                                                       curve_secretkey=good_sec))):
        got, reply = L.send_refused(d.endpoint, json.dumps(L.event(eid, "s-curve")).encode(), **curve)
        print("%s: %s" % (what, got))
        L.check(got != "handshake succeeded" and reply is None, "%s refused: %s, %r" % (what, got, reply))
    if kj:
        line = json.dumps(L.event("allowed-2", "s-curve")) + "\n"
        r = subprocess.run([kj, "publish", "--endpoint", d.endpoint, "--timeout", str(L.TIMEOUT_MS),
                            "--curve-server-key", os.path.join(work, "server.pub"),
                            "--curve-secret-key", os.path.join(work, "good.key"), "-"],
                           input=line, capture_output=True, text=True, timeout=5 * kjtest.DEADLINE)
        L.check(r.returncode == 0 and "stored allowed-2" in r.stdout, "kjournal publish over CURVE: %r" % r.stdout)
        r = subprocess.run([kj, "publish", "--endpoint", d.endpoint, "--timeout", "300", "--retries", "1",
                            "--curve-server-key", os.path.join(work, "server.pub"),
                            "--curve-secret-key", os.path.join(work, "bad.key"), "-"],
                           input=json.dumps(L.event("unknown-2", "s-curve")) + "\n",
                           capture_output=True, text=True, timeout=kjtest.DEADLINE)
        L.check(r.returncode == 8, "kjournal publish with an unknown key: exit %d" % r.returncode)
    ids = {r[0] for r in L.journal_rows(d.journal, "SELECT event_id FROM events")}
    L.check(ids <= {"allowed-1", "allowed-2"} and "allowed-1" in ids, "only allowed events stored: %r" % ids)
finally:
    code = d.stop()
L.check(code == 0, "exit 0, got %r" % code)
with open(d.log, "rb") as f:
    log = f.read()
L.check(server_sec not in log, "the secret key never reaches the log")
L.check(b"curve allow list loaded" in log and b"keys=1" in log, "one allowed key loaded")
print("ok: curve")
shutil.rmtree(work, ignore_errors=True)  # kept on failure, for a look
