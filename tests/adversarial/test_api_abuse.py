"""Issue 20, findings 7 and 10: the gRPC API must not be turned against the agent or the
cluster.

- ReDoS: a subscriber's pod_regex `^(.|.)*!$` on a 40-character pod name stalled detection
  for hours (Python's re, under the publish lock). Now RE2 on the subscriber's own thread:
  another subscriber and the output get the alert at once.
- Exposure: plaintext TCP is refused at start; the unix socket is 0600 in a 0700 directory
  (0660/0750 with a group); an unprivileged user cannot connect to a root-only socket, and
  on a group socket can read alerts but not Release; over TCP with mutual TLS a certificate
  not in api.admin_identities can Subscribe but not Release; root releases only a pod this
  node isolated (NOT_FOUND otherwise, and the pod is not touched).
"""
from __future__ import annotations

import grp
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import pytest
import yaml

from agent import config
from agent.api.gen.mamori.v1 import alerts_pb2 as pb
from agent.api.gen.mamori.v1 import alerts_pb2_grpc as pb_grpc
from testbed.certs import certs, tls_channel
from testbed.waiting import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAMORI = os.path.join(os.path.dirname(sys.executable), "mamori")
NODE = "adversarial-node"
SHADOW = "Shadow file read in a container"
NOGROUP = grp.getgrnam("nogroup").gr_gid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class Stream:
    def __init__(self, channel, **req):
        self.alerts: list = []
        self.error = None
        self.call = pb_grpc.AlertsStub(channel).Subscribe(pb.SubscribeRequest(**req))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for a in self.call:
                self.alerts.append(a)
        except grpc.RpcError as e:
            self.error = e

    def rules(self):
        return [a.rule for a in self.alerts]


def _release(channel, ns, pod):
    try:
        r = pb_grpc.AlertsStub(channel).Release(pb.ReleaseRequest(namespace=ns, pod=pod),
                                                timeout=10)
        return "OK", f"{r.status}: {r.detail}"
    except grpc.RpcError as e:
        return e.code().name, e.details()


def _pod(kube, name, container_id):
    kube.put_pod(kube.make_pod("shop", name, NODE, {
        "app": {"id": f"containerd://{container_id}", "image": "busybox:1.36"}},
        labels={"app": name}))


# -- finding 7: ReDoS ---------------------------------------------------------------------

def test_a_catastrophic_pod_regex_does_not_stall_detection(agent_factory, containers, kube):
    pod = "web-" + "a" * 36                                     # 40 characters
    cid = f"mamori-redos-{os.getpid()}"
    _pod(kube, pod, cid)
    agent = agent_factory(kubernetes={"mode": "kubeconfig", "kubeconfig": kube.kubeconfig})
    ch = grpc.insecure_channel(f"unix://{agent.socket}")
    redos = Stream(ch, allow=pb.Matcher(pod_regex="^(.|.)*!$"))
    plain = Stream(ch)
    assert wait_until(lambda: "mamori_subscribers 2.0" in agent.http("/metrics")[1], 10)
    c = containers(name=cid)
    for i in range(3):                                          # every alert, at once
        m = agent.mark()
        t0 = time.monotonic()
        c.sh("cat /etc/shadow > /dev/null")
        a = agent.wait_for(SHADOW, c.id, since=m, timeout=10)
        assert (a["fields"]["k8s.ns"], a["fields"]["k8s.pod"]) == ("shop", pod)
        assert wait_until(lambda: plain.rules().count(SHADOW) == i + 1, 5)
        assert time.monotonic() - t0 < 5
    assert SHADOW not in redos.rules() and redos.error is None  # it matches nothing, in time
    assert agent.http("/healthz") == (200, "ok\n")
    bad = Stream(ch, allow=pb.Matcher(pod_regex=r"^(a+)+\1$"))    # not RE2: refused
    assert wait_until(lambda: bad.error is not None, 5)
    assert (bad.error.code(), bad.error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "pod_regex is not a valid RE2 pattern: invalid escape sequence: \\1")


# -- finding 10: exposure -------------------------------------------------------------------

def test_the_default_is_a_root_only_unix_socket_and_plaintext_tcp_is_refused(tmp_path):
    cfg = config.load(f"{ROOT}/config/mamori.yaml")
    assert (cfg.api.listen, cfg.api.allow_insecure_tcp, cfg.api.admin_identities) == (
        ("unix:///run/mamori/mamori.sock",), False, ())
    assert config.load(None).api.listen == ("unix:///run/mamori/mamori.sock",)
    port = free_port()
    cases = [
        ({"listen": [f"127.0.0.1:{port}"]},
         f"api.listen: 127.0.0.1:{port}: a TCP listener needs mutual TLS (api.tls_cert, "
         f"api.tls_key and api.tls_client_ca): without it anyone who reaches the port reads "
         f"every alert; for development on loopback only, set api.allow_insecure_tcp: true"),
        ({"listen": [f"0.0.0.0:{port}"], "allow_insecure_tcp": True},
         f"api.listen: 0.0.0.0:{port}: api.allow_insecure_tcp applies to loopback addresses "
         f"only (127.0.0.1, ::1, localhost), not 0.0.0.0; use mutual TLS"),
    ]
    for i, (api, why) in enumerate(cases):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(yaml.safe_dump({"kubernetes": {"mode": "off"}, "api": api,
                                        "alerts": {"journal_dir": str(tmp_path / "j")}}))
        line = next(n for n, t in enumerate(path.read_text().splitlines(), 1)
                    if t.strip().startswith("listen:"))
        r = subprocess.run([MAMORI, "run", "--config", str(path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2
        assert r.stderr.splitlines() == [f"mamori: {path}:{line}: {why}"]


CLIENT = r"""
import json, sys, grpc
from agent.api.gen.mamori.v1 import alerts_pb2 as pb, alerts_pb2_grpc as pb_grpc
out = {"uid": __import__("os").getuid()}
for name, target in json.loads(sys.argv[1]).items():
    stub = pb_grpc.AlertsStub(grpc.insecure_channel(target))
    try:
        out[name + ".status"] = ["OK", stub.GetStatus(pb.GetStatusRequest(), timeout=5).node]
    except grpc.RpcError as e:
        out[name + ".status"] = [e.code().name, e.details()]
    try:
        r = stub.Release(pb.ReleaseRequest(namespace="shop", pod="web-1"), timeout=5)
        out[name + ".release"] = ["OK", r.status]
    except grpc.RpcError as e:
        out[name + ".release"] = [e.code().name, e.details()]
print(json.dumps(out))
"""


def _as_nobody(targets: dict) -> dict:
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-c", CLIENT, json.dumps(targets)],
                       cwd="/", capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
                            "PYTHONPATH": ROOT, "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def public_dir():
    """A directory every user can enter (tmp_path is root's alone)."""
    d = tempfile.mkdtemp(prefix="mamori-api-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_an_unprivileged_user_cannot_connect_to_a_root_only_socket(agent_factory, public_dir):
    sock = f"{public_dir}/run/mamori.sock"
    agent_factory(api={"listen": [f"unix://{sock}"]})
    assert (_mode(sock), _mode(os.path.dirname(sock))) == (0o600, 0o700)
    os.chmod(os.path.dirname(sock), 0o755)            # even with the directory opened up,
    got = _as_nobody({"main": f"unix://{sock}"})       # the socket's own mode keeps them out
    assert got["uid"] == 65534
    assert got["main.status"][0] == "UNAVAILABLE" and "Permission denied" in \
        got["main.status"][1]
    assert got["main.release"][0] == "UNAVAILABLE"
    # root can (nothing was isolated: not found)
    assert _release(grpc.insecure_channel(f"unix://{sock}"), "shop", "web-1") == (
        "NOT_FOUND", f"shop/web-1 was not isolated by the agent on node {NODE}; nothing was "
                     f"released")


def test_a_group_may_read_alerts_but_only_root_may_release(agent_factory, public_dir):
    sock = f"{public_dir}/run/mamori.sock"
    admin = f"{public_dir}/run/admin.sock"                # same directory, root-only socket
    agent_factory(api={"listen": [f"unix://{sock}"], "socket_group": "nogroup",
                       "admin_socket": f"unix://{admin}"})
    d = os.path.dirname(sock)
    assert (_mode(sock), os.stat(sock).st_gid, _mode(d), os.stat(d).st_gid) == (
        0o660, NOGROUP, 0o750, NOGROUP)
    assert (_mode(admin), os.stat(admin).st_gid) == (0o600, 0)
    got = _as_nobody({"main": f"unix://{sock}", "admin": f"unix://{admin}"})
    assert got["main.status"] == ["OK", NODE]              # reading is what the group is for
    assert got["main.release"] == [
        "PERMISSION_DENIED",
        "Release needs an admin identity (root on a root-only unix socket, or a client "
        "certificate named in api.admin_identities): the unix socket is open to group "
        f"nogroup: Release needs the root-only socket unix://{admin}"]
    assert got["admin.status"][0] == "UNAVAILABLE" and "Permission denied" in \
        got["admin.status"][1]
    root = grpc.insecure_channel(f"unix://{sock}")        # root on the group socket: no
    assert _release(root, "shop", "web-1")[0] == "PERMISSION_DENIED"
    assert _release(grpc.insecure_channel(f"unix://{admin}"), "shop", "web-1")[0] == \
        "NOT_FOUND"


def test_root_releases_only_a_pod_this_node_isolated(agent_factory, containers, kube,
                                                     tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"overrides:\n  - rule: {SHADOW}\n    action: isolate\n")
    cid = f"mamori-iso-{os.getpid()}"
    _pod(kube, "web-a", cid)
    _pod(kube, "web-b", f"mamori-never-{os.getpid()}")          # on this node, never isolated
    kube.pods[("shop", "web-b")]["metadata"]["labels"]["mamori.io/quarantine"] = "true"
    agent = agent_factory(kubernetes={"mode": "kubeconfig", "kubeconfig": kube.kubeconfig},
                          response={"policy": str(policy)})
    c = containers(name=cid)
    m = agent.mark()
    c.sh("cat /etc/shadow > /dev/null")
    first = agent.wait_for(SHADOW, c.id, since=m)
    assert (first["response"]["action"], first["response"]["status"]) == ("isolate", "done")
    assert wait_until(lambda: kube.pods[("shop", "web-a")]["metadata"]["labels"].get(
        "mamori.io/quarantine") == "true", 15)
    patches = len(kube.requests_to("PATCH", "/pods/"))

    def release(pod):
        return subprocess.run([sys.executable, "-m", "agent.cli", "release", f"shop/{pod}",
                               "--server", f"unix://{agent.socket}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    r = release("web-b")                                   # labelled by someone: not ours
    assert (r.returncode, r.stderr) == (1, f"mamori: NOT_FOUND: shop/web-b was not isolated "
                                           f"by the agent on node {NODE}; nothing was "
                                           f"released\n")
    assert len(kube.requests_to("PATCH", "/pods/")) == patches   # the pod was not touched
    assert kube.pods[("shop", "web-b")]["metadata"]["labels"]["mamori.io/quarantine"] == "true"
    m = agent.mark()
    r = release("web-a")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("done: network of ")
    assert "mamori.io/quarantine" not in kube.pods[("shop", "web-a")]["metadata"]["labels"]
    audit = agent.wait_for("Mamori isolation released", since=m, source="agent")
    assert {k: audit["fields"][k] for k in ("k8s.ns", "k8s.pod", "release.by",
                                            "release.status")} == {
        "k8s.ns": "shop", "k8s.pod": "web-a", "release.by": "root (root-only unix socket)",
        "release.status": "done"}
    assert release("web-a").returncode == 1                 # released: not isolated any more


def test_mutual_tls_a_certificate_that_is_not_an_admin_reads_but_cannot_release(
        agent_factory, containers, tmp_path):
    c = certs(str(tmp_path), ("client", "mamori-admin"))
    port = free_port()
    agent = agent_factory(api={"listen": [f"unix://{tmp_path}/api/m.sock", f"127.0.0.1:{port}"],
                               "tls_cert": c["server"], "tls_key": c["server_key"],
                               "tls_client_ca": c["ca"], "admin_identities": ["mamori-admin"]})
    user = Stream(tls_channel(port, c, "client"))
    assert wait_until(lambda: "mamori_subscribers 1.0" in agent.http("/metrics")[1], 10)
    box = containers()
    m = agent.mark()
    box.sh("cat /etc/shadow > /dev/null")
    a = agent.wait_for(SHADOW, box.id, since=m)
    assert wait_until(lambda: SHADOW in user.rules(), 10)     # reading: any client cert
    assert [x.sequence for x in user.alerts if x.rule == SHADOW] == [a["seq"]]
    code, detail = _release(tls_channel(port, c, "client"), "shop", "web-1")
    assert code == "PERMISSION_DENIED"
    assert re.fullmatch(r"Release needs an admin identity \(root on a root-only unix socket, "
                        r"or a client certificate named in api.admin_identities\): "
                        r"ipv4:127\.0\.0\.1:\d+: client certificate 'client' is not in "
                        r"api\.admin_identities", detail), detail
    assert _release(tls_channel(port, c, "mamori-admin"), "shop", "web-1") == (
        "NOT_FOUND", f"shop/web-1 was not isolated by the agent on node {NODE}; nothing was "
                     f"released")
    for ch in (tls_channel(port, c), grpc.insecure_channel(f"127.0.0.1:{port}")):  # no cert; plain
        with pytest.raises(grpc.RpcError) as e:
            pb_grpc.AlertsStub(ch).GetStatus(pb.GetStatusRequest(), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
