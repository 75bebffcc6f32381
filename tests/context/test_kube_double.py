"""The kube-apiserver double answers the official client the way kube-apiserver does, for
the calls later stages make (delete, label patch, network policies, events)."""
import time

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.context.pods import api_client


@pytest.fixture
def api(kube):
    c = api_client("kubeconfig", kube.kubeconfig)
    return client.CoreV1Api(c), client.NetworkingV1Api(c)


def test_pod_get_patch_delete_and_404(kube, api):
    core, _ = api
    kube.put_pod(kube.make_pod("shop", "p1", "node-1", {"c": {"id": "containerd://x"}}))
    assert core.read_namespaced_pod("p1", "shop").spec.node_name == "node-1"
    core.patch_namespaced_pod("p1", "shop", {"metadata": {"labels": {"mamori.io/quarantine": "true"}}})
    assert core.read_namespaced_pod("p1", "shop").metadata.labels == {"mamori.io/quarantine": "true"}
    core.delete_namespaced_pod("p1", "shop", grace_period_seconds=0)
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_pod("p1", "shop")
    assert e.value.status == 404
    assert [r.method for r in kube.requests_to("DELETE", "/pods/p1$")] == ["DELETE", "DELETE"]


def test_network_policy_create_conflict_and_get(kube, api):
    _, net = api
    body = {"metadata": {"name": "mamori-quarantine"},
            "spec": {"podSelector": {"matchLabels": {"mamori.io/quarantine": "true"}},
                     "policyTypes": ["Ingress", "Egress"]}}
    net.create_namespaced_network_policy("shop", body)
    with pytest.raises(ApiException) as e:
        net.create_namespaced_network_policy("shop", body)
    assert e.value.status == 409
    got = net.read_namespaced_network_policy("mamori-quarantine", "shop")
    assert got.spec.pod_selector.match_labels == {"mamori.io/quarantine": "true"}


def test_events_namespaces_and_injected_failures(kube, api):
    core, _ = api
    kube.add_namespace("shop", {"team": "payments"})
    assert core.read_namespace("shop").metadata.labels == {"team": "payments"}
    core.create_namespaced_event("shop", {"metadata": {"generateName": "mamori-"},
                                          "involvedObject": {"kind": "Pod", "name": "p1",
                                                             "namespace": "shop"},
                                          "reason": "MamoriTerminated", "message": "m"})
    assert kube.events[0]["reason"] == "MamoriTerminated"
    kube.fail("GET", "/namespaces/shop$", 500)
    with pytest.raises(ApiException) as e:
        core.read_namespace("shop")
    assert e.value.status == 500
    assert core.read_namespace("shop").metadata.name == "shop"
    kube.stall("GET", "/namespaces/shop$", 0.5)
    t0 = time.monotonic()
    core.read_namespace("shop")
    assert time.monotonic() - t0 >= 0.5


def test_list_with_label_selector(kube, api):
    core, _ = api
    kube.put_pod(kube.make_pod("a", "web", "n", {}, labels={"app": "web"}))
    kube.put_pod(kube.make_pod("a", "db", "n", {}, labels={"app": "db"}))
    names = [p.metadata.name for p in core.list_namespaced_pod("a", label_selector="app=web").items]
    assert names == ["web"]
