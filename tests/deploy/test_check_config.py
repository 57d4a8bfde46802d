"""--version and --check-config of every program (issue 16, items 1 and 2).

--version: every program prints the project's version (CMakeLists.txt's
project(VERSION)). --check-config: the flags and the configuration they name
(endpoints, CURVE files, the --metrics address, the kubeconfig, the journal's
directory) are checked, exit 0 or the usual exit code with a message naming
the thing; nothing is created, bound or connected (a port in use is no
error, the journal and an ipc socket's directory are not created).
"""
import os
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.environ.get("KJ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")), "tests"))
import kjtest  # noqa: E402

failures = []


def prog(name):
    try:
        return kjtest.program(name)
    except FileNotFoundError:
        return os.path.join(kjtest.BUILD, "tools", "kjournal", name)


def run(argv, env=None, cwd=None):
    e = dict(os.environ)
    for k in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KJOURNAL_JOURNAL",
              "KJOURNAL_ENDPOINT"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
                          cwd=cwd, timeout=kjtest.DEADLINE)


def expect(argv, code, says=None, env=None, stream="any"):
    r = run(argv, env)
    out = r.stdout + r.stderr
    ok = r.returncode == code and (says is None or re.search(says, out))
    print("%s %s -> %d %s" % ("ok  " if ok else "FAIL", " ".join(os.path.basename(a) if i == 0 else a
                                                              for i, a in enumerate(argv)),
                                 r.returncode, out.strip().replace("\n", " | ")))
    if not ok:
        failures.append("%s: exit %d (want %d)%s: %s" % (" ".join(argv), r.returncode, code,
                                                         " and /%s/" % says if says else "", out.strip()))
    return r


def main():
    with open(os.path.join(kjtest.SOURCE, "CMakeLists.txt")) as f:
        version = re.search(r"project\(kjournal VERSION ([0-9.]+)", f.read()).group(1)
    d = kjtest.tmpdir("kjtest-checkcfg-")
    kjd, kj = prog("kjournald"), prog("kjournal")

    # --version: one string everywhere
    for name, argv in (("kjournald", [kjd]), ("kjournal", [kj]), ("kube-sim", [prog("kube-sim")]),
                       ("kjournal publish", [kj, "publish"]), ("kjournal keygen", [kj, "keygen"]),
                       ("kjournal recover", [kj, "recover"]), ("kjournal sessions", [kj, "sessions"]),
                       ("kjournal publish", [prog("kjournal-publish")])):
        expect(argv + ["--version"], 0, r"^%s %s\n$" % (re.escape(name), re.escape(version)))
    with open(os.path.join(kjtest.BUILD, "kjournal.pc")) as f:
        kjtest.check("Version: %s\n" % version in f.read(), "kjournal.pc carries another version")

    # the files a good configuration names
    keys = os.path.join(d, "keys")
    allow = os.path.join(d, "allow")
    os.makedirs(keys)
    os.makedirs(allow)
    for p in (os.path.join(keys, "server"), os.path.join(keys, "client")):
        kjtest.check(run([kj, "keygen", p]).returncode == 0, "keygen " + p)
    os.rename(os.path.join(keys, "client.pub"), os.path.join(allow, "client.pub"))
    kc = os.path.join(d, "kubeconfig")
    with open(kc, "w") as f:
        f.write("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n"
                "  cluster: {server: 'https://127.0.0.1:6443'}\nusers:\n- name: u\n  user: {token: t}\n"
                "contexts:\n- name: c\n  context: {cluster: k, user: u, namespace: kyuubi}\n")
    badkc = os.path.join(d, "bad-kubeconfig")
    with open(badkc, "w") as f:
        f.write("apiVersion: v1\nkind: Config\nclusters: [\n")
    execkc = os.path.join(d, "exec-kubeconfig")
    with open(execkc, "w") as f:
        f.write("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n"
                "  cluster: {server: 'https://127.0.0.1:6443'}\nusers:\n- name: u\n"
                "  user: {exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}}\n"
                "contexts:\n- name: c\n  context: {cluster: k, user: u}\n")
    garbage_key = os.path.join(d, "garbage.key")
    with open(garbage_key, "w") as f:
        f.write("not a key\n")
    journal = os.path.join(d, "j", "journal.db")
    os.makedirs(os.path.dirname(journal))
    sockdir = os.path.join(d, "run", "kjournal")

    # a port in use: --check-config binds nothing, so it is no error
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    base = [kjd, "--journal", journal, "--check-config"]
    expect(base + ["--listen", "tcp://127.0.0.1:%d" % port, "--metrics", "127.0.0.1:%d" % port,
                   "--listen", "ipc://" + os.path.join(sockdir, "k.sock")], 0,
           r"^kjournald: configuration ok: .*reconciler off \(no Kubernetes configuration\)")
    busy.close()
    expect(base + ["--curve-secret-key", os.path.join(keys, "server.key"), "--curve-allow", allow,
                   "--kubeconfig", kc], 0, r"curve on \(1 allowed keys\).*reconciler on: server https://127.0.0.1:6443")
    expect(base + ["--no-reconcile", "--kubeconfig", "/nonexistent"], 0, r"reconciler off \(--no-reconcile\)")
    sa = os.path.join(d, "sa")
    os.makedirs(sa)
    incluster = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443", "KJ_KUBE_SA_DIR": sa}
    expect(base, 2, r"service-account token .* does not exist", env=incluster)
    for name in ("token", "ca.crt", "namespace"):
        with open(os.path.join(sa, name), "w") as f:
            f.write("kyuubi\n")
    expect(base, 0, r"reconciler on: server https://10.0.0.1:443 from in-cluster", env=incluster)
    expect([kjd, "--check-config", "--help"], 0, r"usage: kjournald")
    kjtest.check(not os.path.exists(journal), "--check-config created the journal")
    kjtest.check(not os.path.exists(sockdir), "--check-config created the socket's directory")
    kjtest.check(os.listdir(os.path.dirname(journal)) == [], "--check-config left files beside the journal")

    # and what it refuses, with the usual exit codes
    expect(base + ["--bogus"], 2, r"unknown option '--bogus'")
    expect(base + ["--batch-max", "0"], 2, r"batch-max")
    expect(base + ["--listen", "udp://1.2.3.4:5"], 2, r"endpoint 'udp://1.2.3.4:5': expected tcp://HOST:PORT or ipc://PATH")
    expect(base + ["--listen", "tcp://127.0.0.1:99999"], 2, r"'99999' is not a port")
    expect(base + ["--listen", "tcp://nohostport"], 2, r"expected tcp://HOST:PORT")
    expect(base + ["--listen", "ipc://@abstract"], 2, r"abstract")
    expect(base + ["--metrics", "localhost"], 2, r"--metrics 'localhost': expected ADDR:PORT")
    expect(base + ["--metrics", "example.com:80"], 2, r"not a numeric ADDR:PORT")
    expect(base + ["--curve-secret-key", os.path.join(keys, "server.key")], 2, r"go together")
    expect(base + ["--curve-secret-key", os.path.join(d, "missing.key"), "--curve-allow", allow], 1,
           r"cannot read key '.*missing.key'")
    expect(base + ["--curve-secret-key", garbage_key, "--curve-allow", allow], 2, r"does not hold a 40-character Z85 key")
    expect(base + ["--curve-secret-key", os.path.join(keys, "server.key"), "--curve-allow",
                   os.path.join(d, "noallow")], 1, r"cannot open CURVE allow directory")
    expect(base + ["--kubeconfig", os.path.join(d, "missing-kubeconfig")], 2, r"does not exist")
    expect(base + ["--kubeconfig", badkc], 2, r"bad Kubernetes configuration")
    expect(base + ["--kubeconfig", execkc], 2, r"credential plugin")
    expect([kjd, "--journal", os.path.join(d, "nodir", "j.db"), "--check-config"], 3,
           r"its directory '.*nodir' does not exist")

    # kjournal: every command parses through kj_cli_parse or kj_opts_parse
    expect([kj, "sessions", "--journal", journal, "--check-config"], 0, r"kjournal sessions: configuration ok")
    expect([kj, "events", "--since", "-1h", "--check-config"], 0, r"configuration ok")
    expect([kj, "sessions", "-o", "xml", "--check-config"], 2, r"bad value 'xml'")
    expect([kj, "events", "--since", "someday", "--check-config"], 2, r"bad time 'someday' for --since")
    expect([kj, "show", "--check-config", "--bogus"], 2, r"unknown option")
    expect([kj, "publish", "--check-config"], 0, r"kjournal publish: configuration ok: endpoint tcp://127.0.0.1:5680, curve off")
    expect([kj, "publish", "--check-config", "--endpoint", "ipc://" + os.path.join(d, "x.sock"),
            "--curve-server-key", os.path.join(keys, "server.pub"), "--curve-secret-key",
            os.path.join(keys, "client.key")], 0, r"curve on")
    expect([kj, "publish", "--check-config", "--endpoint", "foo"], 2, r"endpoint 'foo'")
    expect([kj, "publish", "--check-config", "--curve-server-key", os.path.join(keys, "server.pub")], 2,
           r"both the server key and our secret key")
    expect([kj, "publish", "--check-config", "--curve-server-key", os.path.join(d, "none.pub"),
            "--curve-secret-key", os.path.join(keys, "client.key")], 3, r"cannot read key")
    # kjournal ship: publish's endpoint and key checks, ROOT, the state file
    events = os.path.join(d, "events")
    os.makedirs(events)
    shipdir = os.path.join(d, "ship")
    os.makedirs(shipdir)
    state = os.path.join(shipdir, "state")
    ship = [kj, "ship", "--check-config", "--state", state]
    expect(ship + ["file://" + events], 0,
           r"kjournal ship: configuration ok: root %s, endpoint tcp://127.0.0.1:5680, curve off" % re.escape(events))
    expect(ship + ["--endpoint", "ipc://" + os.path.join(d, "x.sock"), "--curve-server-key",
                   os.path.join(keys, "server.pub"), "--curve-secret-key", os.path.join(keys, "client.key"),
                   events + "/"], 0, r"curve on")
    expect(ship + ["--endpoint", "foo", events], 2, r"endpoint 'foo'")
    expect(ship + ["--endpoint", "tcp://127.0.0.1:99999", events], 2, r"'99999' is not a port")
    expect(ship + ["--curve-server-key", os.path.join(keys, "server.pub"), events], 2,
           r"both the server key and our secret key")
    expect(ship + ["--curve-server-key", os.path.join(d, "none.pub"), "--curve-secret-key",
                   os.path.join(keys, "client.key"), events], 3, r"cannot read key")
    expect(ship + ["--curve-server-key", garbage_key, "--curve-secret-key", os.path.join(keys, "client.key"),
                   events], 2, r"does not hold a 40-character Z85 key")
    expect(ship + [os.path.join(d, "no-events")], 3, r"no directory '.*no-events'")
    expect(ship + ["file://" + garbage_key], 3, r"no directory '.*garbage.key'")  # a file, not a directory
    expect(ship + ["s3://bucket/events"], 2, r"neither a local path nor a file:///path URI")
    expect(ship + [], 2, r"expected one ROOT")
    expect([kj, "ship", "--check-config", events], 2, r"--state PATH is required")
    expect([kj, "ship", "--check-config", "--state", os.path.join(d, "nostate", "state"), events], 3,
           r"--state '.*nostate/state': its directory '.*nostate' does not exist")
    expect(ship + ["--max-line", "1", events], 2, r"max-line")
    kjtest.check(os.listdir(shipdir) == [], "ship --check-config wrote beside the state file: %s" % os.listdir(shipdir))
    with open(state, "w") as f:
        f.write("not a state file\n")
    expect(ship + [events], 6, r"state file damaged")
    os.unlink(state)

    expect([kj, "recover", "--check-config", "--kubeconfig", kc, "--journal", journal], 0,
           r"kjournal recover: configuration ok: server https://127.0.0.1:6443")
    expect([kj, "recover", "--check-config", "--journal", journal], 2, r"no Kubernetes configuration")
    expect([kj, "recover", "--check-config", "--kubeconfig", badkc], 2, r"kubeconfig")
    expect([kj, "keygen", "--check-config", os.path.join(d, "nokey")], 0, r"flags ok")
    kjtest.check(not os.path.exists(os.path.join(d, "nokey.key")), "keygen --check-config wrote a key")
    expect([prog("kube-sim"), "--check-config", "--listen", "127.0.0.1:0"], 0, r"kube-sim: flags ok")
    expect([prog("kube-sim"), "--check-config", "--error-rate", "500"], 2, r"error-rate")
    kjtest.check(not os.path.exists(journal), "a --check-config created the journal")

    if failures:
        print("\n%d failure(s):\n  %s" % (len(failures), "\n  ".join(failures)), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
