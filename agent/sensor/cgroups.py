"""cgroup2 paths and ids: what the in-kernel filter matches on."""
from __future__ import annotations

import os


def cgroup2_root(mountinfo: str = "/proc/self/mountinfo") -> str:
    """Where cgroup2 is mounted: /sys/fs/cgroup (unified) or /sys/fs/cgroup/unified (hybrid)."""
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split(" ", 1)[0] == "cgroup2":
                return left.split(" ")[4]
    raise FileNotFoundError("no cgroup2 filesystem is mounted (see /proc/self/mountinfo)")


def resolve(path: str, root: str | None = None) -> str:
    """A cgroup path as users write it ('kubepods', '/kubepods/burstable', or a full
    '/sys/fs/cgroup/...' path) -> the directory in the cgroup2 mount."""
    root = root or cgroup2_root()
    if path.startswith(root + "/") or path == root:
        return path
    return os.path.join(root, path.lstrip("/"))


def cgroup_id(directory: str) -> int:
    """The id BPF reports (bpf_get_current_cgroup_id) for a cgroup2 directory: its inode."""
    return os.stat(directory).st_ino


def cgroup_of_pid(pid: int | str = "self") -> str:
    """The cgroup2 path of a process, relative to the cgroup2 root ('/user.slice/...')."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            hier, _, rest = line.rstrip("\n").partition(":")
            controllers, _, path = rest.partition(":")
            if hier == "0" and controllers == "":
                return path
    raise FileNotFoundError(f"process {pid} has no cgroup2 entry")
