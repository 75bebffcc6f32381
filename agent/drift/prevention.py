"""Drift prevention: which containers are enforced, and the copy-ups user space has found
unchanged.

The kill itself happens in the kernel, at exec, before the new program's first instruction
(bpf/process.c), without waiting for user space. The kernel allows a program with an upper
copy only if it also exists in the image and nothing opened that file for writing since its
copy-up — a chmod or touch copies a file up without changing it — or since user space last
compared it with the image and found it unchanged (copyup_verified), which is what this
module does when it sees a container open an image file for writing.

That comparison reads the container's files the way every drift reader does: the path is
resolved under the root of a process still in the container's cgroup with links kept inside
it (container_files, layers), and the copy is compared with the image file it came from
(copy_up.compare: bounded hashing with a deadline); only two complete, equal digests mark it
unchanged, so a FIFO, a timeout or a missing origin leave the kernel refusing it.

Left open (documented in docs/drift.md): a file held open for writing past that comparison,
written, closed and then executed runs; it is still reported as modified drift.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import stat

from .copy_up import compare
from .detector import Hasher
from .layers import Layers
from .mounts import MountResolver

log = logging.getLogger("mamori.drift")


class DriftPrevention:
    def __init__(self, sensor, hasher: Hasher, prevent_all: bool = False,
                 namespaces=(), images=(), allow_exec_from=()):
        self.sensor = sensor
        self.hasher = hasher
        self.prevent_all = prevent_all
        self.namespaces = set(namespaces)
        self.images = tuple(images)
        self.enforced: set[int] = set()
        self.verified = 0
        # an enforced container's mounts: code runs only from its root overlay and from the
        # mounts drift.allow_exec_from allows (agent/drift/mounts.py)
        self.mounts = MountResolver(sensor, allow_exec_from)

    @property
    def active(self) -> bool:
        return self.prevent_all or bool(self.namespaces) or bool(self.images)

    def wants(self, container, namespace: str | None) -> bool:
        if self.prevent_all:
            return True
        if namespace and namespace in self.namespaces:
            return True
        image = container.image if container is not None else ""
        return bool(image) and any(fnmatch.fnmatch(image, g) for g in self.images)

    def consider(self, cgroup_id: int, container, namespace: str | None = None) -> None:
        """Decide once per container cgroup (again if metadata arrives later)."""
        if not self.active or cgroup_id in self.enforced:
            return
        if self.wants(container, namespace):
            self.sensor.enforce_drift(cgroup_id, True)
            self.enforced.add(cgroup_id)
            self.mounts.add(cgroup_id)
            log.info("drift prevention on for container %s (cgroup %d)",
                     getattr(container, "id", "?"), cgroup_id)

    def forget(self, cgroup_id: int) -> None:
        self.mounts.remove(cgroup_id)
        if cgroup_id in self.enforced:
            self.sensor.enforce_drift(cgroup_id, False)
            self.enforced.discard(cgroup_id)

    def on_item(self, item) -> None:
        """A container opened an image file for writing: if the copy is still the image's,
        tell the kernel (with the write count it had before we compared)."""
        ev = item.event
        if item.container is None or ev.cgroup_id not in self.enforced:
            return
        if ev.kind != "open" or ev.result < 0 or not ev.path.startswith("/"):
            return
        from ..sensor.names import writable
        if not writable(ev.flags):
            return
        rootfs = item.container.rootfs
        if rootfs is None or not rootfs.is_overlay or not rootfs.upperdir:
            return
        self.verify(ev.pid, ev.path, rootfs, item.container.cgroup_path)

    MAX_PIDS = 16          # processes of the container tried when the opener is gone

    def _stat_in_container(self, pid: int, path: str, cgroup_path: str):
        """What the container sees at `path` (a layers.Found: the resolved path and the
        lstat of its file), looked up under the root of the process that opened it — or, if
        it is gone, of another process still in the container's cgroup — with links
        resolved inside that root, never through the host's (container_files). A process
        is used only while it is in the container's cgroup (pids are reused). None when no
        such process is left, or the path leads off the root overlay."""
        pids = [pid]
        try:
            root = self.sensor.cgroup_root
            with open(os.path.join(root + cgroup_path, "cgroup.procs")) as f:
                pids += [int(x) for x in f.read().split()[:self.MAX_PIDS]]
        except (OSError, ValueError, AttributeError, TypeError):
            pass
        for p in dict.fromkeys(pids):
            try:
                found = _find_under_root(p, path, cgroup_path)
            except OSError:
                continue
            if found is not None:
                return found
        return None

    def verify(self, pid: int, path: str, rootfs, cgroup_path: str = "") -> bool:
        """Compare the copy the container opened for writing with the image file it was
        copied from (copy_up.compare: origin handle, else the same path in a lower layer;
        bounded hashing with a deadline). Only two complete, equal digests mark it verified;
        anything else — a FIFO, a timeout, no origin — leaves the kernel refusing it."""
        found = self._stat_in_container(pid, path, cgroup_path)
        if found is None or found.top is None or not stat.S_ISREG(found.top.st.st_mode):
            return False
        st = found.top.st
        kdev = (os.major(st.st_dev) << 20) | os.minor(st.st_dev)
        before = self.sensor.inode_writes(st.st_ino, kdev)
        try:
            with Layers([rootfs.upperdir, *rootfs.lowerdirs]) as layers:
                v = compare(layers, layers.find(found.path, follow=False), self.hasher)
        except OSError as e:
            log.debug("copy-up of %s not verified: %s", found.path, e)
            return False
        if v.same is not True:
            return False
        self.sensor.mark_copyup_verified(st.st_ino, kdev, before, st.st_ctime_ns)
        self.verified += 1
        return True


def _find_under_root(pid: int, path: str, cgroup_path: str):
    """layers.Found for `path` under /proc/PID/root, if PID is in cgroup_path (or below)."""
    pdir = os.open(f"/proc/{int(pid)}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        root = os.open("root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pdir)
        try:
            if cgroup_path and not _in_cgroup(pdir, cgroup_path):
                return None               # checked after opening the root: it was theirs
            with Layers.of_fd(root) as view:
                return view.find(path, follow=True)
        finally:
            os.close(root)
    finally:
        os.close(pdir)


def _in_cgroup(pdir: int, cgroup_path: str) -> bool:
    fd = os.open("cgroup", os.O_RDONLY | os.O_CLOEXEC, dir_fd=pdir)
    with os.fdopen(fd) as f:
        for line in f.read(65536).splitlines():
            if line.startswith("0::"):
                cg = line[3:]
                return cg == cgroup_path or cg.startswith(cgroup_path.rstrip("/") + "/")
    return False
