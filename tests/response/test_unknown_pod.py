"""A container whose pod is not known yet is not unprotected (issue 20, finding 11): the
responder waits for the pod in the real pod watch (against the API double), then applies the
full policy — on real runc containers, with real cgroup isolation. And what this node
isolated survives a restart (isolated_by_me, which Release checks)."""
import json
import os
import stat
import time

import pytest

from agent.alerts.alert import Alert
from agent.context.pods import PodWatcher, api_client
from agent.response.isolation import Isolator
from agent.response.kube_actions import KubeActions
from agent.response.policy import Policy
from agent.response.responder import Responder
from agent.sensor import cgroups
from testbed.listener import connects, host_listener
from testbed.waiting import wait_until

NODE = "node-1"


@pytest.fixture
def responder(kube):
    made = []

    def make(policy, state_path=None, with_api=True):
        client = api_client("kubeconfig", kube.kubeconfig)
        pods = PodWatcher(client, NODE)
        pods.start()
        assert pods.synced.wait(10)
        published = []
        r = Responder(policy, cgroups.cgroup2_root(), published.append,
                      KubeActions(client, backoff=(0.01,)) if with_api else None, Isolator,
                      pods=pods if with_api else None, state_path=state_path)
        made.append((r, pods))
        return r, published
    yield make
    for r, pods in made:
        r.stop()
        pods.stop()


def record(c, action, ns=None, pod=None):
    """The alert the enricher makes for a container whose pod it does not know yet."""
    return Alert.from_dict({
        "rule": "R", "action": action, "id": f"a-{c.id}", "source": "rule", "fields": {
            "container.id": c.id, "container.cgroup": "/" + c.cgroup_path, "proc.pid": c.pid,
            "proc.cgroup_id": c.cgroup_id, "event.ts": time.monotonic_ns(),
            "k8s.ns": ns, "k8s.pod": pod, "k8s.pod_uid": None, "k8s.labels": {}}})


def put_pod(kube, c, ns, name):
    kube.put_pod(kube.make_pod(ns, name, NODE, {"app": {"id": f"containerd://{c.id}"}}))


def follow_up(published, timeout=15):
    assert wait_until(lambda: published, timeout), "no follow-up record"
    [rec] = published
    assert rec.source == "response"
    return rec.response


def test_wait_an_unknown_pod_in_a_protected_namespace_is_left_alone(responder, kube,
                                                                    containers):
    """Before: no pod, no namespace, no labels -> the guard rails passed and the container
    was killed although its pod is in kube-system."""
    r, published = responder(Policy(unknown_pod="wait"))
    c = containers()
    rec = record(c, "terminate")
    rec = r.respond(rec)
    assert rec.response.to_dict() == {"action": "terminate", "status": "pending", "detail": (
        f"nothing done yet: terminate container {c.id}: its pod is not known yet; the rest "
        "once the pod is known")}
    time.sleep(0.5)
    assert c.pid in c.pids()                               # nothing done meanwhile
    put_pod(kube, c, "kube-system", "coredns-1")
    resp = follow_up(published)
    assert resp.status == "skipped"
    assert resp.detail.endswith(
        "pod kube-system/coredns-1 known: namespace kube-system is protected")
    time.sleep(0.2)
    assert c.pid in c.pids()
    assert kube.requests_to("DELETE", "/pods/") == []


def test_wait_an_unknown_pod_is_acted_on_once_known(responder, kube, containers):
    r, published = responder(Policy(unknown_pod="wait"))
    c = containers()
    r.respond(record(c, "terminate"))
    time.sleep(0.3)
    put_pod(kube, c, "shop", "web-1")
    resp = follow_up(published)
    assert (resp.action, resp.status) == ("terminate", "done")
    assert "pod shop/web-1 known: terminate shop/web-1; killed process " in resp.detail
    assert wait_until(lambda: c.pids() == [], 5)
    assert [q.path for q in kube.requests_to("DELETE", "/pods/")] == [
        "/api/v1/namespaces/shop/pods/web-1"]


def test_act_isolation_of_an_unknown_pod_is_undone_when_it_is_protected(responder, kube,
                                                                       containers):
    """unknown_pod: act cuts the network at once; the pod turns out to be in a protected
    namespace: the cut is undone and the pod is not labelled."""
    r, published = responder(Policy(unknown_pod="act"))
    c = containers(network=True)
    lsn = host_listener(c.host_ip)
    try:
        assert connects(c)
        rec = record(c, "isolate")
        rec = r.respond(rec)
        assert rec.response.status == "done"
        assert rec.response.detail == (f"network of container {c.id} cut on the node; "
                                             "the rest once the pod is known")
        assert not connects(c)
        put_pod(kube, c, "mamori", "agent-x")
        resp = follow_up(published)
        assert resp.status == "skipped"
        assert resp.detail.endswith("pod mamori/agent-x known: namespace mamori is "
                                       "protected; the node-local isolation is undone")
        assert connects(c)
        assert kube.requests_to("PATCH", "/pods/") == []
        assert not r.isolated_by_me("mamori", "agent-x")
    finally:
        lsn.close()


def test_an_unknown_pod_that_never_shows_up(responder, containers):
    r, published = responder(Policy(unknown_pod="wait", unknown_pod_wait_seconds=1))
    c = containers()
    r.respond(record(c, "terminate"))
    resp = follow_up(published)
    assert resp.to_dict() == {"action": "terminate", "status": "skipped", "detail": (
        f"the pod of container {c.id} was not known within 1 s: nothing done")}
    assert c.pid in c.pids()


def test_a_namespace_labelled_protected_by_an_admin(responder, kube, containers):
    kube.add_namespace("payments", {"mamori.io/protected": "true"})
    kube.add_namespace("shop", {})
    r, published = responder(Policy(protected_namespace_labels={"mamori.io/protected": "true"}))
    c, d = containers(), containers()
    put_pod(kube, c, "payments", "api-1")
    put_pod(kube, d, "shop", "web-1")
    r.respond(record(c, "terminate", "payments", "api-1"))
    resp = follow_up(published)
    assert resp.status == "skipped"
    assert resp.detail.endswith("namespace payments is protected by its label "
                                   "mamori.io/protected=true")
    assert c.pid in c.pids()
    published.clear()
    r.respond(record(d, "terminate", "shop", "web-1"))
    resp = follow_up(published)
    assert resp.status == "done"
    assert wait_until(lambda: d.pids() == [], 5)
    assert c.pid in c.pids()


def test_what_this_node_isolated_survives_a_restart(responder, kube, containers, tmp_path):
    state = tmp_path / "state" / "response-state.json"
    r, published = responder(Policy(), state_path=str(state))
    c = containers()
    put_pod(kube, c, "shop", "web-1")
    r.respond(record(c, "isolate", "shop", "web-1"))
    assert r.isolated_by_me("shop", "web-1")
    assert not r.isolated_by_me("shop", "web-2")
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state.parent).st_mode) == 0o700
    assert json.loads(state.read_text()) == {
        "version": 1, "isolated": {"shop/web-1": [c.cgroup_dir]}}
    assert r.release("shop", "web-2") == ("failed", "shop/web-2 was not isolated by this node")
    r.stop()
    r2, _ = responder(Policy(), state_path=str(state))            # the agent restarted
    assert r2.isolated_by_me("shop", "web-1")
    status, detail = r2.release("shop", "web-1")
    assert status == "done", detail
    assert not r2.isolated_by_me("shop", "web-1")
    assert json.loads(state.read_text()) == {"version": 1, "isolated": {}}
    assert "mamori.io/quarantine" not in kube.pods[("shop", "web-1")]["metadata"]["labels"]
