"""Terminate on a real container and at the API double; API retries and failures."""
import time

from agent.context.pods import api_client
from agent.response.kube_actions import KubeActions
from agent.response.local import kill_cgroup, kill_process


def test_container_processes_are_killed(containers):
    c = containers()
    c.sh("(sleep 300 >/dev/null 2>&1 &) ; (sleep 301 >/dev/null 2>&1 &)")
    assert len(c.pids()) >= 3
    assert kill_process(c.pid) is True
    kill_cgroup(c.cgroup_dir)
    deadline = time.monotonic() + 5
    while c.pids() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert c.pids() == []                      # every process of the container is gone
    assert time.monotonic() < deadline


def test_delete_and_event_at_the_api(kube):
    kube.put_pod(kube.make_pod("shop", "web-1", "node-1", {"c": {"id": "containerd://x"}}))
    k = KubeActions(api_client("kubeconfig", kube.kubeconfig), backoff=(0.01, 0.01))
    assert k.delete_pod("shop", "web-1", 0) == ("done", "deleted pod shop/web-1")
    [req] = kube.requests_to("DELETE", "/pods/web-1$")
    assert req.query.get("gracePeriodSeconds") == "0"
    assert k.record_event("shop", "web-1", "u1", "MamoriTerminated",
                          "rule R, alert a1")[0] == "done"
    ev = kube.events[0]
    assert (ev["reason"], ev["involvedObject"]["name"], ev["message"]) == (
        "MamoriTerminated", "web-1", "rule R, alert a1")
    # deleting again: 404 means done
    assert k.delete_pod("shop", "web-1", 0) == (
        "done", "deleted pod shop/web-1 (404 Not Found: already so)")


def test_api_500_twice_then_200_is_done(kube):
    kube.put_pod(kube.make_pod("shop", "web-1", "node-1", {}))
    kube.fail("DELETE", "/pods/web-1$", 500, times=2)
    k = KubeActions(api_client("kubeconfig", kube.kubeconfig), backoff=(0.01, 0.01, 0.01))
    assert k.delete_pod("shop", "web-1") == ("done", "deleted pod shop/web-1")
    assert len(kube.requests_to("DELETE", "/pods/web-1$")) == 3


def test_api_down_is_reported_failed(kube, tmp_path):
    path = kube.kubeconfig
    kube.stop()
    k = KubeActions(api_client("kubeconfig", path), backoff=(0.01, 0.01), timeout=1)
    status, detail = k.delete_pod("shop", "web-1")
    assert status == "failed" and detail.startswith("deleted pod shop/web-1 failed: ")


def test_quarantine_label_and_network_policy(kube):
    kube.put_pod(kube.make_pod("shop", "web-1", "node-1", {}, labels={"app": "web"}))
    k = KubeActions(api_client("kubeconfig", kube.kubeconfig), backoff=(0.01,))
    assert k.quarantine("shop", "web-1")[0] == "done"
    assert kube.pods[("shop", "web-1")]["metadata"]["labels"] == {
        "app": "web", "mamori.io/quarantine": "true"}
    pol = kube.networkpolicies[("shop", "mamori-quarantine")]
    assert pol["spec"]["podSelector"] == {"matchLabels": {"mamori.io/quarantine": "true"}}
    assert pol["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert k.quarantine("shop", "web-1")[0] == "done"            # 409: already there
    assert k.release("shop", "web-1")[0] == "done"
    assert kube.pods[("shop", "web-1")]["metadata"]["labels"] == {"app": "web"}
