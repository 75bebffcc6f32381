"""cgroup id -> container: resolved once per cgroup from its path, enriched with what the
runtime left on disk (annotations, image, names) and the container's root filesystem."""
from __future__ import annotations

import time
from dataclasses import replace

from . import containers as ct
from .cgroup_index import CgroupIndex


class ContainerRegistry:
    def __init__(self, index: CgroupIndex, container_parents=("mamori-test",),
                 state_dirs=ct.RUNTIME_STATE_DIRS, retry_after: float = 1.0,
                 clock=time.monotonic):
        self.index = index
        # cgroups directly below these parents are containers named by their directory
        # (runc or crun run by hand with cgroupsPath "<parent>/<id>")
        self.container_parents = tuple("/" + p.strip("/") for p in container_parents)
        self.state_dirs = state_dirs
        self.retry_after = retry_after
        self._clock = clock
        self._by_cgroup: dict[int, ct.ContainerInfo | None] = {}
        self._negative: dict[int, float] = {}
        self._by_id: dict[str, ct.ContainerInfo] = {}
        # containers described before their runtime wrote its state: asked again later
        self._incomplete: dict[str, float] = {}
        # container id -> the pid whose mountinfo could not be read (gone): not read again
        # for each of its events, only for another process's
        self._rootfs_failed: dict[str, int] = {}

    def ref_for_path(self, path: str) -> ct.ContainerRef | None:
        parent, _, last = path.rstrip("/").rpartition("/")
        if last and parent in self.container_parents:
            return ct.ContainerRef(last, "runc", None, path)
        ref = ct.parse_cgroup_path(path)
        if ref is None and last:
            # runc/crun by hand with a cgroup path that follows no convention
            if ct.runc_state(last, self.state_dirs) is not None:
                ref = ct.ContainerRef(last, "runc", None, path)
        return ref

    def lookup(self, cgroup_id: int, pid: int | None = None) -> ct.ContainerInfo | None:
        """The container a cgroup belongs to (None: the host)."""
        if cgroup_id in self._by_cgroup:
            info = self._by_cgroup[cgroup_id]
            if info is not None and info.id in self._incomplete and \
                    self._clock() - self._incomplete[info.id] >= self.retry_after:
                info = self._redescribe(cgroup_id, info, pid)
            return info
        t = self._negative.get(cgroup_id)
        if t is not None and self._clock() - t < self.retry_after:
            return None
        path = self.index.path(cgroup_id, pid)
        ref = self.ref_for_path(path) if path else None
        if ref is None:
            self._negative[cgroup_id] = self._clock()
            return None
        self._negative.pop(cgroup_id, None)
        info = self._by_id.get(ref.id) or self._describe(ref, pid)
        self._by_cgroup[cgroup_id] = info
        self._by_id[ref.id] = info
        return info

    def _redescribe(self, cgroup_id: int, old: ct.ContainerInfo, pid) -> ct.ContainerInfo:
        ref = ct.ContainerRef(old.id, old.runtime, old.pod_uid, old.cgroup_path)
        info = self._describe(ref, pid)
        if info.rootfs is None and old.rootfs is not None:
            info = replace(info, rootfs=old.rootfs)
        self._by_cgroup[cgroup_id] = self._by_id[old.id] = info
        return info

    def by_id(self, container_id: str) -> ct.ContainerInfo | None:
        return self._by_id.get(container_id)

    def forget(self, cgroup_id: int) -> ct.ContainerInfo | None:
        info = self._by_cgroup.pop(cgroup_id, None)
        self._negative.pop(cgroup_id, None)
        if info is not None:
            self._by_id.pop(info.id, None)
            self._incomplete.pop(info.id, None)
        return info

    def refresh_rootfs(self, info: ct.ContainerInfo, pid: int) -> ct.ContainerInfo:
        """Read the root filesystem from a process known to be the workload (not the
        runtime's setup process, which still sees the host's root)."""
        if info.rootfs is not None or self._rootfs_failed.get(info.id) == pid:
            return info
        rootfs = ct.rootfs_of(pid)
        if rootfs is None:
            # gone already (a short program at a container's start, under load): the
            # container's own init, as the runtime's state names it, has the same root
            state = ct.runc_state(info.id, self.state_dirs)
            init = state.get("init_process_pid") if state else None
            if isinstance(init, int) and init != pid:
                rootfs = ct.rootfs_of(init)
        if rootfs is None:
            if len(self._rootfs_failed) >= 4096:
                self._rootfs_failed.clear()
            self._rootfs_failed[info.id] = pid
            return info
        self._rootfs_failed.pop(info.id, None)
        new = replace(info, rootfs=rootfs)
        self._by_id[info.id] = new
        for cg, i in list(self._by_cgroup.items()):
            if i is info:
                self._by_cgroup[cg] = new
        return new

    def _describe(self, ref: ct.ContainerRef, pid: int | None) -> ct.ContainerInfo:
        meta, ann, rootfs = {}, {}, None
        state = ct.runc_state(ref.id, self.state_dirs)
        if state is None:
            self._incomplete[ref.id] = self._clock()
        else:
            self._incomplete.pop(ref.id, None)
            ann = ct.oci_annotations(state)
            meta = ct.from_annotations(ann)
            init = state.get("init_process_pid")
            if init:
                rootfs = ct.rootfs_of(init)
        return ct.ContainerInfo(
            id=ref.id, runtime=ref.runtime, cgroup_path=ref.cgroup_path,
            pod_uid=ref.pod_uid or meta.get("pod_uid"), name=meta.get("name", ""),
            image=meta.get("image", ""), image_id=meta.get("image_id", ""),
            pod_name=meta.get("pod_name", ""), pod_namespace=meta.get("pod_namespace", ""),
            rootfs=rootfs, annotations=ann)

