"""cgroup id <-> path for the cgroup2 tree: walked once at start, then kept current from the
cgroup_mkdir/cgroup_rmdir events. A removed cgroup's entry stays `removed_ttl` seconds so
that events already in flight from its processes still resolve."""
from __future__ import annotations

import os
import time


class CgroupIndex:
    def __init__(self, root: str, removed_ttl: float = 10.0, clock=time.monotonic):
        self.root = root                       # e.g. /sys/fs/cgroup/unified
        self.removed_ttl = removed_ttl
        self._clock = clock
        self._path: dict[int, str] = {}        # id -> path below root ("/a/b")
        self._removed: dict[int, float] = {}

    def walk(self) -> int:
        n = 0
        for dirpath, _dirs, _files in os.walk(self.root):
            try:
                ino = os.stat(dirpath).st_ino
            except OSError:
                continue
            rel = dirpath[len(self.root):] or "/"
            self._path[ino] = rel
            n += 1
        return n

    def add(self, cgroup_id: int, path: str) -> None:
        self._path[cgroup_id] = path
        self._removed.pop(cgroup_id, None)

    def remove(self, cgroup_id: int) -> None:
        if cgroup_id in self._path:
            self._removed[cgroup_id] = self._clock()
        self.expire()

    def expire(self) -> None:
        now = self._clock()
        for cid, t in list(self._removed.items()):
            if now - t >= self.removed_ttl:
                del self._removed[cid]
                self._path.pop(cid, None)

    def path(self, cgroup_id: int, pid: int | None = None) -> str | None:
        """The cgroup's path. If unknown, ask /proc/<pid>/cgroup of a process in it."""
        p = self._path.get(cgroup_id)
        if p is None and pid is not None:
            p = self._from_proc(cgroup_id, pid)
        return p

    def _from_proc(self, cgroup_id: int, pid: int) -> str | None:
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                for line in f:
                    hier, _, rest = line.rstrip("\n").partition(":")
                    ctrl, _, path = rest.partition(":")
                    if hier == "0" and ctrl == "":
                        if os.stat(self.root + path).st_ino == cgroup_id:
                            self._path[cgroup_id] = path
                            return path
        except OSError:
            pass
        return None

    def ids(self):
        return self._path.items()
