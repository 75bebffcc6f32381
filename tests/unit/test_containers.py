"""cgroup path -> container, mountinfo -> root filesystem, runtime annotations: real-world
examples from each runtime, driver and cgroup version."""
import pytest

from agent.context import containers as ct

CID = "3f9a2b7c1d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd"
UID = "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"
UID_ = UID.replace("-", "_")


@pytest.mark.parametrize("path,runtime,pod_uid", [
    # containerd (CRI), systemd driver, cgroup v2
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/"
     f"cri-containerd-{CID}.scope", "containerd", UID),
    # containerd, cgroupfs driver (v2, and the same path in every v1 hierarchy)
    (f"/kubepods/burstable/pod{UID}/{CID}", "containerd", UID),
    (f"/kubepods/besteffort/pod{UID}/{CID}", "containerd", UID),
    (f"/kubepods/pod{UID}/{CID}", "containerd", UID),                   # Guaranteed QoS
    # CRI-O, systemd and cgroupfs drivers
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/"
     f"crio-{CID}.scope", "cri-o", UID),
    (f"/kubepods/besteffort/pod{UID}/crio-{CID}", "cri-o", UID),
    # crun's nested cgroup below the container's own
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/crio-{CID}.scope/container", "cri-o", UID),
    # Docker, systemd and cgroupfs drivers
    (f"/system.slice/docker-{CID}.scope", "docker", None),
    (f"/docker/{CID}", "docker", None),
    # podman
    (f"/machine.slice/libpod-{CID}.scope", "podman", None),
    (f"/machine.slice/libpod-{CID}.scope/container", "podman", None),
    (f"/libpod_parent/libpod-{CID}", "podman", None),
])
def test_container_paths(path, runtime, pod_uid):
    ref = ct.parse_cgroup_path(path)
    assert ref == ct.ContainerRef(CID, runtime, pod_uid, path)


@pytest.mark.parametrize("path", [
    "/", "/user.slice/user-1000.slice/session-2.scope", "/system.slice/containerd.service",
    "/kubepods", "/kubepods.slice/kubepods-burstable.slice", f"/kubepods/burstable/pod{UID}",
    f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/"
    f"crio-conmon-{CID}.scope",
    f"/machine.slice/libpod-conmon-{CID}.scope",
    f"/some/random/{CID}",            # a bare id outside any known parent: not guessed
])
def test_host_paths_are_not_containers(path):
    assert ct.parse_cgroup_path(path) is None


def test_runc_by_hand_needs_the_runtime_state():
    assert ct.parse_cgroup_path("/mycontainers/web") is None
    assert ct.parse_cgroup_path("/mycontainers/web", {"web"}) == ct.ContainerRef(
        "web", "runc", None, "/mycontainers/web")


def test_overlay_root_from_mountinfo():
    lines = [
        "22 1 0:21 / /proc rw - proc proc rw",
        "75 49 0:39 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/l/3/fs:"
        "/var/lib/l/2/fs,upperdir=/var/lib/s/9/fs,workdir=/var/lib/s/9/work,uuid=on",
    ]
    assert ct.parse_root_mount(lines) == ct.RootFS(
        "overlay", ("/var/lib/l/3/fs", "/var/lib/l/2/fs"), "/var/lib/s/9/fs")


def test_escaped_paths_and_other_snapshotters():
    lines = ["75 49 0:39 / / rw - overlay overlay rw,lowerdir=/a\\040b\\,c,upperdir=/u"]
    assert ct.parse_root_mount(lines) == ct.RootFS("overlay", ("/a b,c",), "/u")
    assert ct.parse_root_mount(["60 1 253:3 / / rw - xfs /dev/mapper/thin rw"]) == \
        ct.RootFS("xfs")
    assert not ct.RootFS("xfs").is_overlay
    assert ct.parse_root_mount(["22 1 0:21 / /proc rw - proc proc rw"]) is None


def test_annotations_of_containerd_and_cri_o():
    containerd = {"io.kubernetes.cri.container-name": "api",
                  "io.kubernetes.cri.image-name": "ghcr.io/acme/checkout:1.2",
                  "io.kubernetes.cri.sandbox-name": "checkout-7d9f-x",
                  "io.kubernetes.cri.sandbox-namespace": "shop",
                  "io.kubernetes.cri.sandbox-uid": UID}
    assert ct.from_annotations(containerd) == {
        "name": "api", "image": "ghcr.io/acme/checkout:1.2", "pod_name": "checkout-7d9f-x",
        "pod_namespace": "shop", "pod_uid": UID}
    crio = {"io.kubernetes.container.name": "web", "io.kubernetes.pod.name": "web-0",
            "io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.uid": UID,
            "io.kubernetes.cri-o.ImageName": "nginx:1.25",
            "io.kubernetes.cri-o.ImageRef": "sha256:" + "0" * 64}
    assert ct.from_annotations(crio) == {
        "name": "web", "image": "nginx:1.25", "image_id": "sha256:" + "0" * 64,
        "pod_name": "web-0", "pod_namespace": "default", "pod_uid": UID}


def test_annotations_from_runc_state_and_bundle(tmp_path):
    import json
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(
        {"annotations": {"io.kubernetes.cri.image-name": "busybox:1.36"}}))
    state = {"config": {"labels": [f"bundle={bundle}"], "annotations": {"a": "b"}}}
    assert ct.oci_annotations(state) == {"a": "b", "io.kubernetes.cri.image-name": "busybox:1.36"}


def test_mountinfo_is_read_with_a_bound_and_no_cut_line(monkeypatch):
    import os
    from agent.context import containers as ct
    full = open(f"/proc/{os.getpid()}/mountinfo").read().splitlines()
    monkeypatch.setattr(ct, "MOUNTINFO_MAX", len(full[0]) + len(full[1]) + 5)
    assert ct.read_mountinfo(os.getpid()) == full[:2]
    assert ct.read_mountinfo(2 ** 22 + 12345) is None


def test_a_gone_processs_root_is_not_read_again_for_each_of_its_events(monkeypatch):
    from agent.context import containers as ct
    from agent.context.cgroup_index import CgroupIndex
    from agent.context.registry import ContainerRegistry
    reads = []

    def rootfs_of(pid):
        reads.append(pid)
        return ct.RootFS("overlay", ("/l",), "/u") if pid == 3 else None
    monkeypatch.setattr(ct, "rootfs_of", rootfs_of)
    reg = ContainerRegistry(CgroupIndex("/nonexistent"))
    info = ct.ContainerInfo("c1", "runc", "/mamori-test/c1")
    for _ in range(3):
        assert reg.refresh_rootfs(info, 2) is info          # pid 2 is gone: read once
    assert reads == [2]
    new = reg.refresh_rootfs(info, 3)                      # another process: read
    assert reads == [2, 3] and new.rootfs == ct.RootFS("overlay", ("/l",), "/u")
    assert reg.refresh_rootfs(new, 2) is new and reads == [2, 3]


def test_a_gone_processs_root_is_read_from_the_containers_init(monkeypatch):
    """The process of the event exited before its events were read: the root comes from the
    container's init, as the runtime's state names it."""
    from agent.context import containers as ct
    from agent.context.cgroup_index import CgroupIndex
    from agent.context.registry import ContainerRegistry
    reads = []

    def rootfs_of(pid):
        reads.append(pid)
        return ct.RootFS("overlay", ("/l",), "/u") if pid == 40 else None
    monkeypatch.setattr(ct, "rootfs_of", rootfs_of)
    monkeypatch.setattr(ct, "runc_state", lambda cid, dirs=None: {"init_process_pid": 40}
                        if cid == "c1" else None)
    reg = ContainerRegistry(CgroupIndex("/nonexistent"))
    new = reg.refresh_rootfs(ct.ContainerInfo("c1", "runc", "/mamori-test/c1"), 41)
    assert reads == [41, 40] and new.rootfs == ct.RootFS("overlay", ("/l",), "/u")
    other = ct.ContainerInfo("c2", "runc", "/mamori-test/c2")     # no state: nothing to ask
    assert reg.refresh_rootfs(other, 42) is other and reads == [41, 40, 42]
