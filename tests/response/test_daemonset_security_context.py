"""The agent as the DaemonSet runs it (issue 20, finding 15), without a cluster: `mamori run`
in a runc container made from deploy/manifests/mamori.yaml's agent container — exactly its
capabilities (all others dropped), no_new_privs (allowPrivilegeEscalation: false), a
read-only root (readOnlyRootFilesystem), the host's pid namespace (hostPID), and its volume
mounts with their readOnly flags; writable only /var/lib/mamori and /run/mamori (scratch
directories here) and the cgroup tree. It must load its probes, alert, terminate and isolate
real containers, and write nothing anywhere else.

What this does not reproduce: the runtime's seccomp profile (RuntimeDefault is made by
containerd or CRI-O from the container's capabilities; deploy/README.md says why it allows
what the agent calls), a private network and cgroup namespace (the container shares the
host's here so the test can reach its metrics port), and the configuration's in-cluster API."""
import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from testbed import runc
from testbed.listener import connects, host_listener
from testbed.waiting import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFEST = os.path.join(ROOT, "deploy", "manifests", "mamori.yaml")
VENV = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))

ISOLATE_RULE = """\
- rule: "Test: isolate me"
  desc: a container opened /tmp/isolate-me
  events: [open]
  condition: container.id exists and not proc.runtime_setup and file.path = /tmp/isolate-me
  output: "%proc.exe opened %file.path"
  severity: high
  tactic: TA0011
  technique: T1071
  action: isolate
"""


def manifest():
    with open(MANIFEST) as f:
        objs = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(f) if o}
    return objs, objs[("DaemonSet", "mamori")]["spec"]["template"]["spec"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the kernel's numbers (linux/capability.h)
CAP_NUMBERS = {"DAC_READ_SEARCH": 2, "KILL": 5, "NET_ADMIN": 12, "SYS_PTRACE": 19,
               "SYS_ADMIN": 21, "SYS_RESOURCE": 24, "PERFMON": 38, "BPF": 39}


def cap_mask(names):
    return sum(1 << CAP_NUMBERS[n] for n in names)


def host_bounding() -> int:
    with open("/proc/self/status") as f:
        return int(f.read().split("CapBnd:")[1].split()[0], 16)


class AgentInRunc:
    """The agent container of the DaemonSet, as runc runs it."""

    def __init__(self, tmp, pod_spec, config_text, policy_text, rules_text):
        self.tmp = tmp
        self.id = f"mamori-agent-sc-{os.getpid()}"
        [c] = pod_spec["containers"]
        self.container = c
        sc = c["securityContext"]
        rootfs = tmp / "rootfs"
        for d in ("usr", "etc", "proc", "dev", "sys", "run", "var/lib", "opt/mamori-test",
                  ROOT.lstrip("/")):
            (rootfs / d).mkdir(parents=True, exist_ok=True)
        for link in ("bin", "lib", "lib64", "sbin"):
            os.symlink(f"usr/{link}", rootfs / link)
        # the ConfigMaps, as kubelet mounts them (read-only)
        cm = tmp / "configmaps"
        (cm / "rules.d").mkdir(parents=True)
        (cm / "policy").mkdir()
        (cm / "mamori.yaml").write_text(config_text)
        (cm / "policy" / "policy.yaml").write_text(policy_text)
        (cm / "rules.d" / "local.yaml").write_text(rules_text)
        self.state, self.run = tmp / "var-lib-mamori", tmp / "run-mamori"
        self.state.mkdir()
        self.run.mkdir()
        volumes = {v["name"]: v for v in pod_spec["volumes"]}
        mounts = [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            # the image's own files: the host's /usr and /etc and this checkout, read-only
            {"destination": "/usr", "type": "bind", "source": "/usr",
             "options": ["rbind", "ro"]},
            {"destination": "/etc", "type": "bind", "source": "/etc",
             "options": ["rbind", "ro"]},
            {"destination": ROOT, "type": "bind", "source": ROOT, "options": ["rbind", "ro"]},
            {"destination": "/opt/mamori-test", "type": "bind", "source": str(cm),
             "options": ["rbind", "ro"]},
        ]
        self.writable = []
        for m in c["volumeMounts"]:
            v = volumes[m["name"]]
            if "configMap" in v:
                continue                          # above, at /opt/mamori-test
            src = v["hostPath"]["path"]
            if src == "/var/lib/mamori":
                src = str(self.state)
            elif src == "/run/mamori":
                src = str(self.run)
            elif not os.path.exists(src):
                continue                          # e.g. /run/containerd on this machine
            if m["mountPath"] in ("/lib/modules", "/usr/src"):
                continue                          # already in /usr (lib -> usr/lib)
            if not m["mountPath"].startswith(("/sys/", "/proc/")):
                (rootfs / m["mountPath"].lstrip("/")).mkdir(parents=True, exist_ok=True)
            ro = bool(m.get("readOnly"))
            if not ro:
                self.writable.append(m["mountPath"])
            mounts.append({"destination": m["mountPath"], "type": "bind", "source": src,
                           "options": ["rbind", "ro" if ro else "rw"]})
        assert sc["capabilities"]["drop"] == ["ALL"]
        # what the manifest adds, less what this machine cannot give (its own bounding set
        # lacks SYS_RESOURCE: the agent then runs without it, as it can on a 5.11+ kernel,
        # where BPF memory is charged to the cgroup instead of RLIMIT_MEMLOCK)
        self.caps = [x for x in sc["capabilities"]["add"]
                     if host_bounding() >> CAP_NUMBERS[x] & 1]
        self.missing = sorted(set(sc["capabilities"]["add"]) - set(self.caps))
        assert self.missing in ([], ["SYS_RESOURCE"]), self.missing
        caps = ["CAP_" + x for x in self.caps]
        self.bundle = tmp / "bundle"
        self.bundle.mkdir()
        env = [f"PATH={VENV}/bin:/usr/local/bin:/usr/bin:/bin", "NODE_NAME=sc-node",
               "PYTHONDONTWRITEBYTECODE=1"]
        config = {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False, "user": {"uid": 0, "gid": 0},
                "args": [f"{VENV}/bin/mamori", "run", "--config",
                         "/opt/mamori-test/mamori.yaml"],
                "env": env, "cwd": "/",
                "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                "noNewPrivileges": sc["allowPrivilegeEscalation"] is False,
            },
            "root": {"path": str(rootfs), "readonly": sc["readOnlyRootFilesystem"]},
            "hostname": "mamori-agent",
            "mounts": mounts,
            "linux": {
                "cgroupsPath": f"mamori-agent-sc/{self.id}",
                # hostPID: no pid namespace; the host's network (see the module's doc)
                "namespaces": [{"type": t} for t in ("mount", "ipc", "uts")],
                "maskedPaths": ["/proc/kcore", "/proc/keys"],
                "readonlyPaths": ["/proc/sysrq-trigger"],
            },
        }
        assert pod_spec["hostPID"] is True
        (self.bundle / "config.json").write_text(json.dumps(config, indent=1))
        self.out = open(tmp / "alerts.jsonl", "wb")
        self.err = open(tmp / "agent.log", "wb")
        self.proc = subprocess.Popen(["runc", "run", "--bundle", str(self.bundle), self.id],
                                     stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=self.err)

    def pid(self):
        r = subprocess.run(["runc", "state", self.id], capture_output=True, text=True)
        return json.loads(r.stdout)["pid"] if r.returncode == 0 else None

    def log(self):
        return (self.tmp / "agent.log").read_text(errors="replace")

    def alerts(self):
        self.out.flush()
        whole = (self.tmp / "alerts.jsonl").read_text().split("\n")[:-1]   # not a cut line
        return [json.loads(x) for x in whole if x.strip()]

    def stop(self):
        subprocess.run(["runc", "kill", self.id, "TERM"], capture_output=True)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            subprocess.run(["runc", "kill", self.id, "KILL"], capture_output=True)
            self.proc.wait(timeout=10)
        subprocess.run(["runc", "delete", "--force", self.id], capture_output=True)
        self.out.close()
        self.err.close()
        return self.proc.returncode


@pytest.fixture
def agent_as_deployed(tmp_path):
    objs, pod_spec = manifest()
    cfg = yaml.safe_load(objs[("ConfigMap", "mamori-config")]["data"]["mamori.yaml"])
    port = free_port()
    # what differs from the cluster: no API server, metrics on the host's loopback, the
    # rule and policy files where this container has them
    cfg["kubernetes"] = {"mode": "off"}
    for section, values in runc.agent_config().items():   # this test process's containers
        cfg.setdefault(section, {}).update(values)
    cfg["metrics"]["listen"] = f"127.0.0.1:{port}"
    cfg["rules"]["paths"] = [os.path.join(ROOT, "rules"), "/opt/mamori-test/rules.d"]
    cfg["response"]["policy"] = "/opt/mamori-test/policy/policy.yaml"
    cfg["output"] = {"path": "-"}
    policy = ("mode: enforce\nincident_window_seconds: 0\noverrides:\n"
              "  - rule: Shadow file read in a container\n    action: terminate\n")
    a = AgentInRunc(tmp_path, pod_spec, yaml.safe_dump(cfg), policy, ISOLATE_RULE)
    a.port = port

    def ready():
        try:
            import urllib.request
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return a.proc.poll() is not None          # it died: stop waiting
    ok = wait_until(ready, 120, 0.2)
    if not ok or a.proc.poll() is not None:
        a.stop()
        pytest.fail(f"the agent did not become ready as deployed:\n{a.log()[-4000:]}")
    yield a
    if a.proc.poll() is None:
        a.stop()


def test_the_agent_works_with_the_daemonset_security_context(agent_as_deployed, containers):
    a = agent_as_deployed
    pid = a.pid()
    status = open(f"/proc/{pid}/status").read()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["NoNewPrivs"].strip() == "1"                   # allowPrivilegeEscalation
    assert int(fields["CapEff"], 16) == cap_mask(a.caps)         # exactly these
    assert int(fields["CapBnd"], 16) == cap_mask(a.caps)
    root = [line.split() for line in open(f"/proc/{pid}/mountinfo")
            if line.split()[4] == "/"][0]
    assert "ro" in root[5].split(",")                            # readOnlyRootFilesystem
    assert sorted(a.writable) == ["/run/mamori", "/sys/fs/cgroup", "/var/lib/mamori"]

    # it detects and terminates
    c = containers()
    c.sh("cat /etc/shadow >/dev/null; sleep 30", check=False)
    assert wait_until(lambda: c.pids() == [], 15)
    # the kill comes before the alert is published (node-local action first): wait for it
    shadow = lambda: [r for r in a.alerts() if r["rule"] == "Shadow file read in a container"]  # noqa: E731
    assert wait_until(shadow, 15)
    [first] = shadow()
    assert (first["response"]["action"], first["response"]["status"]) == ("terminate", "done")
    # ... and isolates (cgroup BPF, with these capabilities)
    n = containers(network=True)
    lsn = host_listener(n.host_ip)
    try:
        assert connects(n)
        n.sh("cat /tmp/isolate-me", check=False)
        assert wait_until(lambda: [r for r in a.alerts() if r["rule"] == "Test: isolate me"],
                          15)
        [iso] = [r for r in a.alerts() if r["rule"] == "Test: isolate me"]
        assert (iso["response"]["action"], iso["response"]["status"]) == ("isolate", "done")
        assert not connects(n)
    finally:
        lsn.close()

    # it wrote only where it may: the journal (and its state) and the socket
    assert os.listdir(a.state / "journal")
    assert (a.run / "mamori.sock").exists()
    log = a.log()
    for problem in ("Read-only file system", "Permission denied", "Operation not permitted"):
        assert problem not in log, log[-3000:]
    assert a.stop() == 0, a.log()[-3000:]
