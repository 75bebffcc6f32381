"""Context on real runc containers: the sensor, discovery, process tree, container registry
and pod watch together, as `mamori run` wires them."""
import os
import time
from dataclasses import replace

import pytest

from agent import config
from agent.pipeline import Pipeline
from testbed.kube_double import KubeDouble
from testbed import runc

NODE = "node-1"


class Feed:
    """Everything a pipeline delivered; tests look up theirs."""

    def __init__(self, pipe):
        self.pipe, self.items = pipe, []

    def find(self, pred, timeout=10.0, count=1):
        deadline = time.monotonic() + timeout
        while True:
            self.items.extend(self.pipe.step())
            hits = [i for i in self.items if pred(i)]
            if len(hits) >= count or time.monotonic() > deadline:
                return hits
            time.sleep(0.02)

    def pump(self, seconds=0.2):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.items.extend(self.pipe.step())
            time.sleep(0.02)


def _exec_of(feed, container, argv, timeout=10.0):
    hits = feed.find(lambda i: i.kind == "exec" and i.container is not None
                     and i.container.id == container.id and i.event.args == tuple(argv),
                     timeout=timeout)
    assert hits, f"no exec of {argv} from {container.id}"
    return hits[0]


def _wait(pred, feed=None, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if feed is not None:
            feed.pump(0.05)
        if pred():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def kube_module(tmp_path_factory):
    k = KubeDouble(bookmark_interval=0.5).start()
    k.kubeconfig = k.write_kubeconfig(str(tmp_path_factory.mktemp("kc") / "kubeconfig"))
    yield k
    k.stop()


@pytest.fixture(scope="module")
def cluster(kube_module):
    cfg = config.load(None, {"node_name": NODE, "kubernetes.mode": "kubeconfig",
                             "kubernetes.kubeconfig": kube_module.kubeconfig,
                             **runc.agent_overrides()})
    pipe = Pipeline(cfg)
    pipe.start()
    yield Feed(pipe)
    pipe.close()


@pytest.fixture(scope="module")
def standalone():
    """No API, and no watched parent: the test bed's containers are found only by discovery,
    through a glob entry that matches each container cgroup as runc makes it."""
    cfg = config.load(None, {"kubernetes.mode": "off", **runc.agent_overrides()})
    cfg = replace(cfg, sensor=replace(cfg.sensor, watched_cgroups=(
        f"{runc.CGROUP_PARENT}/mamori-*",)))
    pipe = Pipeline(cfg)
    pipe.start()
    yield Feed(pipe)
    pipe.close()


CRI = {"io.kubernetes.cri.container-name": "api",
       "io.kubernetes.cri.image-name": "ghcr.io/acme/checkout:1.2",
       "io.kubernetes.cri.sandbox-name": "checkout-7d9f-x",
       "io.kubernetes.cri.sandbox-namespace": "shop"}


def test_exec_in_a_container_carries_container_pod_and_ancestry(cluster, kube_module,
                                                                 containers):
    kube = kube_module
    c = containers(annotations=CRI)
    kube.add_workload("shop", "checkout", "checkout-7d9f")
    digest = "ghcr.io/acme/checkout@sha256:" + "a" * 64
    pod = kube.put_pod(kube.make_pod(
        "shop", "checkout-7d9f-x", NODE,
        {"api": {"id": f"containerd://{c.id}", "image": "ghcr.io/acme/checkout:1.2",
                 "imageID": digest}},
        labels={"app": "checkout"}, owner=("ReplicaSet", "checkout-7d9f")))
    assert _wait(lambda: cluster.pipe.pods.pod_of_container(c.id) is not None, cluster)
    c.sh("cat /etc/hostname >/dev/null; true")     # two commands: sh forks cat
    item = _exec_of(cluster, c, ["cat", "/etc/hostname"])
    f = item.fields()
    assert (f["container.id"], f["container.runtime"], f["container.name"]) == (
        c.id, "runc", "api")
    assert (f["container.image"], f["container.image_id"]) == ("ghcr.io/acme/checkout:1.2",
                                                               digest)
    assert (f["k8s.ns"], f["k8s.pod"], f["k8s.pod_uid"]) == ("shop", "checkout-7d9f-x",
                                                             pod["metadata"]["uid"])
    assert f["k8s.labels"] == {"app": "checkout"}
    assert (f["k8s.owner_kind"], f["k8s.owner_name"]) == ("Deployment", "checkout")
    assert f["proc.exe"] == "/bin/busybox" and f["proc.exe_fs"] == "overlay"
    # cat's parent is the shell that runc exec started in the container
    shell = _exec_of(cluster, c, ["/bin/sh", "-c", "cat /etc/hostname >/dev/null; true"])
    parent_pid, parent_exe, parent_id, parent_name = item.ancestors[0]
    assert (parent_pid, parent_exe) == (shell.event.pid, "/bin/busybox")
    # the same process the shell's own exec named, by its exec id (boot, start tick, pid)
    from agent.context.process_tree import BOOT
    assert parent_id == shell.exec_id and parent_id.startswith(f"{BOOT}:") and \
        parent_id.endswith(f":{parent_pid}")
    assert f["proc.exec_id"] == item.exec_id and item.exec_id.endswith(f":{item.event.pid}")
    assert f["proc.ancestors"][0] == {"pid": shell.event.pid, "exe": "/bin/busybox",
                                      "exec_id": parent_id, "name": "sh"}
    assert f["proc.pname"] == "busybox" and f["proc.ppid"] == parent_pid
    assert parent_name == "sh"          # the applet it was run as, where pname says busybox
    assert f["proc.runtime_setup"] is False
    assert f["proc.cgroup_id"] == c.cgroup_id


def test_container_root_filesystem_is_known(cluster, containers, image):
    c = containers()
    c.exec("/bin/true", "x")
    _exec_of(cluster, c, ["/bin/true", "x"])
    info = cluster.pipe.registry.by_id(c.id)
    assert info.rootfs is not None
    assert (info.rootfs.fstype, info.rootfs.lowerdirs, info.rootfs.upperdir) == (
        "overlay", (image,), c.upper)


def test_runtime_setup_processes_are_labelled(cluster, containers):
    c = containers()
    c.exec("/bin/true", "x")
    _exec_of(cluster, c, ["/bin/true", "x"])
    setup = [i for i in cluster.items if i.container is not None
             and i.container.id == c.id and i.event.comm.startswith("runc:[")]
    assert setup, "runc's init ran in the container's cgroup and was seen"
    assert all(i.runtime_setup for i in setup), [
        (i.kind, i.event.pid, i.event.ppid, i.event.comm, i.runtime_setup,
         getattr(cluster.pipe.tree.get(i.event.pid), "origin", None)) for i in setup]
    work = [i for i in cluster.items if i.container is not None and i.container.id == c.id
            and i.kind == "exec"]
    assert work and not any(i.runtime_setup for i in work)


def test_pod_that_appears_after_the_event(cluster, kube_module, containers):
    c = containers()
    c.exec("/bin/true", "before")
    before = _exec_of(cluster, c, ["/bin/true", "before"])
    assert before.fields()["container.id"] == c.id
    assert before.fields()["k8s.pod"] is None          # delivered now, not held back
    kube_module.put_pod(kube_module.make_pod("late", "late-pod", NODE, {
        "main": {"id": f"containerd://{c.id}", "image": "busybox:1.36"}}))
    assert _wait(lambda: cluster.pipe.pods.pod_of_container(c.id) is not None, cluster)
    c.exec("/bin/true", "after")
    after = _exec_of(cluster, c, ["/bin/true", "after"])
    assert (after.fields()["k8s.ns"], after.fields()["k8s.pod"],
            after.fields()["container.image"]) == ("late", "late-pod", "busybox:1.36")


def test_standalone_names_from_runtime_annotations_and_discovery(standalone, containers):
    pipe = standalone.pipe
    assert not pipe.discovery.parents           # the glob entry only (no parent watched)
    c = containers(annotations=CRI)
    # no watched parent: the container is watched once its cgroup_mkdir is seen, because
    # a glob entry covers it
    assert _wait(lambda: c.cgroup_id in pipe.sensor.watched(), standalone)
    c.exec("/bin/true", "standalone")
    item = _exec_of(standalone, c, ["/bin/true", "standalone"])
    f = item.fields()
    assert (f["container.id"], f["container.name"], f["container.image"]) == (
        c.id, "api", "ghcr.io/acme/checkout:1.2")
    assert (f["k8s.ns"], f["k8s.pod"]) == ("shop", "checkout-7d9f-x")


def test_a_container_no_entry_covers_is_not_watched(standalone, containers):
    """sensor.watched_cgroups means what it says: a recognisable container cgroup outside
    every entry is not watched (issue 20, finding 17)."""
    pipe = standalone.pipe
    covered = containers()
    other = containers(name=f"other-{os.getpid()}")          # <parent>/other-…
    assert _wait(lambda: covered.cgroup_id in pipe.sensor.watched(), standalone)
    other.exec("/bin/true", "unwatched")
    covered.exec("/bin/true", "watched")
    _exec_of(standalone, covered, ["/bin/true", "watched"])
    assert other.cgroup_id not in pipe.sensor.watched()
    assert other.cgroup_id not in pipe.discovery.containers
    assert pipe.discovery.skipped >= 1
    assert not [i for i in standalone.items if i.event.cgroup_id == other.cgroup_id]


def test_a_stopped_container_leaves_the_watched_map(standalone, containers, tmp_path):
    pipe = standalone.pipe
    c = containers()
    assert _wait(lambda: c.cgroup_id in pipe.sensor.watched(), standalone)
    cid = c.cgroup_id
    bpf_map = pipe.sensor._bpf[b"watched_cgroups"]
    assert any(k.value == cid for k in bpf_map.keys())
    c.stop()
    assert _wait(lambda: cid not in pipe.sensor.watched(), standalone)
    assert not any(k.value == cid for k in bpf_map.keys())
    assert cid not in pipe.discovery.containers
