"""Keeps the sensor's watched set current as containers start and stop, from the
cgroup_mkdir/cgroup_rmdir events (no polling).

Watched: the configured parents (kubepods, …), which cover every container below them from
its first instruction through the in-kernel ancestor check, and each container cgroup
itself, so that containers of runtimes outside those parents are watched too once seen."""
from __future__ import annotations

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
        self.parents = {"/" + p.strip("/") for p in watched_parents}
        self.containers: dict[int, str] = {}      # watched container cgroup id -> path
        self.on_container = None    # callback(cgroup id, container or None) for new ones
        self.on_gone = None         # callback(cgroup id) when a container cgroup goes

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
            self.containers[cid] = path
            self.sensor.watch_cgroup(cid)
            log.debug("container cgroup %s watched", path)
            if self.on_container is not None:
                self.on_container(cid, None)

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
            self.registry.forget(ev.id)
