"""The pod watch against the kube-apiserver double, through the official client."""

import json
import time

import pytest

from agent.context.pods import PodWatcher, api_client, strip_runtime
from testbed.waiting import wait_until

CID = "c" * 64
NODE = "node-1"


def _wait(pred, timeout=5.0):
    return wait_until(pred, timeout)


@pytest.fixture
def watcher(kube):
    w = PodWatcher(api_client("kubeconfig", kube.kubeconfig), NODE, backoff=(0.05, 0.1),
                   watch_timeout=30)
    yield w
    w.stop()


def _pod(kube, name="checkout-7d9f-x", ns="shop", cid=CID, node=NODE, **kw):
    return kube.make_pod(ns, name, node, {"api": {
        "id": f"containerd://{cid}", "image": "ghcr.io/acme/checkout:1.2",
        "imageID": "ghcr.io/acme/checkout@sha256:" + "e" * 64}}, **kw)


def test_list_maps_containers_to_pods_with_their_deployment(kube, watcher):
    kube.add_workload("shop", "checkout", "checkout-7d9f")
    pod = kube.put_pod(_pod(kube, labels={"app": "checkout", "tier": "web"},
                            owner=("ReplicaSet", "checkout-7d9f")))
    kube.put_pod(_pod(kube, name="elsewhere", cid="d" * 64, node="node-2"))
    watcher.start()
    assert watcher.synced.wait(5)
    # the Deployment is looked up off the watch thread: known by its ReplicaSet until then
    assert _wait(lambda: watcher.pod_of_container(CID).owner_kind == "Deployment")
    info = watcher.pod_of_container(CID)
    assert (info.namespace, info.name, info.uid) == ("shop", "checkout-7d9f-x",
                                                    pod["metadata"]["uid"])
    assert info.labels == {"app": "checkout", "tier": "web"}
    assert (info.owner_kind, info.owner_name, info.node) == ("Deployment", "checkout", NODE)
    pc = info.containers[CID]
    assert (pc.name, pc.image, pc.image_id) == (
        "api", "ghcr.io/acme/checkout:1.2", "ghcr.io/acme/checkout@sha256:" + "e" * 64)
    assert watcher.pod_of_container("d" * 64) is None           # another node's pod
    [lst] = kube.requests_to("GET", r"^/api/v1/pods$")[:1]
    assert lst.query["fieldSelector"] == f"spec.nodeName={NODE}"
    assert len(kube.requests_to("GET", r"/replicasets/checkout-7d9f$")) == 1


def test_watch_adds_modifies_and_deletes(kube, watcher):
    watcher.start()
    assert watcher.synced.wait(5)
    kube.put_pod(_pod(kube, labels={"v": "1"}))
    assert _wait(lambda: watcher.pod_of_container(CID) is not None)
    kube.put_pod(_pod(kube, labels={"v": "2"}))
    assert _wait(lambda: watcher.pod_of_container(CID).labels == {"v": "2"})
    kube.remove_pod("shop", "checkout-7d9f-x")
    assert _wait(lambda: watcher.pod_of_container(CID) is None)
    watches = [r for r in kube.requests if r.query.get("watch") == "true"]
    assert watches[0].query["allowWatchBookmarks"] == "true"
    assert watches[0].query["resourceVersion"] == watcher_list_rv(kube)


def watcher_list_rv(kube):
    return str(100)   # the double's resourceVersion when the (empty) list was served


def test_bookmarks_move_the_resource_version(kube, watcher):
    watcher.start()
    assert watcher.synced.wait(5)
    kube.put_pod(_pod(kube, node="node-2"))        # not ours: only a bookmark tells us
    assert _wait(lambda: watcher.resource_version == str(kube.rv), timeout=3)


def test_410_gone_relists(tmp_path):
    from testbed.kube_double import KubeDouble
    kube = KubeDouble(bookmark_interval=60).start()
    cfg = kube.write_kubeconfig(str(tmp_path / "kc"))
    w = PodWatcher(api_client("kubeconfig", cfg), NODE, backoff=(0.05,), watch_timeout=30)
    try:
        w.start()
        assert w.synced.wait(5) and w.relists == 1
        kube.bump()                  # history moves on without our watch seeing it ...
        kube.compact()               # ... and is compacted
        kube.end_watches()           # our watch reconnects from a stale version: 410
        assert _wait(lambda: w.relists == 2)
        kube.put_pod(_pod(kube, name="after"))      # and the new watch works
        assert _wait(lambda: w.pod_of_container(CID) is not None)
        assert w.errors == 0
    finally:
        w.stop()
        kube.stop()


def test_api_errors_are_retried_with_backoff(kube, watcher):
    kube.put_pod(_pod(kube))
    kube.fail("GET", r"^/api/v1/pods$", 500, times=2)
    watcher.start()
    assert watcher.synced.wait(5)
    assert watcher.pod_of_container(CID) is not None
    assert watcher.errors == 2
    assert "500" in watcher.last_error or "Internal" in watcher.last_error
    assert len(kube.requests_to("GET", r"^/api/v1/pods$")) >= 3


def test_replicaset_without_deployment_stays_a_replicaset(kube, watcher):
    kube.put_pod(_pod(kube, owner=("ReplicaSet", "orphan-rs")))
    watcher.start()
    assert watcher.synced.wait(5)
    info = watcher.pod_of_container(CID)
    assert (info.owner_kind, info.owner_name) == ("ReplicaSet", "orphan-rs")


# -- bad objects (issue 21, finding 11) ------------------------------------------------

def _refused_by_the_models(kube, name, cid):
    """A pod whose container status lacks `name` and `ready` (required by the client's
    V1ContainerStatus: deserializing it raises ValueError)."""
    pod = _pod(kube, name=name, cid=cid)
    for cs in pod["status"]["containerStatuses"]:
        del cs["name"], cs["ready"]
    return pod


def test_one_bad_pod_does_not_cost_the_others_their_context(kube, watcher):
    from kubernetes import client
    bad = _refused_by_the_models(kube, "odd", "b" * 64)
    with pytest.raises(ValueError):  # the client's models refuse it; the API may send it
        client.ApiClient().deserialize(json.dumps(bad), "V1Pod", "application/json")
    kube.put_pod(_pod(kube))                                    # a good pod
    kube.put_pod(bad)                                           # read field by field: kept
    kube.put_raw_pod(("shop", "nameless"), {"metadata": None, "spec": {"nodeName": NODE}})
    watcher.start()
    assert watcher.synced.wait(5)
    assert watcher.pod_of_container(CID).name == "checkout-7d9f-x"
    assert watcher.pod_of_container("b" * 64).name == "odd"
    assert watcher.pod_of_container("b" * 64).containers["b" * 64].name == ""
    assert (watcher.bad_objects, watcher.errors, watcher.relists) == (1, 0, 1)


def test_a_bad_watch_event_is_skipped_once_not_replayed(kube, watcher):
    watcher.start()
    assert watcher.synced.wait(5)
    kube.put_raw_pod(("shop", "x"), {"metadata": None, "spec": {"nodeName": NODE}})
    kube.put_raw_pod(("shop", "y"), {"kind": "Pod", "metadata": {"name": "y"},
                                     "spec": {"nodeName": NODE}})      # no uid
    kube.put_pod(_pod(kube))                                    # and life goes on
    assert _wait(lambda: watcher.pod_of_container(CID) is not None)
    assert _wait(lambda: watcher.resource_version == str(kube.rv))
    time.sleep(1.0)
    assert (watcher.bad_objects, watcher.errors) == (2, 0)
    assert len([r for r in kube.requests if r.query.get("watch") == "true"]) == 1


def test_owner_lookups_never_hold_the_watch_and_failures_are_cached(kube):
    w = PodWatcher(api_client("kubeconfig", kube.kubeconfig), NODE, backoff=(0.05,),
                   watch_timeout=30, owner_retry_s=60)
    kube.add_workload("shop", "checkout", "checkout-7d9f")
    kube.stall("GET", r"/replicasets/checkout-7d9f$", 3.0)       # a slow apps API ...
    kube.fail("GET", r"/replicasets/broken-rs$", 500, times=100)  # ... and a failing one
    try:
        w.start()
        assert w.synced.wait(5)
        kube.put_pod(_pod(kube, owner=("ReplicaSet", "checkout-7d9f")))
        assert _wait(lambda: w.pod_of_container(CID) is not None, timeout=1.0)
        assert w.pod_of_container(CID).owner_kind == "ReplicaSet"      # not waited for
        for i in range(5):
            kube.put_pod(_pod(kube, name=f"b-{i}", cid=f"{i}" * 64,
                              owner=("ReplicaSet", "broken-rs")))
        assert _wait(lambda: w.pod_of_container("4" * 64) is not None, timeout=2.0)
        assert _wait(lambda: w.pod_of_container(CID).owner_kind == "Deployment", 6.0)
        # the lookups run one after the other off the watch thread: broken-rs's comes after
        # the stalled one; five pods of it, one request (its failure is cached)
        broken = lambda: kube.requests_to("GET", r"/replicasets/broken-rs$")  # noqa: E731
        assert _wait(lambda: len(broken()) >= 1, 6.0)
        kube.put_pod(_pod(kube, name="b-late", cid="9" * 64, owner=("ReplicaSet", "broken-rs")))
        assert _wait(lambda: w.pod_of_container("9" * 64) is not None, timeout=2.0)
        time.sleep(0.5)
        assert len(broken()) == 1
        assert w.pod_of_container("4" * 64).owner_name == "broken-rs"
        assert w.errors == 0
    finally:
        w.stop()


def test_standalone_and_client_config(tmp_path, monkeypatch):
    assert api_client("off") is None
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert api_client("auto") is None                      # nothing configured: standalone
    with pytest.raises(FileNotFoundError, match="kubeconfig"):
        api_client("kubeconfig", str(tmp_path / "missing"))
    assert strip_runtime("containerd://abc") == "abc" and strip_runtime("") == ""
