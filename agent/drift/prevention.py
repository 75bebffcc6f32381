"""Drift prevention: which containers are enforced, and the copy-ups user space has found
unchanged.

The kill itself happens in the kernel, at exec, before the new program's first instruction
(bpf/process.c), without waiting for user space. The kernel allows a program with an upper
copy only if it also exists in the image and nothing opened that file for writing since its
copy-up — a chmod or touch copies a file up without changing it — or since user space last
compared it with the image and found it unchanged (copyup_verified), which is what this
module does when it sees a container open an image file for writing.

Left open (documented in docs/drift.md): a file held open for writing past that comparison,
written, closed and then executed runs; it is still reported as modified drift.
"""
from __future__ import annotations

import fnmatch
import logging
import os

from .detector import Hasher

log = logging.getLogger("mamori.drift")


class DriftPrevention:
    def __init__(self, sensor, hasher: Hasher, prevent_all: bool = False,
                 namespaces=(), images=()):
        self.sensor = sensor
        self.hasher = hasher
        self.prevent_all = prevent_all
        self.namespaces = set(namespaces)
        self.images = tuple(images)
        self.enforced: set[int] = set()
        self.verified = 0

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
            log.info("drift prevention on for container %s (cgroup %d)",
                     getattr(container, "id", "?"), cgroup_id)

    def forget(self, cgroup_id: int) -> None:
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

    def _stat_in_container(self, pid: int, path: str, cgroup_path: str):
        """stat() of a path as the container sees it: through the root of the process that
        opened it, or, if it is gone, of any process still in the container's cgroup."""
        pids = [pid]
        try:
            root = self.sensor.cgroup_root
            with open(os.path.join(root + cgroup_path, "cgroup.procs")) as f:
                pids += [int(x) for x in f.read().split()]
        except (OSError, ValueError, AttributeError):
            pass
        for p in pids:
            try:
                return os.stat(f"/proc/{p}/root{path}")
            except OSError:
                continue
        return None

    def verify(self, pid: int, path: str, rootfs, cgroup_path: str = "") -> bool:
        st = self._stat_in_container(pid, path, cgroup_path)
        if st is None:
            return False
        kdev = (os.major(st.st_dev) << 20) | os.minor(st.st_dev)
        before = self.sensor.inode_writes(st.st_ino, kdev)
        upper = os.path.join(rootfs.upperdir, path.lstrip("/"))
        lower = next((os.path.join(layer, path.lstrip("/")) for layer in rootfs.lowerdirs
                      if os.path.isfile(os.path.join(layer, path.lstrip("/")))), None)
        if lower is None:
            return False
        a, b = self.hasher.digest(upper), self.hasher.digest(lower)
        if a is None or b is None or a != b or a[1] is None:
            return False
        self.sensor.mark_copyup_verified(st.st_ino, kdev, before)
        self.verified += 1
        return True
