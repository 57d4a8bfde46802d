"""Every file in deploy/ checked against the build (issue 16).

deploy/kubernetes/*.yaml, every document of every file:
  - parses (PyYAML), and has apiVersion, kind and metadata.name, or is a
    strategic-merge patch of a workload (spec.template.spec, for kubectl
    patch), whose containers are checked the same way;
  - the kjournal image is tagged with the project's version (kjournald --version,
    which is CMake's project(VERSION));
  - every container of the kjournal image: its command line as Kubernetes
    builds it (command, else the image's ENTRYPOINT; args, else the image's
    CMD when no command is given, read from deploy/image/Containerfile) is
    accepted by the program it starts: the built program runs it with
    --check-config (flags, endpoints, key files, kubeconfig; nothing served).
    Volume mounts become directories of a scratch root (CURVE keys in a
    secret are made with kjournal keygen); a pod with a service account sees
    in-cluster configuration;
  - every Role grants exactly the rules the client's operation table needs
    (kjournald --print-rbac): nothing more, nothing missing; bindings name
    Roles and ServiceAccounts of the manifests;
  - every httpGet probe names a port the container serves metrics on
    (--metrics) and a path kjournald answers 200 (a kjournald of the build
    is asked).
deploy/systemd/*: each unit passes systemd-analyze verify (skipped, saying
so, only when systemd-analyze is absent); its ExecStart is accepted with
--check-config, its StateDirectory/RuntimeDirectory/ConfigurationDirectory
and the ReadOnlyPaths/ReadWritePaths it names (a host's directories the
program reads, like Kyuubi's event log) made in a scratch root.

Files added to deploy/ are checked without a change here.
"""
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.environ.get("KJ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")), "tests"))
import kjtest  # noqa: E402

import yaml  # noqa: E402  (python3-yaml, quickstart.sh deps)

# The deploy/ directory checked: the repository's, or another (the test of this test).
DEPLOY = os.environ.get("KJ_DEPLOY_DIR") or os.path.join(kjtest.SOURCE, "deploy")
IMAGE_NAME = "kjournal"
PROGRAMS = ("kjournald", "kjournal")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}

problems = []


def problem(where, what):
    problems.append("%s: %s" % (where, what))
    print("PROBLEM %s: %s" % (where, what), file=sys.stderr)


def run(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=kjtest.DEADLINE, **kw)


def first_lines(r, n=2):
    """What a program said, the first lines (not a whole usage text)."""
    return " | ".join((r.stderr.strip() or r.stdout.strip()).splitlines()[:n])


def version():
    out = run([kjtest.program("kjournald"), "--version"]).stdout.split()
    kjtest.check(len(out) == 2 and out[0] == "kjournald", "kjournald --version: %r" % out)
    with open(os.path.join(kjtest.SOURCE, "CMakeLists.txt")) as f:
        m = re.search(r"project\(kjournal VERSION ([0-9.]+)", f.read())
    kjtest.check(m and m.group(1) == out[1],
                 "kjournald --version %s is not CMakeLists.txt's project(VERSION)" % out[1])
    for p in ("kjournal", "kube-sim", "kjournal-publish", "kjournal-keygen", "kjournal-recover"):
        try:
            path = kjtest.program(p)
        except FileNotFoundError:
            path = os.path.join(kjtest.BUILD, "tools", "kjournal", p)
        got = run([path, "--version"]).stdout.split()
        kjtest.check(got[-1:] == [out[1]], "%s --version says %r, not %s" % (p, got, out[1]))
    return out[1]


def containerfile():
    """ENTRYPOINT and CMD of the image's last stage (exec form)."""
    entry, cmd = [], []
    with open(os.path.join(DEPLOY, "image", "Containerfile")) as f:
        for line in f:
            m = re.match(r"\s*(ENTRYPOINT|CMD)\s+(\[.*\])\s*$", line)
            if m:
                v = json.loads(m.group(2))
                if m.group(1) == "ENTRYPOINT":
                    entry = v
                else:
                    cmd = v
            elif re.match(r"\s*FROM\s", line, re.I):
                entry, cmd = [], []
    kjtest.check(entry or cmd, "deploy/image/Containerfile: no ENTRYPOINT or CMD in exec form")
    return entry, cmd


def pod_specs(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        yield spec
    elif kind in WORKLOADS:
        pod = dict((spec.get("template") or {}).get("spec") or {})
        # a StatefulSet's volumeClaimTemplates are volumes of its pods
        claims = [{"name": (t.get("metadata") or {}).get("name"), "persistentVolumeClaim": {}}
                  for t in spec.get("volumeClaimTemplates") or []]
        if claims:
            pod["volumes"] = list(pod.get("volumes") or []) + claims
        pod["_pod_name"] = "%s-0" % (doc.get("metadata") or {}).get("name", "pod")
        yield pod
    elif kind == "CronJob":
        yield ((((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {})
               .get("spec") or {})


def image_of(image):
    """('kjournal', '0.1.0') of '[registry/]kjournal:0.1.0'."""
    name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    return name.rsplit("/", 1)[-1], tag


def expand(s, env):
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), s)


def rewrite(arg, mounts):
    """A path under a mount point moved under the scratch root."""
    for mount, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        arg = re.sub(r"(^|=|://)" + re.escape(mount) + r"(?=/|$)", lambda m: m.group(1) + local, arg)
    return arg


def prepare_secrets(argv, secret_mounts, where):
    """Key files named by flags under a secret or configMap mount: made with
    kjournal keygen, as an operator would have made them."""
    keygen = kjtest.program("kjournal")
    for i, a in enumerate(argv):
        m = re.match(r"--(curve-[a-z-]+)(?:=(.*))?$", a)
        if not m:
            continue
        path = m.group(2) if m.group(2) is not None else (argv[i + 1] if i + 1 < len(argv) else "")
        if not any(path == d or path.startswith(d + "/") for d in secret_mounts):
            continue
        if m.group(1) == "curve-allow":
            os.makedirs(path, exist_ok=True)
            if not glob.glob(os.path.join(path, "*.pub")):
                run([keygen, "keygen", os.path.join(path, "client")])
            continue
        if os.path.exists(path):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        prefix = os.path.join(os.path.dirname(path), "gen-" + os.path.basename(path))
        r = run([keygen, "keygen", prefix])
        if r.returncode:
            problem(where, "cannot make a key for %s: %s" % (a, r.stderr.strip()))
            continue
        src = prefix + (".key" if m.group(1) == "curve-secret-key" else ".pub")
        shutil.copy(src, path)
        os.chmod(path, 0o600)


def in_cluster_env(root, pod, ns):
    """What a pod with a service account token sees."""
    if pod.get("automountServiceAccountToken") is False:
        return {}
    sa = os.path.join(root, "sa")
    os.makedirs(sa, exist_ok=True)
    with open(os.path.join(sa, "token"), "w") as f:
        f.write("token-from-the-manifest-test\n")
    with open(os.path.join(sa, "ca.crt"), "w") as f:  # only its presence is checked at start
        f.write("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    with open(os.path.join(sa, "namespace"), "w") as f:
        f.write(ns or "default")
    return {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
            "KJ_KUBE_SA_DIR": sa}


def check_container(where, pod, c, ns, entry, cmd, ver, scratch, probes):
    name, tag = image_of(c.get("image", ""))
    if name != IMAGE_NAME:
        return
    if tag != ver:
        problem(where, "image %s: the tag is not the project's version %s" % (c.get("image"), ver))
    command = c.get("command") or entry
    args = c["args"] if "args" in c else ([] if c.get("command") else cmd)
    argv = [str(a) for a in list(command) + list(args)]
    if not argv:
        problem(where, "no command: neither the container nor the image names one")
        return
    env = {}
    for e in c.get("env") or []:
        if "name" in e:  # the downward API's pod name, as the first pod of the workload has it
            ref = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            env[e["name"]] = pod.get("_pod_name", "pod-0") if ref == "metadata.name" \
                else str(e.get("value", ""))
    argv = [expand(a, env) for a in argv]
    prog = os.path.basename(argv[0])
    if prog not in PROGRAMS:
        problem(where, "runs %r, which is not a program of the image %s" % (argv[0], PROGRAMS))
        return
    root = os.path.join(scratch, re.sub(r"[^A-Za-z0-9_.-]", "_", where))
    os.makedirs(root, exist_ok=True)
    vols = {v.get("name"): v for v in pod.get("volumes") or []}
    mounts, secret_mounts = {}, []
    for vm in c.get("volumeMounts") or []:
        local = os.path.join(root, vm["mountPath"].lstrip("/"))
        os.makedirs(local, exist_ok=True)
        mounts[vm["mountPath"].rstrip("/") or "/"] = local
        v = vols.get(vm.get("name"))
        if v is None:
            problem(where, "volumeMount %r names no volume of the pod" % vm.get("name"))
        elif "secret" in v or "configMap" in v or "projected" in v:
            secret_mounts.append(local)
    local_argv = [rewrite(a, mounts) for a in argv[1:]]
    prepare_secrets(local_argv, secret_mounts, where)
    penv = dict(os.environ)
    for k in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KJ_KUBE_SA_DIR",
              "KJOURNAL_JOURNAL", "KJOURNAL_ENDPOINT"):
        penv.pop(k, None)
    penv["HOME"] = root
    penv.update({k: rewrite(v, mounts) for k, v in env.items()})
    if pod.get("serviceAccountName") or pod.get("serviceAccount"):
        penv.update(in_cluster_env(root, pod, ns))
    full = [kjtest.program(prog)] + local_argv + ["--check-config"]
    r = run(full, env=penv, cwd=root)
    print("%s: %s --check-config -> %d %s%s" % (where, " ".join(shlex.quote(a) for a in argv),
                                                 r.returncode, r.stdout.strip(), r.stderr.strip()))
    if r.returncode != 0:
        problem(where, "%s refuses its arguments (exit %d): %s" % (prog, r.returncode, first_lines(r)))
    # probes: a metrics port of this container, a path kjournald serves
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    metrics_port = None
    for i, a in enumerate(argv):
        m = re.match(r"--metrics(?:=(.*))?$", a)
        if m:
            v = m.group(1) if m.group(1) is not None else (argv[i + 1] if i + 1 < len(argv) else "")
            metrics_port = int(v.rsplit(":", 1)[1]) if ":" in v and v.rsplit(":", 1)[1].isdigit() else None
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        pr = c.get(kind)
        if not pr:
            continue
        hg = pr.get("httpGet")
        if not hg:
            if "exec" in pr:
                problem(where, "%s: exec probes are not checked; use httpGet on --metrics" % kind)
            continue
        port = hg.get("port")
        port = ports.get(port, port) if isinstance(port, str) else port
        if port is None or port != metrics_port:
            problem(where, "%s: port %r is not the --metrics port %r" % (kind, hg.get("port"), metrics_port))
        probes.add(hg.get("path", "/"))


def served(paths, scratch):
    """Asks a kjournald of the build for each probe path: 200 or a problem."""
    if not paths:
        return
    d = os.path.join(scratch, "probe")
    os.makedirs(d, exist_ok=True)
    port = kjtest.free_port()
    p = kjtest.start([kjtest.program("kjournald"), "--journal", os.path.join(d, "j.db"),
                      "--listen", "ipc://" + os.path.join(d, "s", "sock"),
                      "--metrics", "127.0.0.1:%d" % port, "--no-reconcile"],
                     log_path=os.path.join(d, "kjournald.log"))
    try:
        kjtest.wait_port(port, p)
        for path in sorted(paths):
            def get():
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=30) as r:
                        return r.status
                except urllib.error.HTTPError as e:
                    return e.code
            status = kjtest.wait_for("readiness of the probe kjournald", lambda: get() != 503 and get()) \
                if path == "/readyz" else get()
            print("probe path %s -> %s" % (path, status))
            if status != 200:
                problem("probes", "kjournald answers %s to %s" % (status, path))
    finally:
        kjtest.stop(p)


def rbac_rules():
    out = run([kjtest.program("kjournald"), "--print-rbac"])
    kjtest.check(out.returncode == 0, "kjournald --print-rbac failed: " + out.stderr)
    return triples(yaml.safe_load(out.stdout)["rules"])


def triples(rules):
    t = set()
    for r in rules or []:
        for g in r.get("apiGroups") or [""]:
            for res in r.get("resources") or []:
                for v in r.get("verbs") or []:
                    t.add((g, res, v))
    return t


def check_rbac(docs, want):
    roles = {}
    sas = set()
    for where, d in docs:
        md = d.get("metadata") or {}
        if d.get("kind") in ("Role", "ClusterRole"):
            roles[(d["kind"], md.get("name"))] = where
            got = triples(d.get("rules"))
            for t in sorted(got - want):
                problem(where, "grants %s %s/%s, which no request of the client needs" % (t[2], t[0] or "core", t[1]))
            for t in sorted(want - got):
                problem(where, "lacks %s %s/%s, which the client's operation table needs" % (t[2], t[0] or "core", t[1]))
            print("%s: rules %s" % (where, "match the operation table" if got == want else "differ"))
        elif d.get("kind") == "ServiceAccount":
            sas.add((md.get("namespace"), md.get("name")))
    for where, d in docs:
        if d.get("kind") not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        ref = d.get("roleRef") or {}
        if (ref.get("kind"), ref.get("name")) not in roles:
            problem(where, "roleRef %s/%s is no Role of deploy/kubernetes" % (ref.get("kind"), ref.get("name")))
        for s in d.get("subjects") or []:
            if s.get("kind") == "ServiceAccount" and (s.get("namespace"), s.get("name")) not in sas:
                problem(where, "subject ServiceAccount %s/%s is not defined" % (s.get("namespace"), s.get("name")))


def check_kubernetes(ver, scratch):
    files = sorted(glob.glob(os.path.join(DEPLOY, "kubernetes", "*.yaml")) +
                   glob.glob(os.path.join(DEPLOY, "kubernetes", "*.yml")))
    kjtest.check(files, "no manifests in deploy/kubernetes")
    entry, cmd = containerfile()
    docs = []
    for path in files:
        rel = os.path.relpath(path, os.path.dirname(DEPLOY))
        try:
            with open(path) as f:
                loaded = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            problem(rel, "does not parse: %s" % e)
            continue
        for i, d in enumerate(loaded):
            where = "%s[%d] %s/%s" % (rel, i, d.get("kind") if isinstance(d, dict) else "?",
                                      ((d.get("metadata") or {}).get("name") if isinstance(d, dict) else "?"))
            if isinstance(d, dict) and not d.get("kind") and \
                    ((d.get("spec") or {}).get("template") or {}).get("spec"):
                # a strategic-merge patch of a workload (kubectl patch --patch-file):
                # its containers are checked like those of a whole object
                where = "%s[%d] patch" % (rel, i)
                d = dict(d, kind="Deployment", metadata={"name": "patch"})
            elif not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind") or \
                    not (d.get("metadata") or {}).get("name"):
                problem(where, "not a Kubernetes object (apiVersion, kind, metadata.name)")
                continue
            docs.append((where, d))
    probes = set()
    n = 0
    for where, d in docs:
        ns = (d.get("metadata") or {}).get("namespace")
        for pod in pod_specs(d):
            for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
                check_container("%s container %s" % (where, c.get("name")), pod, c, ns, entry, cmd, ver,
                                scratch, probes)
                n += 1
    kjtest.check(n, "no containers found in deploy/kubernetes")
    check_rbac(docs, rbac_rules())
    served(probes, scratch)


def unit_exec(text):
    """The ExecStart= command lines of a unit (continuations joined)."""
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        m = re.match(r"\s*ExecStart\s*=\s*[-@:+!]*(.*)$", line)
        if m and m.group(1).strip():
            out.append(shlex.split(m.group(1)))
    return out


def unit_dirs(text):
    dirs = {}
    for key, base in (("StateDirectory", "/var/lib"), ("RuntimeDirectory", "/run"),
                      ("ConfigurationDirectory", "/etc"), ("CacheDirectory", "/var/cache"),
                      ("LogsDirectory", "/var/log")):
        mode = re.search(r"^\s*%sMode\s*=\s*([0-7]+)\s*$" % key, text, re.M)
        for m in re.finditer(r"^\s*%s\s*=\s*(.+)$" % key, text, re.M):
            for d in m.group(1).split():
                dirs[os.path.join(base, d.split(":")[0])] = int(mode.group(1), 8) if mode else 0o755
    # the host's directories the unit names (a '-' or '+' prefix: missing is no error
    # to systemd; the test makes them, as the host the unit is written for has them)
    for key in ("ReadOnlyPaths", "ReadWritePaths"):
        for m in re.finditer(r"^\s*%s\s*=\s*(.+)$" % key, text, re.M):
            for d in shlex.split(m.group(1)):
                d = d.lstrip("-+")
                if d.startswith("/"):
                    dirs.setdefault(d.rstrip("/") or "/", 0o755)
    return dirs


def check_systemd(scratch):
    units = sorted(glob.glob(os.path.join(DEPLOY, "systemd", "*.service")) +
                   glob.glob(os.path.join(DEPLOY, "systemd", "*.socket")) +
                   glob.glob(os.path.join(DEPLOY, "systemd", "*.timer")))
    kjtest.check(units, "no units in deploy/systemd")
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        print("SKIPPED systemd-analyze verify: systemd-analyze is not installed "
              "(Debian package systemd); the ExecStart checks still run")
    udir = os.path.join(scratch, "units")
    os.makedirs(udir, exist_ok=True)
    for path in units:
        rel = os.path.relpath(path, os.path.dirname(DEPLOY))
        with open(path) as f:
            text = f.read()
        # the programs as installed (/usr/local/bin/...) are the build's here
        local = text
        for prog in PROGRAMS:
            local = re.sub(r"(?<=[=\s])/\S*/bin/%s(?=\s|$)" % prog, kjtest.program(prog), local)
        unit = os.path.join(udir, os.path.basename(path))
        with open(unit, "w") as f:
            f.write(local)
        if analyze:
            r = run([analyze, "verify", unit])
            msg = (r.stdout + r.stderr).strip()
            print("%s: systemd-analyze verify -> %d %s" % (rel, r.returncode, msg))
            if r.returncode != 0 or msg:
                problem(rel, "systemd-analyze verify: %s" % (msg or "exit %d" % r.returncode))
        if not path.endswith(".service"):
            continue
        root = os.path.join(scratch, "root-" + os.path.basename(path))
        mounts = {}
        for d, mode in unit_dirs(text).items():
            mounts[d] = os.path.join(root, d.lstrip("/"))
            os.makedirs(mounts[d], exist_ok=True)
            os.chmod(mounts[d], mode)
        env = dict(os.environ)
        for k in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KJ_KUBE_SA_DIR"):
            env.pop(k, None)
        for m in re.finditer(r"^\s*Environment\s*=\s*(.+)$", text, re.M):
            for kv in shlex.split(m.group(1)):
                k, _, v = kv.partition("=")
                env[k] = v
        if env.get("KUBECONFIG", "").startswith("/"):
            # the operator's kubeconfig: one that loads, at a path of the scratch root
            kc = os.path.join(root, env["KUBECONFIG"].lstrip("/"))
            os.makedirs(os.path.dirname(kc), exist_ok=True)
            with open(kc, "w") as f:
                f.write("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n"
                        "  cluster: {server: 'https://kube.example:6443'}\nusers:\n- name: u\n"
                        "  user: {token: t}\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n")
            env["KUBECONFIG"] = kc
        for argv in unit_exec(text):
            prog = os.path.basename(argv[0])
            if prog not in PROGRAMS:
                continue
            full = [kjtest.program(prog)] + [rewrite(a, mounts) for a in argv[1:]] + ["--check-config"]
            r = run(full, env=env, cwd=root)
            print("%s: %s --check-config -> %d %s%s" % (rel, " ".join(argv), r.returncode, r.stdout.strip(),
                                                        r.stderr.strip()))
            if r.returncode != 0:
                problem(rel, "%s refuses its ExecStart arguments (exit %d): %s" % (prog, r.returncode,
                                                                                   first_lines(r)))


def main():
    scratch = kjtest.tmpdir("kjtest-deploy-")
    try:
        ver = version()
        print("version %s" % ver)
        check_kubernetes(ver, scratch)
        check_systemd(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if problems:
        print("\n%d problem(s):\n  %s" % (len(problems), "\n  ".join(problems)), file=sys.stderr)
        sys.exit(1)
    print("deploy/: every manifest and unit checked")


if __name__ == "__main__":
    main()
