"""Issue 20, finding 11: the response must not be switched off by the pod it acts on.
`mamori run` as its own process, the API double, real runc containers; the attacker is a pod
author (who writes the pod's labels) and a container whose pod the agent does not know yet.
(Finding 12, the pid checked before it is signalled, is shown on real processes in
tests/response/test_terminate.py; 13 in tests/unit/test_admission_policy.py.)"""
import os
import subprocess
import sys
import time

import yaml

from testbed.waiting import wait_until

MAMORI = os.path.join(os.path.dirname(sys.executable), "mamori")
NODE = "adversarial-node"
SHADOW = "Shadow file read in a container"


def _policy(tmp_path, text):
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    return str(p)


def _kube_agent(agent_factory, kube, policy):
    return agent_factory(kubernetes={"mode": "kubeconfig", "kubeconfig": kube.kubeconfig},
                         node_name=NODE, response={"policy": policy})


def test_a_pod_cannot_opt_itself_out_with_its_labels(agent_factory, kube, containers,
                                                     tmp_path):
    """Before: `mamori.io/protected: "true"` on the pod (the default protected label), or a
    label that an override maps to `log`, and the pod was never acted on."""
    policy = _policy(tmp_path, (
        "mode: enforce\nincident_window_seconds: 0\noverrides:\n"
        f"  - rule: {SHADOW}\n    action: terminate\n"
        "  - labels: {team: legacy}\n    action: log\n"))
    c = containers()
    kube.put_pod(kube.make_pod("shop", "web-1", NODE, {"app": {"id": f"containerd://{c.id}"}},
                               labels={"app": "web", "mamori.io/protected": "true",
                                       "team": "legacy"}))
    agent = _kube_agent(agent_factory, kube, policy)         # ready: the pod watch synced
    m = agent.mark()
    c.sh("cat /etc/shadow >/dev/null; sleep 30", check=False)
    a = agent.wait_for(SHADOW, c.id, since=m, source="rule")
    assert (a["fields"]["k8s.ns"], a["fields"]["k8s.pod"]) == ("shop", "web-1")
    assert (a["response"]["action"], a["response"]["status"]) == ("terminate", "done")
    assert wait_until(lambda: c.pids() == [], 10)
    assert wait_until(lambda: kube.requests_to("DELETE", "/pods/web-1$"), 15)


def test_protected_labels_in_the_policy_is_refused_at_start(tmp_path):
    policy = _policy(tmp_path, "mode: enforce\nprotected_labels: {mamori.io/protected: 'true'}\n")
    cfg = tmp_path / "mamori.yaml"
    cfg.write_text(yaml.safe_dump({
        "kubernetes": {"mode": "off"}, "response": {"policy": policy},
        "alerts": {"journal_dir": str(tmp_path / "journal")},
        "api": {"listen": [f"unix://{tmp_path}/mamori.sock"]}, "metrics": {"listen": ""}}))
    r = subprocess.run([MAMORI, "run", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"mamori: {policy}:2: protected_labels: not supported: pod labels are written by " \
           "whoever creates the pod, so a pod could opt itself out of the response with " \
           "them" in r.stderr
    assert "mamori: not starting: the response policy has errors" in r.stderr


def test_an_unknown_pod_is_not_taken_as_unprotected(agent_factory, kube, containers,
                                                    tmp_path):
    """Before: a container whose pod the agent had not seen had no namespace and no labels,
    every guard rail passed, and it was killed — here a kube-system pod's container."""
    policy = _policy(tmp_path, (
        "mode: enforce\nunknown_pod: wait\nunknown_pod_wait_seconds: 10\noverrides:\n"
        f"  - rule: {SHADOW}\n    action: terminate\n"))
    agent = _kube_agent(agent_factory, kube, policy)
    c = containers()                                 # its pod is not in the API yet
    m = agent.mark()
    c.sh("cat /etc/shadow >/dev/null", check=False)
    a = agent.wait_for(SHADOW, c.id, since=m, source="rule")
    assert a["fields"]["k8s.ns"] is None
    assert a["response"]["action"] == "terminate"
    assert a["response"]["status"] in ("pending", "skipped"), a["response"]
    kube.put_pod(kube.make_pod("kube-system", "coredns-1", NODE,
                               {"dns": {"id": f"containerd://{c.id}"}}))
    time.sleep(3)
    assert c.pid in c.pids()                         # not killed
    assert kube.requests_to("DELETE", "/pods/") == []
    done = [r for r in agent.matching(SHADOW, c.id, since=m) if
            r["response"]["status"] == "done"]
    assert done == []
