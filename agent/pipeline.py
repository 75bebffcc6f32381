"""The agent's stages wired together: probes -> discovery and context -> consumers.

    pipe = Pipeline(cfg)
    pipe.start()
    for item in pipe.step():     # one poll of the ring: enriched events, in order
        ...
"""
from __future__ import annotations

import logging
import time

from .config import Config
from .context.cgroup_index import CgroupIndex
from .context.discovery import Discovery
from .context.enricher import Enricher
from .context.pods import PodWatcher, api_client
from .context.process_tree import ProcessTree
from .context.registry import ContainerRegistry
from .drift.detector import DriftDetector, Hasher
from .drift.prevention import DriftPrevention
from .sensor import cgroups
from .sensor.probes import Sensor

log = logging.getLogger("mamori.pipeline")


class Pipeline:
    def __init__(self, cfg: Config, extra_watch: tuple[str, ...] = ()):
        self.cfg = cfg
        self.extra_watch = extra_watch
        self.sensor = Sensor(families=(*cfg.sensor.families, "cgroup"),
                             ring_bytes=cfg.sensor.ring_bytes,
                             all_processes=cfg.sensor.all_processes,
                             budget_per_window=cfg.sensor.container_budget,
                             write_tracking_entries=cfg.drift.write_tracking_entries)
        root = cgroups.cgroup2_root()
        self.sensor.cgroup_root = root
        self.index = CgroupIndex(root)
        self.registry = ContainerRegistry(self.index, cfg.context.container_parents)
        self.discovery = Discovery(self.sensor, self.index, self.registry,
                                   cfg.sensor.watched_cgroups + tuple(extra_watch))
        self.tree = ProcessTree(cfg.context.process_table_size, cfg.context.exited_ttl_s,
                                cgroup_id_of=self._cgroup_id_of)
        self.pods: PodWatcher | None = None
        self.api_client = None
        hasher = Hasher(cfg.drift.hash_max_bytes, cfg.drift.hash_timeout_ms,
                        cfg.drift.hash_workers)
        self.hasher = hasher
        self.prevention = DriftPrevention(self.sensor, hasher, cfg.drift.prevent_all,
                                          cfg.drift.prevent_namespaces,
                                          cfg.drift.prevent_images,
                                          allow_exec_from=cfg.drift.allow_exec_from)
        self.discovery.on_container = self.prevention.consider
        self.discovery.on_gone = self.prevention.forget
        self.enricher = Enricher(self.tree, self.registry, None, cfg.context.ancestors_depth,
                                 DriftDetector(hasher))
        self.enricher.attached = self.sensor.attached
        self.startup_s = 0.0

    def _cgroup_id_of(self, pid: int) -> int | None:
        try:
            path = cgroups.cgroup_of_pid(pid)
            return cgroups.cgroup_id(self.index.root + path)
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        t0 = time.monotonic()
        self.sensor.start()
        for sc, why in self.sensor.unavailable.items():
            log.info("%s is not traced on this kernel: %s", sc, why)
        self.discovery.start()
        n = self.tree.scan()
        log.info("process table: %d processes at start; %d container cgroups watched",
                 n, len(self.discovery.containers))
        client = api_client(self.cfg.kubernetes.mode, self.cfg.kubernetes.kubeconfig)
        self.api_client = client
        if client is None:
            log.info("standalone: no Kubernetes API (container context from the runtime)")
        else:
            self.pods = PodWatcher(client, self.cfg.resolved_node_name())
            self.pods.start()
            self.enricher.pods = self.pods
            log.info("watching pods on node %s", self.cfg.resolved_node_name())
        self.startup_s = time.monotonic() - t0

    def step(self) -> list:
        """Consume the ring once; return the enriched events (discovery events are
        handled here and not returned)."""
        return self.process(self.sensor.poll_raw())

    def process(self, records: list[bytes]) -> list:
        """Decode raw records, keep discovery and the process table current, and return
        the enriched events. Malformed records are counted and skipped."""
        out = []
        discovery, enrich = self.discovery, self.enricher.enrich
        prevention = self.prevention
        for ev in self.sensor.decode_batch(records):
            if ev.kind in ("cgroup_mkdir", "cgroup_rmdir"):
                discovery.handle(ev)
                continue
            item = enrich(ev)
            if prevention.active and item.container is not None:
                cg = ev.cgroup_id
                if cg not in prevention.enforced:
                    prevention.consider(cg, item.container,
                                        item.pod.namespace if item.pod else
                                        item.container.pod_namespace or None)
                if ev.kind == "open":
                    prevention.on_item(item)
                if cg in prevention.mounts.waiting and not item.runtime_setup and \
                        ev.kind != "exit":
                    prevention.mounts.workload(cg, ev.pid)   # its mounts, through its workload
            out.append(item)
        self.tree.expire()
        return out

    def close(self) -> None:
        if self.pods is not None:
            self.pods.stop()
        self.sensor.close()
        self.hasher.close()
