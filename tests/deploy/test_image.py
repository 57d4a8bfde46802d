"""The image (issue 16, item 5): deploy/image/build.sh builds it without a
registry; kjournald runs from it as uid 10001 on a read-only root file system
(no tmpfs either: nothing of the image is written); kjournal ship --once from
the same image (read-only root, uid 10001, its state file on a volume of its
own) ships a Kyuubi-like event log (tests/e2e/kyuubilog.py: sessions in two
day files and a server-info line with its fake s3cr3t- secrets) from a
read-only volume into it, and a second --once finds nothing new; kjournal
publish from the image sends native events; kjournal from the image reads
the sessions back from the journal volume. The secrets are in no journal, WAL,
state file, log or output. Prints the image's size and the build's time; the
image must stay under 40 MiB.

Needs podman, runc and mmdebstrap (quickstart.sh deps) and root (the journal
volume is handed to uid 10001). Exit 77 (skipped) when they are missing.
The base (mmdebstrap) and the build stage's packages are cached between runs
by podman; a cold run downloads them from Debian's archive.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.environ.get("KJ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")), "tests"))
import kjtest  # noqa: E402

sys.path.insert(0, os.path.join(kjtest.SOURCE, "tests", "e2e"))
from kyuubilog import SECRETS, KyuubiLog  # noqa: E402

MAX_MIB = 40
UID = "10001:10001"
T0 = 1764374400000  # 2025-11-29T00:00:00Z
H = 3600000


def skip(why):
    print("SKIPPED: " + why)
    sys.exit(77)


def sh(argv, check=True, timeout=kjtest.DEADLINE, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout, **kw)
    if check and r.returncode:
        print("FAIL: %s -> %d\n%s%s" % (" ".join(argv), r.returncode, r.stdout, r.stderr), file=sys.stderr)
        sys.exit(1)
    return r


def kube_from_image(run, tag, vol, work):
    """kjournal recover --dry-run from the image against kube-sim over TLS with
    a token: the Kubernetes client's libraries (libcurl, OpenSSL, the CA
    file) work in the image as built."""
    certs = os.path.join(work, "certs")
    os.makedirs(certs)
    sh(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", os.path.join(certs, "key.pem"),
        "-out", os.path.join(certs, "cert.pem")])
    with open(os.path.join(certs, "token"), "w") as f:
        f.write("image-test-token\n")
    for n in ("cert.pem", "token"):
        os.chmod(os.path.join(certs, n), 0o644)
    os.chmod(certs, 0o755)
    port_file = os.path.join(work, "kube-sim.port")
    sim = kjtest.start([kjtest.program("kube-sim"), "--listen", "127.0.0.1:0", "--port-file", port_file,
                        "--tls-cert", os.path.join(certs, "cert.pem"), "--tls-key", os.path.join(certs, "key.pem"),
                        "--token", "image-test-token", "--verbose"], os.path.join(work, "kube-sim.log"))
    try:
        def port():
            kjtest.check(sim.poll() is None, "kube-sim exited %s" % sim.returncode)
            try:
                with open(port_file) as f:
                    return f.read().strip()
            except FileNotFoundError:
                return None
        p = int(kjtest.wait_for("kube-sim's port file", port))
        kjtest.wait_port(p, sim)
        r = sh(run + ["-v", "%s:/var/lib/kjournal" % vol, "-v", "%s:/etc/kjournal:ro" % certs,
                      "--entrypoint", "kjournal", tag, "recover", "--dry-run", "--quiet", "-o", "json",
                      "--server", "https://127.0.0.1:%d" % p, "--certificate-authority", "/etc/kjournal/cert.pem",
                      "--token-file", "/etc/kjournal/token", "--namespace", "kyuubi"], check=False)
        print("recover --dry-run from the image -> %d %s%s" % (r.returncode, r.stdout, r.stderr))
        kjtest.check(r.returncode == 0, "kjournal recover from the image failed")
    finally:
        kjtest.stop(sim)
    with open(os.path.join(work, "kube-sim.log")) as f:
        log = f.read()
    kjtest.check('method=GET path="/api/v1/namespaces/kyuubi/pods" code=200' in log,
                 "kube-sim never answered the image's list of pods:\n" + log[-2000:])


def leaks(paths, texts=()):
    """(where, secret) for each secret in the files under paths and in texts."""
    found = []
    for top in paths:
        for d, _, fs in os.walk(top):
            for n in fs:
                try:
                    with open(os.path.join(d, n), "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                found += [(os.path.join(d, n), s) for s in SECRETS if s.encode() in data]
    for i, t in enumerate(texts):
        found += [("output %d" % i, s) for s in SECRETS if s in t]
    return found


def kyuubi_log(root):
    """A Kyuubi server's event log: a STARTED server-info line (serverConf and
    serverEnv with the fake secrets), five sessions of which four closed (one
    a day later, into its start day's file) and one started the next day and
    still open. Returns ({sid: (state, user)}, the number of lines)."""
    w = KyuubiLog(root)
    w.start(T0 + 1 * H)
    want = {}
    for i in range(5):
        sid = "kyuubi-s-%d" % i
        start = T0 + (10 + i) * H + (86400000 if i == 4 else 0)
        w.open_session(sid, "k%d" % i, start)
        w.engine_opened(sid, start + 5000, "spark-app-%d" % i)
        want[sid] = ("open", "k%d" % i)
    for i in range(4):
        sid = "kyuubi-s-%d" % i
        w.close_session(sid, T0 + (86400000 if i == 0 else 0) + (11 + i) * H)
        want[sid] = ("closed", "k%d" % i)
    w.crash()  # the files stay as flushed
    for d, ds, fs in os.walk(root):  # Kyuubi's umask may be tighter: uid 10001 must read them
        os.chmod(d, 0o755)
        for n in fs:
            os.chmod(os.path.join(d, n), 0o644)
    return want, len(w.event_ids()) + 1


def main():
    for p in ("podman", "runc", "mmdebstrap", "openssl"):
        if not shutil.which(p):
            skip("%s is not installed (./quickstart.sh deps installs podman, runc and mmdebstrap)" % p)
    if os.geteuid() != 0:
        skip("needs root: the journal volume is handed to uid 10001")
    with open(os.path.join(kjtest.SOURCE, "CMakeLists.txt")) as f:
        version = re.search(r"project\(kjournal VERSION ([0-9.]+)", f.read()).group(1)
    tag = "kjournal:%s" % version
    work = kjtest.tmpdir("kjtest-image-")
    env = dict(os.environ)
    if not env.get("CONTAINERS_CONF"):
        conf = os.path.join(work, "containers.conf")
        with open(conf, "w") as f:
            f.write('[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n'
                    'cgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
        env["CONTAINERS_CONF"] = conf
    os.environ.update(env)

    t0 = time.monotonic()
    b = subprocess.run([os.path.join(kjtest.SOURCE, "deploy", "image", "build.sh"), "--tag", tag],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=3600)
    took = time.monotonic() - t0
    print(b.stdout[-3000:])
    kjtest.check(b.returncode == 0, "deploy/image/build.sh failed (exit %d)" % b.returncode)
    size = int(sh(["podman", "image", "inspect", "--format", "{{.Size}}", tag]).stdout.strip())
    print("image %s: %.1f MiB, build.sh took %.0f s" % (tag, size / 1048576, took))
    kjtest.check(size < MAX_MIB * 1048576, "image %s is %.1f MiB, over %d MiB" % (tag, size / 1048576, MAX_MIB))
    cfg = json.loads(sh(["podman", "image", "inspect", tag]).stdout)[0]["Config"]
    kjtest.check(cfg.get("User") == UID, "image user is %r, not %s" % (cfg.get("User"), UID))

    # every program of the image says the project's version
    run = ["podman", "run", "--rm", "--network", "host", "--read-only", "--read-only-tmpfs=false",
           "--user", UID]
    for argv in (["--version"], ["--entrypoint", "kjournal", tag, "--version"]):
        out = sh(run + (argv if argv[0] == "--entrypoint" else [tag] + argv)).stdout
        kjtest.check(out.split()[-1:] == [version], "version from the image: %r" % out)
    sh(run + ["--entrypoint", "kjournal", tag, "--help"])

    vol = os.path.join(work, "journal")
    os.makedirs(vol)
    os.chown(vol, 10001, 10001)
    os.chmod(vol, 0o700)
    zport, mport = kjtest.free_port(), kjtest.free_port()
    name = "kjtest-kjournald-%d" % os.getpid()
    sh(["podman", "rm", "-f", name], check=False)
    sh(run[:2] + ["-d", "--name", name] + run[3:] + ["-v", "%s:/var/lib/kjournal" % vol, tag,
       "--journal=/var/lib/kjournal/journal.db", "--listen=tcp://127.0.0.1:%d" % zport,
       "--metrics=127.0.0.1:%d" % mport, "--no-reconcile"])
    try:
        kjtest.check(json.loads(sh(["podman", "inspect", name]).stdout)[0]["HostConfig"]["ReadonlyRootfs"],
                     "the container's root file system is not read-only")

        def ready():
            st = json.loads(sh(["podman", "inspect", name]).stdout)[0]["State"]
            kjtest.check(st["Running"] or st["ExitCode"] == 0,
                         "kjournald in the image exited %s:\n%s" % (st["ExitCode"], sh(["podman", "logs", name]).stderr))
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % mport, timeout=10) as r:
                    return r.status == 200
            except OSError:
                return False
        kjtest.wait_for("kjournald in the image to be ready", ready)

        # kjournal ship --once from the image: the event log read-only, the
        # state file on a volume of its own
        events_dir = os.path.join(work, "events")
        want, n_events = kyuubi_log(events_dir)
        ship_state = os.path.join(work, "ship-state")
        os.makedirs(ship_state)
        os.chown(ship_state, 10001, 10001)
        os.chmod(ship_state, 0o700)
        ship = run + ["-v", "%s:/opt/kyuubi/events:ro" % events_dir, "-v", "%s:/var/lib/kjournal-ship" % ship_state,
                      "--entrypoint", "kjournal", tag, "ship", "--once", "--endpoint", "tcp://127.0.0.1:%d" % zport,
                      "--state", "/var/lib/kjournal-ship/state", "file:///opt/kyuubi/events"]
        outputs = []
        for attempt, stored in (("first", n_events), ("second", 0)):
            r = sh(ship, check=False)
            outputs += [r.stdout, r.stderr]
            print("ship --once (%s) from the image -> %d %s%s" % (attempt, r.returncode, r.stdout, r.stderr))
            kjtest.check(r.returncode == 0, "kjournal ship --once from the image failed")
            m = re.search(r"(\d+) files, (\d+) lines: (\d+) stored, (\d+) duplicate, (\d+) rejected, "
                          r"(\d+) skipped", r.stdout)
            kjtest.check(m and int(m.group(3)) == stored and m.group(5) == m.group(6) == "0",
                         "ship --once (%s): want %d stored, none rejected or skipped: %r" % (attempt, stored, r.stdout))
        kjtest.check(os.path.isfile(os.path.join(ship_state, "state")), "no state file written by the image's shipper")

        # kjournal publish from the image: native events
        events = []
        for i in range(2):
            sid = "img-s-%d" % i
            events.append({"event_id": "img-o-%d" % i, "type": "session_open", "session_id": sid,
                           "time_ms": 1764391200000 + i * 1000, "user": "u%d" % i})
            events.append({"event_id": "img-c-%d" % i, "type": "session_close", "session_id": sid,
                           "time_ms": 1764391200500 + i * 1000})
            want[sid] = ("closed", "u%d" % i)
        data = "".join(json.dumps(e) + "\n" for e in events)
        p = sh(run + ["-i", "--entrypoint", "kjournal", tag, "publish", "--endpoint",
                      "tcp://127.0.0.1:%d" % zport, "--quiet"], input=data, check=False)
        print("publish from the image -> %d %s%s" % (p.returncode, p.stdout, p.stderr))
        kjtest.check(p.returncode == 0 and "4 stored" in p.stderr, "kjournal publish from the image failed")
        outputs += [p.stdout, p.stderr]
        running_leaks = leaks([vol, ship_state])  # the WAL, while kjournald writes it
    finally:
        sh(["podman", "stop", "--time", "60", name], check=False)
        code = sh(["podman", "inspect", "--format", "{{.State.ExitCode}}", name], check=False).stdout.strip()
        logs = sh(["podman", "logs", name], check=False)
        sh(["podman", "rm", "-f", name], check=False)
    print(logs.stderr[-2000:])
    kjtest.check(code == "0", "kjournald in the image stopped with %s" % code)

    # read back with kjournal from the image, as uid 10001, root read-only
    r = sh(run + ["-v", "%s:/var/lib/kjournal" % vol, "--entrypoint", "kjournal", tag, "sessions",
                  "-o", "json"])
    outputs += [r.stdout, r.stderr, logs.stdout, logs.stderr]
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    got = {s["session_id"]: (s["state"], s["user"]) for s in rows}
    kjtest.check(got == want, "sessions read back from the image: %r, want %r" % (got, want))
    v = sh(run + ["-v", "%s:/var/lib/kjournal" % vol, "--entrypoint", "kjournal", tag, "verify"],
           check=False)
    kjtest.check(v.returncode == 0, "kjournal verify from the image: %s%s" % (v.stdout, v.stderr))
    e = sh(run + ["-v", "%s:/var/lib/kjournal" % vol, "--entrypoint", "kjournal", tag, "events", "-o", "json"])
    outputs += [e.stdout, e.stderr]
    ids = {json.loads(line)["event_id"] for line in e.stdout.splitlines() if line.strip()}
    kjtest.check(len(ids) == n_events - 1 + len(events),
                 "events read back from the image: %d, want %d session events" % (len(ids), n_events - 1 + len(events)))
    found = running_leaks + leaks([vol, ship_state], outputs)
    kjtest.check(not found, "the fake secrets leaked: %s" % found)
    kube_from_image(run, tag, vol, work)
    print("image %s: %.1f MiB, build %.0f s; %d Kyuubi events shipped and 4 published from the image, "
          "%d sessions read back, no secret leaked; a recovery pass over TLS from the image"
          % (tag, size / 1048576, took, n_events, len(want)))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
