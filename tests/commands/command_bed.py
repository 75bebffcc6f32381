"""What the README-command test runs the documented commands against: the files a user's
examples name (their own rule file, certificates), cgroups of its own, real runc containers
that raise real alerts, and the agent itself, started the way the README starts it
(`sudo make run`, with a configuration of the test's own: `make run CONFIG=...`).

Everything lives in one temp directory and in the cgroup2 directory `mamori-readme/`, which
no other test (and no default configuration) watches: agents other test runs start on the
same machine watch `mamori-test/`, and must not act on these containers.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request

from agent.sensor import cgroups
from testbed.image import build_image
from testbed.runc import Container

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARENT = "mamori-readme"          # this test's container parent, below the cgroup2 root
NODE = "readme-node"
SEVERITIES = ["info", "low", "medium", "high", "critical"]
SHADOW = "Shadow file read in a container"
RECON = "System reconnaissance commands in a container"

# What the docs call `my-rules.yaml`: a team's own rule file, loaded after the defaults.
TEAM_RULE = "Team marker file read"
MY_RULES = f"""# a team's own rules, loaded after the defaults (docs/rules.md)
- rule: {TEAM_RULE}
  desc: A process read the team's marker file (the README-command test).
  events: [open]
  condition: file.path endswith /mamori-readme-marker
  output: "%proc.exe read %file.path"
  severity: low
  tactic: TA0007
  technique: T1083
  action: log
"""

# The response policy of the test's agent: a shadow read in namespace quarantine isolates
# the pod (what `mamori release` undoes); everything else is each rule's own action (log).
POLICY = f"""mode: enforce
overrides:
  - rule: {SHADOW}
    namespace: quarantine
    action: isolate
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(pred, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def make_cgroup(rel: str) -> str:
    d = os.path.join(cgroups.cgroup2_root(), rel.strip("/"))
    os.makedirs(d, exist_ok=True)
    return d


def remove_cgroup(d: str) -> None:
    for _ in range(50):
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


def act_in_cgroup(cgroup_dir: str | None, open_path: str = "", connect_port: int = 0,
                  exec_argv: list[str] | None = None) -> None:
    """A child process (fork, no exec before it has done its part) in cgroup_dir (None: the
    caller's) that opens open_path, connects to 127.0.0.1:connect_port and then execs
    exec_argv, each when given; waits for it."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            if cgroup_dir:
                with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
                    f.write("0")
            if open_path:
                os.close(os.open(open_path, os.O_RDONLY))
            if connect_port:
                s = socket.socket()
                s.connect_ex(("127.0.0.1", connect_port))
                s.close()
            if exec_argv:
                os.execv(exec_argv[0], exec_argv)
        except BaseException:
            code = 1
        os._exit(code)
    os.waitpid(pid, 0)


def write_certs(d: str) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (mutual TLS)."""
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(cn, key, issuer, issuer_key, ca=False, san=None):
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(issuer))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    out = {}

    def write(label, obj):
        path = os.path.join(d, label)
        if isinstance(obj, x509.Certificate):
            data = obj.public_bytes(serialization.Encoding.PEM)
        else:
            data = obj.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        with open(path, "wb") as f:
            f.write(data)
        out[label] = path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("readme-ca", ca_key, "readme-ca", ca_key, ca=True)
    srv_key, cli_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    write("ca.pem", ca)
    write("server.pem", cert("mamori-agent", srv_key, "readme-ca", ca_key, san=[
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]))
    write("server.key", srv_key)
    write("me.pem", cert("readme-user", cli_key, "readme-ca", ca_key))
    write("me.key", cli_key)
    return out


class Streamed:
    """A command that keeps running (the agent, `mamori trace`, `mamori alerts -f`): its
    stdout read line by line as it comes, stderr into a file."""

    def __init__(self, argv: list[str], log: str, env: dict | None = None):
        self.argv, self.log = argv, log
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=open(log, "w"),
                                     text=True, env=env, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def output(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def stderr(self) -> str:
        with open(self.log, errors="replace") as f:
            return f.read()

    def wait_stderr(self, pattern: str, timeout: float) -> re.Match:
        def seen():
            if self.proc.poll() is not None:
                raise AssertionError(f"{' '.join(self.argv)} exited {self.proc.returncode} "
                                     f"before {pattern!r}:\n{self.stderr()[-3000:]}")
            return re.search(pattern, self.stderr())
        return until(seen, timeout, f"{pattern!r} from {' '.join(self.argv)}")

    def interrupt(self, sig=signal.SIGINT, timeout: float = 30) -> int:
        """Ctrl-C (or sig), as a user stops it; its exit code."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{' '.join(self.argv)} did not stop on {sig!r}")
        self._reader.join(timeout=10)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)


def agent_config(work: str, certs: dict[str, str] | None = None,
                 policy: str = "") -> dict:
    """A configuration of the test's own for `mamori run` (the README's `make run` with
    CONFIG=): its own socket, TCP port with mutual TLS, metrics port, journal; watching
    only this test's cgroups; alerts printed on stdout, as `make run` prints them."""
    os.makedirs(work, exist_ok=True)
    sock = f"unix://{work}/run/mamori.sock"
    tcp = f"127.0.0.1:{free_port()}"
    metrics = f"127.0.0.1:{free_port()}"
    listen = [sock] + ([tcp] if certs else [])
    cfg = {"node_name": NODE, "kubernetes": {"mode": "off"},
           "rules": {"paths": [os.path.join(ROOT, "rules")]},
           "sensor": {"watched_cgroups": [PARENT]},
           "context": {"container_parents": [PARENT]},
           "alerts": {"journal_dir": os.path.join(work, "journal")},
           "api": {"listen": listen},
           "metrics": {"listen": metrics},
           "output": {"path": "-"}}
    if certs:
        cfg["api"].update(tls_cert=certs["server.pem"], tls_key=certs["server.key"],
                          tls_client_ca=certs["ca.pem"])
    if policy:
        cfg["response"] = {"policy": policy}
    path = os.path.join(work, "mamori.yaml")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)           # JSON is YAML
    return {"path": path, "unix": sock, "tcp": tcp, "metrics": metrics}


class Agent:
    """`mamori run` as its own process (under make, or directly), with alerts on stdout."""

    def __init__(self, argv: list[str], cfg: dict, work: str):
        self.cfg, self.work = cfg, work
        self.unix, self.tcp, self.metrics = cfg["unix"], cfg["tcp"], cfg["metrics"]
        self.run = Streamed(argv, os.path.join(work, "agent.log"))
        self.pid = None
        try:
            until(self.ready, 240, f"{' '.join(argv)}: /readyz 200 ({self.run.log})", 0.1)
            self.pid = self._mamori_pid()
        except BaseException:
            self.kill()
            raise

    def ready(self) -> bool:
        if self.run.proc.poll() is not None:
            raise AssertionError(f"{' '.join(self.run.argv)} exited "
                                 f"{self.run.proc.returncode}:\n{self.run.stderr()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://{self.metrics}/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def _mamori_pid(self) -> int:
        """The agent itself (below sudo and make): the process running `mamori run` with
        this configuration."""
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if b"run" in argv and self.cfg["path"].encode() in argv and any(
                    a.endswith(b"mamori") for a in argv):
                return int(d)
        raise AssertionError(f"no mamori run process with {self.cfg['path']}")

    def cmdline(self) -> list[str]:
        with open(f"/proc/{self.pid}/cmdline", "rb") as f:
            return [a.decode() for a in f.read().split(b"\0") if a]

    def alerts(self) -> list[dict]:
        """The alerts it printed (one JSON line each), in order."""
        out = []
        for line in self.run.output():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def wait_alert(self, pred, timeout: float = 30, what: str = "an alert") -> dict:
        return until(lambda: next((a for a in self.alerts() if pred(a)), None), timeout,
                     f"{what} on the agent's stdout")

    def kill(self) -> None:
        """After a failure: the agent (found by its configuration, below sudo and make)
        and the command that started it, SIGKILL."""
        try:
            pid = self.pid or self._mamori_pid()
            os.kill(pid, signal.SIGKILL)
        except (AssertionError, ProcessLookupError):
            pass
        self.run.kill()

    def stop(self) -> int:
        """SIGTERM to the agent itself, as a node's shutdown sends it; the exit code of the
        command that started it (make, sudo: theirs follow the agent's)."""
        if self.run.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            rc = self.run.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("the agent did not stop on SIGTERM")
        self.run._reader.join(timeout=10)
        return rc


class Pods:
    """Real runc containers below mamori-readme/, named as a CRI runtime names a pod's
    container (the annotations), so that alerts carry namespace and pod without a cluster."""

    def __init__(self, work: str):
        self.work = work
        self.image = build_image(os.path.join(work, "image"))
        self.made: list[Container] = []
        make_cgroup(PARENT)

    def start(self, namespace: str, pod: str) -> Container:
        c = Container(self.image, os.path.join(self.work, "containers"), annotations={
            "io.kubernetes.cri.sandbox-namespace": namespace,
            "io.kubernetes.cri.sandbox-name": pod,
            "io.kubernetes.cri.container-name": "app",
            "io.kubernetes.cri.image-name": "registry.example/readme/app:1.0"})
        c.cgroup_path = f"{PARENT}/{c.id}"
        self.made.append(c)
        c.start()
        c.started_at = time.monotonic()
        return c

    @staticmethod
    def named(c: Container) -> Container:
        """Once the agent knows the container's pod: it reads the annotations from runc's
        state, which runc writes after making the cgroup, and looks again on an event a
        second later; a container's events before that carry no pod."""
        c.sh("true")
        time.sleep(max(0.0, c.started_at + 1.3 - time.monotonic()))
        c.sh("true")
        return c

    def stop_all(self) -> None:
        for c in self.made:
            c.stop()
        self.made.clear()


def of(alert: dict, rule: str, ns: str | None = None, pod: str | None = None) -> bool:
    f = alert.get("fields") or {}
    return (alert.get("rule") == rule and (ns is None or f.get("k8s.ns") == ns)
            and (pod is None or f.get("k8s.pod") == pod))
