"""`mamori run`: the stages running together.

Two threads, so that slow rule evaluation never backs up the ring buffer:
  poller     every poll interval, copies what the kernel wrote out of the ring (raw bytes,
             no decoding) onto a bounded queue; if the queue is full the batch is dropped
             and counted, and the ring keeps draining.
  evaluator  decodes, keeps discovery and context current, evaluates the rules, and hands
             alerts to the outputs; checks the rule files for changes (and SIGHUP) between
             batches.
docs/benchmarks.md compares this with a second process fed msgpack batches.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter

from .alerts.alert import agent_alert, from_match
from .alerts.hub import AlertHub
from .alerts.journal import Journal
from .config import Config
from .pipeline import Pipeline
from .rules.engine import RuleEngine

log = logging.getLogger("mamori.runtime")


class Agent:
    def __init__(self, cfg: Config, rule_paths, outputs=(), extra_watch=(),
                 queue_batches: int = 4096, reload_check_s: float = 1.0):
        self.cfg = cfg
        self.node = cfg.resolved_node_name()
        self.engine = RuleEngine(rule_paths)
        self.pipeline = Pipeline(cfg, extra_watch)
        self.outputs = list(outputs)          # callables taking an alert record (dict)
        self.journal = Journal(cfg.alerts.journal_dir, cfg.alerts.segment_bytes,
                               cfg.alerts.journal_max_bytes)
        self.hub = AlertHub(self.journal, cfg.alerts.subscriber_queue)
        self.api = None
        self.responder = None
        self.started = time.monotonic()
        self.queue: queue.Queue = queue.Queue(maxsize=queue_batches)
        self.queue_drops = 0                  # records dropped because the queue was full
        self.alerts = Counter()               # per rule
        self.alerts_by_rule = Counter()       # per (rule, severity)
        self.probes_attached = False
        self.serving = False
        self.metrics = None
        self.health = None
        self.events = 0
        self.reload_check_s = reload_check_s
        self._reload_requested = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.kernel_drops: dict[str, int] = {}
        self._cgroup_drops: dict[int, int] = {}

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        rs = self.engine.load()               # raises RulesError: refuse to start
        from .response.policy import Policy, load as load_policy
        self.policy = load_policy(self.cfg.response.policy) if self.cfg.response.policy \
            else Policy()                     # raises PolicyError: refuse to start
        for w in self.engine.warnings:
            log.warning("%s", w)
        log.info("rules: %d loaded (%d enabled) from %s", len(rs.rules),
                 sum(1 for r in rs.rules if r.enabled), ", ".join(self.engine.paths))
        self.journal.open()
        log.info("alert journal %s: sequence continues after %d", self.journal.dir,
                 self.journal.last_seq)
        if self.cfg.metrics.listen:          # up first: /readyz says what is missing
            from .metrics import HealthServer, Metrics
            self.metrics = Metrics(self)
            self.health = HealthServer(self, self.metrics, self.cfg.metrics.listen)
            log.info("metrics and health on http://%s (/metrics, /healthz, /readyz)",
                     self.cfg.metrics.listen)
        self.pipeline.start()
        self.probes_attached = True
        self._start_responder()
        from .memory import release_compiler_memory
        before, after = release_compiler_memory()      # the compiler is done for good
        log.info("resident memory after start: %d MiB (compiler released: %d MiB)",
                 after // 1024, (before - after) // 1024)
        if self.cfg.api.listen:
            from .api.server import ApiServer
            a = self.cfg.api
            self.api = ApiServer(self.hub, lambda: (self.engine.ruleset, self.engine.catalog),
                                 self.status, a.listen, a.tls_cert, a.tls_key, a.tls_client_ca,
                                 release_fn=self.release)
            self.api.start()
            log.info("gRPC API on %s", ", ".join(a.listen))
        self._threads = [threading.Thread(target=self._poll_loop, name="poller", daemon=True),
                         threading.Thread(target=self._eval_loop, name="evaluator",
                                          daemon=True)]
        for t in self._threads:
            t.start()
        self.serving = True                   # /readyz: alerts flow and the API answers

    def _start_responder(self) -> None:
        from .response.isolation import Isolator
        from .response.kube_actions import KubeActions
        from .response.responder import Responder
        policy = self.policy
        kube = KubeActions(self.pipeline.api_client) if self.pipeline.api_client else None
        self.responder = Responder(policy, self.pipeline.index.root, self._publish, kube,
                                   Isolator, self.cfg.response.queue_size)
        self.responder.warm_up()
        log.info("response: %s mode, protected namespaces %s", policy.mode,
                 ", ".join(policy.protected_namespaces))

    def release(self, namespace: str, pod: str) -> tuple[str, str]:
        if self.responder is None:
            return "failed", "no response stage"
        return self.responder.release(namespace, pod)

    def request_reload(self) -> None:
        self._reload_requested.set()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        if self.api is not None:
            self.api.stop()
        if self.responder is not None:
            self.responder.stop()
        if self.health is not None:
            self.health.stop()
        self.pipeline.close()
        self.journal.close()

    def status(self) -> dict:
        rs = self.engine.ruleset
        lost = dict(self.kernel_drops)
        if self.queue_drops:
            lost["user-queue"] = self.queue_drops
        return {"node": self.node, "uptime": time.monotonic() - self.started,
                "events_seen": dict(self.pipeline.sensor.stats.received),
                "events_lost": lost, "rules_loaded": len(rs.rules) if rs else 0,
                "last_reload_error": "\n".join(str(p) for p in self.engine.last_error)}

    # -- threads -----------------------------------------------------------------------
    def _poll_loop(self) -> None:
        interval = self.cfg.sensor.poll_interval_ms / 1000.0
        while not self._stop.is_set():
            self._poll_once()
            time.sleep(interval)
        self._poll_once()
        self.queue.put(None)

    def _poll_once(self) -> None:
        """Move what the ring holds onto the queue; never block: drop and count instead."""
        batch = self.pipeline.sensor.poll_raw()
        if batch:
            try:
                self.queue.put_nowait(batch)
            except queue.Full:
                self.queue_drops += len(batch)

    def _eval_loop(self) -> None:
        next_check = time.monotonic() + self.reload_check_s
        while True:
            try:
                batch = self.queue.get(timeout=0.2)
            except queue.Empty:
                batch = []
            if batch is None:
                break
            if batch:
                self.handle(batch)
            now = time.monotonic()
            if self._reload_requested.is_set() or now >= next_check:
                if self._reload_requested.is_set() or self.engine.changed():
                    self._reload_requested.clear()
                    self._reload()
                self._check_drops()
                next_check = now + self.reload_check_s

    def handle(self, batch: list[bytes]) -> list:
        """Decode, enrich and evaluate one batch; emit and return the alerts."""
        items = self.pipeline.process(batch)
        self.events += len(items)
        rs = self.engine.ruleset
        catalog, node = rs.catalog, self.node
        matches = []
        t0 = time.perf_counter()
        for item in items:
            for rule in rs.evaluate(item):
                matches.append((rule, item))
        if self.metrics is not None and items:
            self.metrics.rule_eval.observe((time.perf_counter() - t0) / len(items))
        out = []
        for rule, item in matches:
            rec = from_match(rule, item, catalog, node).to_dict()
            if self.responder is not None:
                n = len(self.responder.latencies_ns)
                self.responder.respond(rec)          # node-local action before publishing
                if self.metrics is not None and len(self.responder.latencies_ns) > n:
                    self.metrics.detect_to_action.observe(
                        self.responder.latencies_ns[-1] / 1e9)
            self.alerts[rule.name] += 1
            self.alerts_by_rule[(rule.name, rule.severity)] += 1
            out.append(rec)
            self._publish(rec)
            if self.metrics is not None:
                ts = item.event.ts
                self.metrics.detect_to_alert.observe((time.monotonic_ns() - ts) / 1e9)
        return out

    def _publish(self, rec: dict) -> None:
        """Journal first (the record gets its sequence number), then every output."""
        self.hub.publish(rec)
        for sink in self.outputs:
            try:
                sink(rec)
            except Exception:  # noqa: BLE001 - one broken output must not stop the others
                log.exception("output %r failed", sink)

    def _reload(self) -> None:
        errors = self.engine.reload()
        if errors:
            self._publish(agent_alert(
                "Mamori rules reload failed", "high",
                f"Rules reload failed with {len(errors)} error(s); the previous "
                f"{len(self.engine.ruleset.rules)} rules stay loaded. First: {errors[0]}",
                self.node, {"reload.errors": [str(e) for e in errors]}).to_dict())

    def _check_drops(self) -> None:
        """Kernel drops since the last check: logged, and past the threshold an alert of the
        agent's own naming the containers whose events were lost."""
        sensor = self.pipeline.sensor
        drops = sensor.drops()
        new = {k: v - self.kernel_drops.get(k, 0) for k, v in drops.items()
               if v != self.kernel_drops.get(k, 0)}
        self.kernel_drops = drops
        if not new:
            return
        log.warning("kernel dropped events (ring full): %s", new)
        by_cg = sensor.drops_by_cgroup()
        lost_in = {cg: n - self._cgroup_drops.get(cg, 0) for cg, n in by_cg.items()
                   if n != self._cgroup_drops.get(cg, 0)}
        self._cgroup_drops = by_cg
        if sum(new.values()) < self.cfg.metrics.drop_alert_threshold:
            return
        containers = []
        for cg, n in sorted(lost_in.items(), key=lambda x: -x[1]):
            info = self.pipeline.registry.lookup(cg)
            containers.append({"cgroup_id": cg, "container": info.id if info else None,
                               "lost": n})
        self._publish(agent_alert(
            "Mamori lost kernel events", "high",
            f"{sum(new.values())} events lost in the kernel in the last second (ring full): "
            + ", ".join(f"{k} {v}" for k, v in sorted(new.items())),
            self.node, {"lost.kinds": new, "lost.containers": containers}).to_dict())
