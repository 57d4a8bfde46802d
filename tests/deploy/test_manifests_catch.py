"""The manifest check catches what it is for (issue 16): a copy of deploy/
with one fault of each kind planted is refused, each fault named.

The faults: a renamed flag in a container's args, a Role granting a verb no
request needs and one missing a verb the client needs, a probe on a path
kjournald does not serve and one on a port that is not --metrics, an image
tag other than the version, a manifest that does not parse, a unit key
systemd does not know, and a unit whose ExecStart has a bad flag.
"""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.environ.get("KJ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")), "tests"))
import kjtest  # noqa: E402


def plant(path, old, new):
    with open(path) as f:
        s = f.read()
    kjtest.check(old in s, "cannot plant a fault in %s: %r is not there" % (path, old))
    with open(path, "w") as f:
        f.write(s.replace(old, new, 1))


def main():
    d = kjtest.tmpdir("kjtest-deploy-faults-")
    deploy = os.path.join(d, "deploy")
    shutil.copytree(os.path.join(kjtest.SOURCE, "deploy"), deploy)
    y = os.path.join(deploy, "kubernetes", "kjournald.yaml")
    plant(y, "- --listen=tcp://0.0.0.0:5680", "- --listen-on=tcp://0.0.0.0:5680")
    plant(y, 'verbs: ["get", "list", "watch", "patch", "delete"]',
          'verbs: ["get", "list", "watch", "patch", "deletecollection"]')
    plant(y, "path: /readyz", "path: /ready")
    plant(y, "httpGet: {path: /healthz, port: metrics}", "httpGet: {path: /healthz, port: zmq}")
    plant(y, "image: kjournal:", "image: kjournal:0.0.9-")
    with open(os.path.join(deploy, "kubernetes", "broken.yaml"), "w") as f:
        f.write("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n")
    u = os.path.join(deploy, "systemd", "kjournald.service")
    plant(u, "[Service]\n", "[Service]\nRestartSeconds=2\n")
    plant(u, "--namespace kyuubi", "--namespace kyuubi --resync 0s")
    # kjournal ship reading a directory its container or unit does not have
    plant(os.path.join(deploy, "kubernetes", "kyuubi-shipper-sidecar.yaml"),
          "- file:///opt/kyuubi/events\n", "- file:///opt/kyuubi/event\n")
    plant(os.path.join(deploy, "systemd", "kjournal-ship.service"),
          "    file:///var/log/kyuubi/events\n", "    file:///var/log/kyuubi/json\n")
    r = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_manifests.py")],
                       env=dict(os.environ, KJ_DEPLOY_DIR=deploy), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=kjtest.DEADLINE * 5)
    print(r.stdout[-4000:])
    print(r.stderr[-6000:])
    kjtest.check(r.returncode == 1, "test_manifests.py exited %d on a deploy/ with faults" % r.returncode)
    report = r.stderr[r.stderr.find(" problem(s):"):]
    want = [
        r"container kjournald: kjournald refuses its arguments \(exit 2\): .*unknown option '--listen-on'",
        r"Role/kjournald: grants deletecollection core/pods, which no request of the client needs",
        r"Role/kjournald: lacks delete core/pods, which the client's operation table needs",
        r"probes: kjournald answers 404 to /ready",
        r"startupProbe: port 'zmq' is not the --metrics port 9680",
        r"image kjournal:0.0.9-0.1.0: the tag is not the project's version",
        r"broken.yaml: does not parse",
        r"systemd-analyze verify: .*Unknown key 'RestartSeconds'",
        r"kjournald.service: kjournald refuses its ExecStart arguments \(exit 2\): .*resync",
        r"container kjournal-ship: kjournal refuses its arguments \(exit 3\): .*no directory '.*/opt/kyuubi/event'",
        r"kjournal-ship.service: kjournal refuses its ExecStart arguments \(exit 3\): "
        r".*no directory '/var/log/kyuubi/json'",
    ]
    missing = [w for w in want if not re.search(w, report)]
    kjtest.check(not missing, "faults not reported: %s" % missing)
    shutil.rmtree(d, ignore_errors=True)
    print("every planted fault reported")


if __name__ == "__main__":
    main()
