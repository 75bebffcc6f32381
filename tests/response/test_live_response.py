"""Response on real runc containers with the agent running (in-process) against the API
double: terminate, isolate and release, and an API that is down."""

import pytest

from agent import config
from agent.runtime import Agent
from testbed import runc
from testbed.listener import connects, host_listener
from testbed.waiting import wait_until

NODE = "node-1"


def rule(name, action, cond):
    return (f"- rule: {name}\n  desc: test\n  events: [open]\n"
            f"  condition: container.id exists and not proc.runtime_setup and {cond}\n"
            f"  output: '%proc.exe read %file.path'\n  severity: high\n  tactic: TA0006\n"
            f"  technique: T1003.008\n  action: {action}\n")


@pytest.fixture
def agent_with(tmp_path, kube):
    made = []

    def make(rules_text, kubeconfig=None):
        rules = tmp_path / "rules.yaml"
        rules.write_text(rules_text)
        cfg = config.load(None, {
            "node_name": NODE, "kubernetes.mode": "kubeconfig",
            **runc.agent_overrides(),
            "kubernetes.kubeconfig": kubeconfig or kube.kubeconfig,
            "alerts.journal_dir": str(tmp_path / "journal"),
            "api.listen": [f"unix://{tmp_path}/mamori.sock"], "metrics.listen": "127.0.0.1:0"})
        records = []
        a = Agent(cfg, [str(rules)], outputs=[lambda a: records.append(a.to_dict())])
        a.start()
        made.append(a)
        return a, records
    yield make
    for a in made:
        a.stop()


def _wait(pred, timeout=15.0):
    return wait_until(pred, timeout)


def _pod_for(kube, c, name):
    return kube.put_pod(kube.make_pod("shop", name, NODE, {
        "app": {"id": f"containerd://{c.id}", "image": "busybox:1.36"}}, labels={"app": name}))


def test_terminate_kills_the_container_and_deletes_the_pod(agent_with, kube, containers):
    agent, records = agent_with(rule("Shadow read", "terminate", "file.path = /etc/shadow"))
    c = containers()
    _pod_for(kube, c, "web-1")
    assert _wait(lambda: agent.pipeline.pods.pod_of_container(c.id) is not None)
    c.sh("(sleep 300 >/dev/null 2>&1 &); cat /etc/shadow > /dev/null; sleep 30", check=False)
    assert _wait(lambda: c.pids() == [])                       # the whole container is gone
    assert _wait(lambda: any(r.get("source") == "response" for r in records))
    first = [r for r in records if r["rule"] == "Shadow read" and r.get("source") == "rule"][0]
    assert (first["response"]["action"], first["response"]["status"]) == ("terminate", "done")
    pid = first["fields"]["proc.pid"]
    assert first["response"]["detail"] in (
        f"killed process {pid}; killed every process of the container",
        f"process {pid} already gone; killed every process of the container")   # cat is fast
    follow = [r for r in records if r.get("source") == "response"][0]
    assert (follow["id"], follow["response"]["status"]) == (first["id"], "done")
    assert [r.path for r in kube.requests_to("DELETE", "/pods/")] == [
        "/api/v1/namespaces/shop/pods/web-1"]
    [ev] = kube.events
    assert (ev["reason"], ev["involvedObject"]["name"]) == ("MamoriTerminated", "web-1")
    assert "rule 'Shadow read'" in ev["message"] and first["id"] in ev["message"]


def test_isolate_cuts_only_that_container_and_release_restores(agent_with, kube, containers):
    agent, records = agent_with(rule("Shadow read", "isolate", "file.path = /etc/shadow"))
    a, b = containers(network=True), containers(network=True)
    la, lb = host_listener(a.host_ip), host_listener(b.host_ip)
    try:
        _pod_for(kube, a, "web-a")
        _pod_for(kube, b, "web-b")
        assert _wait(lambda: agent.pipeline.pods.pod_of_container(a.id) is not None)
        assert connects(a) and connects(b)
        a.sh("cat /etc/shadow > /dev/null")
        assert _wait(lambda: any(r.get("source") == "response" for r in records))
        assert not connects(a)
        assert connects(b)                                       # a sibling is not isolated
        assert kube.pods[("shop", "web-a")]["metadata"]["labels"]["mamori.io/quarantine"] == \
            "true"
        assert "mamori.io/quarantine" not in kube.pods[("shop", "web-b")]["metadata"]["labels"]
        pol = kube.networkpolicies[("shop", "mamori-quarantine")]
        assert pol["spec"]["podSelector"]["matchLabels"] == {"mamori.io/quarantine": "true"}
        import os
        import subprocess
        import sys
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        sock = agent.cfg.api.listen[0]
        r = subprocess.run([sys.executable, "-m", "agent.cli", "release", "shop/web-a",
                            "--server", sock], cwd=root, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.startswith("done: network of ")
        assert connects(a)
        assert "mamori.io/quarantine" not in kube.pods[("shop", "web-a")]["metadata"]["labels"]
    finally:
        la.close()
        lb.close()


def test_api_down_still_acts_on_the_node_and_says_the_api_part_failed(agent_with, kube,
                                                                      containers, tmp_path):
    kc = kube.write_kubeconfig(str(tmp_path / "kc-down"))
    agent, records = agent_with(rule("Shadow read", "terminate", "file.path = /etc/shadow"),
                                kubeconfig=kc)
    c = containers()
    _pod_for(kube, c, "web-2")
    assert _wait(lambda: agent.pipeline.pods.pod_of_container(c.id) is not None)
    kube.stop()                                                   # the API goes away
    c.sh("cat /etc/shadow > /dev/null; sleep 30", check=False)
    assert _wait(lambda: c.pids() == [])
    assert _wait(lambda: any(r.get("source") == "response" for r in records), timeout=60)
    follow = [r for r in records if r.get("source") == "response"][0]
    assert follow["response"]["status"] == "failed"
    assert "deleted pod shop/web-2 failed" in follow["response"]["detail"]
    assert "killed every process of the container" in follow["response"]["detail"]
