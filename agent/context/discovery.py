"""Keeps the sensor's watched set current as containers start and stop, from the
cgroup_mkdir/cgroup_rmdir events (no polling).

Watched: what `sensor.watched_cgroups` says, and nothing else. A plain entry (kubepods, …)
is a parent: it and every cgroup below it are watched from their first instruction through
the in-kernel ancestor check. An entry with a glob (`system.slice/docker-*.scope`: `*`, `?`
and `[…]` within one path component) matches cgroups as the runtime makes them; each match
that is a container is watched itself, with everything below it. A container cgroup that no
entry covers is not watched, however recognisable its name."""
from __future__ import annotations

import fnmatch
import logging

from .cgroup_index import CgroupIndex
from .registry import ContainerRegistry

log = logging.getLogger("mamori.discovery")


class Discovery:
    def __init__(self, sensor, index: CgroupIndex, registry: ContainerRegistry,
                 watched_parents=()):
        self.sensor = sensor
        self.index = index
        self.registry = registry
        entries = ["/" + p.strip("/") for p in watched_parents]
        self.parents = {p for p in entries if not _is_glob(p)}
        self.patterns = tuple(tuple(p.strip("/").split("/")) for p in entries if _is_glob(p))
        self.skipped = 0            # container cgroups seen that no entry covers
        self.containers: dict[int, str] = {}      # watched container cgroup id -> path
        self.on_container = None    # callback(cgroup id, container or None) for new ones
        self.on_gone = None         # callback(cgroup id) when a container cgroup goes
        # more observers of containers coming and going (the inventory): objects with
        # container_started(cgroup id, path, container id) and container_gone(cgroup id);
        # they must not block (they queue)
        self.listeners: list = []

    def start(self) -> None:
        """Walk the cgroup2 tree once: watch the parents that exist and every container."""
        self.index.walk()
        for cid, path in list(self.index.ids()):
            self._consider(cid, path)

    def _consider(self, cid: int, path: str) -> None:
        if path in self.parents:
            self.sensor.watch_cgroup(cid)
            log.info("watching %s (and everything below it)", path)
        elif self.registry.ref_for_path(path) is not None:
            if not self.covers(path):
                self.skipped += 1
                log.debug("container cgroup %s not watched: outside sensor.watched_cgroups",
                          path)
                return
            self.containers[cid] = path
            self.sensor.watch_cgroup(cid)
            log.debug("container cgroup %s watched", path)
            if self.on_container is not None:
                self.on_container(cid, None)
            ref = self.registry.ref_for_path(path)
            for listener in self.listeners:
                listener.container_started(cid, path, ref.id)

    def covers(self, path: str) -> bool:
        """Is this cgroup path at or below a watched parent, or matched (itself or an
        ancestor) by a glob entry?"""
        for parent in self.parents:
            if path == parent or path.startswith(parent.rstrip("/") + "/"):
                return True
        parts = path.strip("/").split("/")
        return any(len(parts) >= len(pat) and
                   all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pat))
                   for pat in self.patterns)

    def handle(self, ev) -> None:
        if ev.kind == "cgroup_mkdir":
            self.index.add(ev.id, ev.path)
            self._consider(ev.id, ev.path)
        elif ev.kind == "cgroup_rmdir":
            self.index.remove(ev.id)
            if self.containers.pop(ev.id, None) is not None or ev.path in self.parents:
                self.sensor.unwatch_cgroup(ev.id)
                if self.on_gone is not None:
                    self.on_gone(ev.id)
                for listener in self.listeners:
                    listener.container_gone(ev.id)
            self.registry.forget(ev.id)


def _is_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")
