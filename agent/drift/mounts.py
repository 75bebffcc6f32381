"""Which filesystems an enforced container may run code from: its root overlay, and the mounts
that `drift.allow_exec_from` allows. The kernel decides at exec and at every executable
mapping (bpf/process.c, other_fs()); this module tells it, per container, the device of the
root overlay and the allowed mounts, in two BPF maps:

    exec_roots[cgroup id]              = root overlay's dev_t (kernel encoding, major<<20|minor)
    exec_allow[(cgroup id, mount id)]  = 1    mount ids as /proc/PID/mountinfo numbers them

An allow-list entry is a path as the container sees it; it allows every mount whose mount
point is at or below it (`/opt/plugins` allows `/opt/plugins` and `/opt/plugins/x`), never a
part of a mount (the kernel tells mounts apart, not directories). Mounts are told apart by id,
not by device: the emptyDirs of a pod, its /etc/hosts and a hostPath often share one device.

When: a container is enforced as soon as its cgroup appears (prevent_all), before it has a
process or a mount. Its mounts are read from the first event of its workload — a process that
is not the runtime's setup (proc.runtime_setup, decided from kernel facts): that process runs
in the container's root, every mount in place (the runtime's setup still sees the host's
root). Until then the container is judged on its root overlay alone: execs from its other
filesystems are detected, not prevented — the entrypoint's own exec comes first. A root that
is not an overlay decides nothing: no entry is written (asked again on a few later events, in
case the first reader had not entered the root yet). Mounts made after that reading are not
allowed. An unreadable /proc entry (the process is gone) is retried on the next event.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from ..context.containers import read_mountinfo

log = logging.getLogger("mamori.drift")


@dataclass(frozen=True, slots=True)
class Mount:
    id: int
    parent: int
    dev: int            # kernel encoding: major << 20 | minor (what the probes compare)
    root: str           # the directory of its filesystem mounted here
    mount_point: str    # as the process whose mountinfo it is sees it
    fstype: str


def _unescape(s: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def parse_mountinfo(lines) -> list[Mount]:
    out = []
    for line in lines:
        left, sep, right = line.partition(" - ")
        f = left.split(" ")
        if not sep or len(f) < 5:
            continue
        try:
            major, minor = (int(x) for x in f[2].split(":"))
            out.append(Mount(int(f[0]), int(f[1]), (major << 20) | minor, _unescape(f[3]),
                             _unescape(f[4]), right.split(" ", 1)[0]))
        except ValueError:
            continue
    return out


def root_mount(mounts: list[Mount]) -> Mount | None:
    """The mount at / that is visible (the last one mounted there)."""
    roots = [m for m in mounts if m.mount_point == "/"]
    return roots[-1] if roots else None


def at_or_below(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/") or not prefix


def allowed_mounts(mounts: list[Mount], prefixes) -> set[int]:
    """Ids of the mounts whose mount point is at or below one of the prefixes."""
    return {m.id for m in mounts if any(at_or_below(m.mount_point, p) for p in prefixes)}


@dataclass(frozen=True, slots=True)
class ExecMounts:
    root_fstype: str
    root_dev: int | None        # None: the root is not an overlay, nothing is written
    allowed: frozenset          # mount ids


class MountResolver:
    NOT_OVERLAY_TRIES = 16      # readings that find a root that is not an overlay, then done

    def __init__(self, sensor, prefixes=()):
        self.sensor = sensor
        self.prefixes = tuple(prefixes)
        self.waiting: dict[int, int] = {}        # cgroup id -> readings that decided nothing
        self.resolved: dict[int, ExecMounts] = {}

    def add(self, cgroup_id: int) -> None:
        """An enforced container: read its mounts from its workload's first event."""
        if cgroup_id not in self.resolved:
            self.waiting.setdefault(cgroup_id, 0)

    def remove(self, cgroup_id: int) -> None:
        self.waiting.pop(cgroup_id, None)
        m = self.resolved.pop(cgroup_id, None)
        if m is not None and m.root_dev is not None:
            self.sensor.clear_exec_mounts(cgroup_id, m.allowed)
            self.sensor.forget_device(m.root_dev)      # its overlay is gone with it

    def workload(self, cgroup_id: int, pid: int) -> ExecMounts | None:
        """A process of the container's workload (not the runtime's setup): read the
        container's mounts through it, once. Cheap to call for every event: a dict lookup
        when there is nothing to do."""
        if cgroup_id not in self.waiting:
            return None
        lines = read_mountinfo(pid)
        if lines is None:
            return None                           # gone: the next event will do
        mounts = parse_mountinfo(lines)
        top = root_mount(mounts)
        if top is None:
            return None
        if top.fstype != "overlay":
            self.waiting[cgroup_id] += 1
            if self.waiting[cgroup_id] < self.NOT_OVERLAY_TRIES:
                return None
            found = ExecMounts(top.fstype, None, frozenset())
            log.info("drift prevention: the root of cgroup %d is %s, not overlay: execs from "
                     "its other filesystems cannot be told from the image's and are not "
                     "prevented", cgroup_id, top.fstype)
        else:
            found = ExecMounts(top.fstype, top.dev,
                               frozenset(allowed_mounts(mounts, self.prefixes)))
            self.sensor.set_exec_mounts(cgroup_id, found.root_dev, found.allowed)
            log.info("drift prevention: cgroup %d runs code only from its root overlay and %d "
                     "allowed mount(s)", cgroup_id, len(found.allowed))
        del self.waiting[cgroup_id]
        self.resolved[cgroup_id] = found
        return found
