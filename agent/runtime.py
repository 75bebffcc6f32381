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
import os
import queue
import threading
import time
from collections import Counter

from .alerts.alert import Alert, agent_alert, from_match
from .alerts.hub import AlertHub
from .alerts.journal import Journal
from .config import Config
from .pipeline import Pipeline
from .stats import AgentStats
from .rules.engine import RuleEngine
from .sensor import ring

log = logging.getLogger("mamori.runtime")


class Agent:
    def __init__(self, cfg: Config, rule_paths, outputs=(), extra_watch=(),
                 queue_batches: int = 4096, reload_check_s: float = 1.0,
                 queue_events: int = 1 << 17):
        self.cfg = cfg
        self.node = cfg.resolved_node_name()
        self.engine = RuleEngine(rule_paths)
        self.pipeline = Pipeline(cfg, extra_watch)
        self.outputs = list(outputs)          # callables taking an Alert
        self.journal = Journal(cfg.alerts.journal_dir, cfg.alerts.segment_bytes,
                               cfg.alerts.journal_max_bytes)
        self.hub = AlertHub(self.journal, cfg.alerts.subscriber_queue)
        self.hub.on_journal_change = self._journal_changed
        self.api = None
        self.responder = None
        self.inventory = None                 # agent/inventory: an SBOM per image, off-path
        if cfg.inventory.enabled:
            from .inventory.worker import InventoryWorker
            self.inventory = InventoryWorker(cfg.inventory, pods_fn=lambda: self.pipeline.pods)
            self.pipeline.discovery.listeners.append(self.inventory)
        self.vulns = None                     # agent/vulndb: inventories x the database
        if self.inventory is not None:
            from .vulndb.node import NodeScanner
            self.vulns = NodeScanner(cfg.vulndb)
            self.inventory.on_done.append(self.vulns.inventoried)
        self.started = time.monotonic()
        self.queue: queue.Queue = queue.Queue(maxsize=queue_batches)
        self.queue_drops = 0                  # records dropped because the queue was full
        # the queue is bounded in records as well as batches (the poller takes all the ring
        # holds, so a batch can be large): at most queue_events, ~45 MB of open records
        self.queue_events = queue_events
        self._queued_in = 0                   # records put (the poller's count)
        self._queued_out = 0                  # records taken (the evaluator's count)
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
        self.kernel_shed: dict[str, int] = {}
        self._cgroup_shed: dict[int, int] = {}
        self._queue_drops_by_cgroup: Counter = Counter()
        self.congestions = 0                  # times the kernel was told we fall behind
        self._uncounted_seen: set[int] = set()   # overlay devs already alerted on (+ -1: any)
        self._ring_quarter_bytes = self.pipeline.sensor.ring_pages * ring.PAGE // 4
        # liveness: when each thread last made progress (monotonic), when the evaluator
        # began the batch it is in (0: between batches), what raised and was survived
        self.heartbeat = {"poller": 0.0, "evaluator": 0.0}
        self.batch_started = 0.0
        self.stage_errors = Counter()          # per stage: poller, evaluator
        self.output_errors = Counter()         # per output (function name)
        self._error_logged: dict[str, float] = {}

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
        if self.vulns is not None:
            self.vulns.start()
        if self.inventory is not None:
            self.inventory.start()            # before discovery announces what runs already
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
                                 release_fn=self.release, admin_identities=a.admin_identities,
                                 allow_insecure_tcp=a.allow_insecure_tcp,
                                 socket_group=a.socket_group, admin_socket=a.admin_socket,
                                 max_streams=a.max_streams,
                                 max_streams_per_client=a.max_streams_per_client,
                                 stall_timeout_s=a.stall_timeout_s,
                                 keepalive_time_s=a.keepalive_time_s,
                                 keepalive_timeout_s=a.keepalive_timeout_s,
                                 queue_bytes=self.cfg.alerts.subscriber_queue_bytes,
                                 inventory_fn=(lambda: self.inventory)
                                 if self.inventory is not None else None)
            self.api.start()
            log.info("gRPC API on %s", ", ".join(a.listen + ((a.admin_socket + " (admin)",)
                                                            if a.admin_socket else ())))
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
        # what this node isolated, kept across restarts (0600 in a 0700 directory) beside
        # the journal: Release checks it (Responder.isolated_by_me)
        state = os.path.join(os.path.dirname(os.path.abspath(self.cfg.alerts.journal_dir)),
                             "response", "isolated.json")
        self.responder = Responder(policy, self.pipeline.index.root, self._publish, kube,
                                   Isolator, self.cfg.response.queue_size,
                                   pods=self.pipeline.pods, state_path=state)
        self.responder.warm_up()
        log.info("response: %s mode, protected namespaces %s", policy.mode,
                 ", ".join(policy.protected_namespaces))

    def release(self, namespace: str, pod: str, by: str = "") -> tuple[str, str]:
        """Undo an isolation this agent made (the API checked the caller is an admin).
        ("not-isolated", why) for a pod this node did not isolate: nothing is touched."""
        if self.responder is None:
            return "failed", "no response stage"
        if not self._isolated_here(namespace, pod):
            return "not-isolated", (f"{namespace}/{pod} was not isolated by the agent on node "
                                    f"{self.node}; nothing was released")
        status, detail = self.responder.release(namespace, pod)
        self._publish(agent_alert(
            "Mamori isolation released", "medium",
            f"Isolation of {namespace}/{pod} released by {by or 'unknown'}: {status}",
            self.node, {"k8s.ns": namespace, "k8s.pod": pod, "release.by": by,
                        "release.status": status, "release.detail": detail}))
        return status, detail

    def _isolated_here(self, namespace: str, pod: str) -> bool:
        check = getattr(self.responder, "isolated_by_me", None)
        if check is not None:
            return bool(check(namespace, pod))
        # until the responder says it itself: the pods whose containers it cut on this node
        return f"{namespace}/{pod}" in getattr(self.responder, "by_pod", {})

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
        if self.inventory is not None:
            self.inventory.stop()
        if self.vulns is not None:
            self.vulns.stop()
        self.pipeline.close()
        self.journal.close()

    def stats(self) -> AgentStats:
        """What the agent has counted, as one snapshot (metrics and GetStatus read it)."""
        sensor, rs, j = self.pipeline.sensor, self.engine.ruleset, self.journal
        pods = self.pipeline.pods
        now = time.monotonic()
        return AgentStats(
            events=dict(sensor.stats.received), malformed=dict(sensor.stats.malformed),
            lost_kernel=dict(self.kernel_drops), lost_shed=dict(self.kernel_shed),
            lost_queue=self.queue_drops, congested=bool(sensor.congested),
            pod_objects_malformed=pods.bad_objects if pods is not None else 0,
            alerts=dict(self.alerts_by_rule),
            actions=dict(self.responder.outcomes) if self.responder is not None else {},
            subscribers=len(self.hub.subscribers),
            rules_loaded=len(rs.rules) if rs else 0,
            rules_reload_ok=not self.engine.last_error,
            journal_persisting=j.persisting, journal_write_errors=j.write_errors,
            journal_unpersisted=j.unpersisted_total, stage_errors=dict(self.stage_errors),
            output_errors=dict(self.output_errors),
            stage_idle_s={k: now - t if t else 0.0 for k, t in self.heartbeat.items()},
            healthy=self.liveness()[0],
            **(dict(inventory_finished=dict(self.inventory.counts),
                    inventory_seconds=self.inventory.seconds,
                    inventory_dropped=self.inventory.dropped,
                    inventory_images=len(self.inventory.store.all()))
               if self.inventory is not None else {}))

    def status(self) -> dict:
        s = self.stats()
        lost = dict(s.lost_kernel)
        if s.lost_queue:
            lost["user-queue"] = s.lost_queue
        return {"node": self.node, "uptime": time.monotonic() - self.started,
                "events_seen": s.events, "events_lost": lost, "rules_loaded": s.rules_loaded,
                "last_reload_error": "\n".join(str(p) for p in self.engine.last_error),
                "health": self.liveness()[1]}

    def liveness(self) -> tuple[bool, str]:
        """(alive, why not): /healthz. Dead: the poller or evaluator thread ended. Stalled:
        the evaluator inside one batch, or without a finished batch while batches wait, or
        the poller without a poll, for longer than metrics.stall_after_s."""
        if not self.serving or self._stop.is_set():
            return True, "ok"
        for t in self._threads:
            if not t.is_alive():
                return False, f"the {t.name} thread is not running"
        now, limit = time.monotonic(), self.cfg.metrics.stall_after_s
        busy, waiting = self.batch_started, self.queue.qsize()
        idle = now - (self.heartbeat["evaluator"] or now)      # 0: not started yet
        if busy:
            if now - busy > limit:
                return False, (f"the evaluator is stalled: one batch has taken "
                               f"{now - busy:.1f} s ({waiting} batches waiting)")
        elif waiting and idle > limit:
            return False, (f"the evaluator is stalled: no progress for {idle:.1f} s while "
                           f"{waiting} batches wait")
        idle = now - (self.heartbeat["poller"] or now)
        if idle > limit:
            return False, f"the poller is stalled: no poll for {idle:.1f} s"
        return True, "ok"

    def _survived(self, stage: str, what: str) -> None:
        """An exception a stage caught to go on: counted, logged (with the traceback at
        most every 10 s per stage)."""
        self.stage_errors[stage] += 1
        now = time.monotonic()
        if now - self._error_logged.get(stage, 0.0) >= 10:
            self._error_logged[stage] = now
            log.exception("%s: %s failed (%d errors so far); going on", stage, what,
                          self.stage_errors[stage])

    # -- threads -----------------------------------------------------------------------
    def _poll_loop(self) -> None:
        interval = self.cfg.sensor.poll_interval_ms / 1000.0
        while not self._stop.is_set():
            self.heartbeat["poller"] = time.monotonic()
            try:
                self._poll_once()
            except Exception:  # noqa: BLE001 - the poller never dies of one bad poll
                self._survived("poller", "a poll")
            time.sleep(interval)
        try:
            self._poll_once()
        except Exception:  # noqa: BLE001
            self._survived("poller", "the last poll")
        self.queue.put(None)

    def _poll_once(self) -> None:
        """Move what the ring holds onto the queue; never block: drop and count instead
        (per container: the record's header carries its cgroup id). Tell the kernel when
        we fall behind — the queue half full (in records or in batches), or the ring
        a quarter full when we come to it — so that flooding containers shed bulk events
        there (bpf/common.h, shed())."""
        sensor = self.pipeline.sensor
        pending = sensor.ring_pending()            # bytes, before this poll takes them
        batch = sensor.poll_raw()
        if pending is None:                        # bcc's reader: judge by the batch
            pending = len(batch) * 512
        q = self.queue
        queued = self._queued_in - self._queued_out
        if batch:
            if queued + len(batch) <= self.queue_events and not q.full():
                q.put_nowait(batch)              # only this thread puts: room is still there
                self._queued_in += len(batch)
                queued += len(batch)
            else:
                self.queue_drops += len(batch)
                lost = self._queue_drops_by_cgroup
                for rec in batch:
                    if len(rec) >= 16:
                        lost[int.from_bytes(rec[8:16], "little")] += 1
        depth, most = q.qsize(), self.queue_events
        ring_quarter = self._ring_quarter_bytes
        if sensor.congested:
            if depth <= q.maxsize // 8 and queued <= most // 8 and pending < ring_quarter // 4:
                sensor.set_congested(False)
        elif depth >= q.maxsize // 2 or queued >= most // 2 or pending >= ring_quarter:
            sensor.set_congested(True)
            self.congestions += 1

    def _eval_loop(self) -> None:
        """Never dies of an exception: one batch that raises is logged, counted
        (mamori_stage_errors_total) and the loop goes on with the next."""
        next_check = time.monotonic() + self.reload_check_s
        while True:
            self.heartbeat["evaluator"] = time.monotonic()
            try:
                batch = self.queue.get(timeout=0.2)
            except queue.Empty:
                batch = []
            if batch is None:
                break
            if batch:
                self._queued_out += len(batch)
                self.batch_started = time.monotonic()
                try:
                    self.handle(batch)
                except Exception:  # noqa: BLE001 - the next batch must still be evaluated
                    self._survived("evaluator", f"a batch of {len(batch)} records")
                finally:
                    self.batch_started = 0.0
                    self.heartbeat["evaluator"] = time.monotonic()
            now = time.monotonic()
            if self._reload_requested.is_set() or now >= next_check:
                try:
                    if self._reload_requested.is_set() or self.engine.changed():
                        self._reload_requested.clear()
                        self._reload()
                    self._check_drops()
                    self._check_write_tracking()
                except Exception:  # noqa: BLE001
                    self._survived("evaluator", "the periodic reload and drop check")
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
            rec = from_match(rule, item, catalog, node)
            if self.responder is not None:
                n = len(self.responder.latencies_ns)
                rec = self.responder.respond(rec)    # node-local action before publishing
                if self.metrics is not None and len(self.responder.latencies_ns) > n:
                    self.metrics.detect_to_action.observe(
                        self.responder.latencies_ns[-1] / 1e9)
            self.alerts[rule.name] += 1
            self.alerts_by_rule[(rule.name, rule.severity)] += 1
            out.append(self._publish(rec))
            if self.metrics is not None:
                ts = item.event.ts
                self.metrics.detect_to_alert.observe((time.monotonic_ns() - ts) / 1e9)
        return out

    def _publish(self, rec: Alert) -> Alert:
        """Journal first (the record gets its sequence number), then every output; returns
        the numbered record. Nothing a sink raises stops the others or the caller: a journal
        that cannot be written degrades to live delivery (agent/alerts/journal.py), an
        output that fails is counted (mamori_output_errors_total) and logged."""
        try:
            rec = self.hub.publish(rec)
        except Exception:  # noqa: BLE001 - the outputs still get it
            self._survived("publish", "the alert hub")
        for sink in self.outputs:
            try:
                sink(rec)
            except Exception:  # noqa: BLE001 - one broken output must not stop the others
                name = getattr(sink, "__name__", type(sink).__name__)
                self.output_errors[name] += 1
                self._survived(f"output {name}", "an alert")
        return rec

    def _journal_changed(self, what: str, info: dict) -> None:
        """The journal stopped or started persisting: an alert of the agent's own."""
        if what == "failed":
            first = info.get("first_seq") or self.journal.last_seq + 1
            self._publish(agent_alert(
                "Mamori alerts not persisted", "high",
                f"The alert journal in {info['dir']} cannot be written ({info['error']}); "
                f"alerts from #{first} on are delivered live (stdout, gRPC, outputs) but not "
                f"persisted, so they cannot be replayed. Every alert retries the write.",
                self.node, {"journal.dir": info["dir"], "journal.error": info["error"],
                            "journal.first_not_persisted": first}))
        else:
            n = info.get("count", 0)
            span = f" (#{info['first_seq']}..#{info['last_seq']})" if n else ""
            self._publish(agent_alert(
                "Mamori alerts persisted again", "medium",
                f"The alert journal in {info['dir']} is written again from "
                f"#{info['resumed_at']}; {n} alerts{span} were not persisted "
                f"during {info['seconds']:.0f} s ({info['error']})",
                self.node, {"journal.dir": info["dir"], "journal.not_persisted": n,
                            "journal.first_not_persisted": info.get("first_seq", 0),
                            "journal.last_not_persisted": info.get("last_seq", 0),
                            "journal.error": info["error"]}))

    def _reload(self) -> None:
        errors = self.engine.reload()
        if errors:
            self._publish(agent_alert(
                "Mamori rules reload failed", "high",
                f"Rules reload failed with {len(errors)} error(s); the previous "
                f"{len(self.engine.ruleset.rules)} rules stay loaded. First: {errors[0]}",
                self.node, {"reload.errors": [str(e) for e in errors]}))

    def _check_write_tracking(self) -> None:
        """An alert, once per container, when the kernel could not count its writes
        (inode_writes full): its copied-up image files are then drift (fail closed)."""
        per, anywhere = self.pipeline.sensor.writes_uncounted()
        entries = self.cfg.drift.write_tracking_entries
        for dev, (writes, cg) in sorted(per.items()):
            if dev in self._uncounted_seen:
                continue
            self._uncounted_seen.add(dev)
            info = self.pipeline.registry.lookup(cg)
            who = info.id if info is not None else f"cgroup {cg}"
            log.warning("write tracking full: %d opens for writing in %s not counted", writes, who)
            self._publish(agent_alert(
                "Mamori cannot count writes in a container", "high",
                f"the kernel's write-count map is full (drift.write_tracking_entries: "
                f"{entries}): opens for writing in {who} are no longer counted; until it "
                f"stops, every copied-up image file there is taken as modified (drift "
                f"prevention kills it: fail closed)", self.node,
                {"container.id": info.id if info is not None else None,
                 "write_tracking.device": dev, "write_tracking.uncounted": writes,
                 "write_tracking.entries": entries}))
        if anywhere and -1 not in self._uncounted_seen:
            self._uncounted_seen.add(-1)
            self._publish(agent_alert(
                "Mamori cannot count writes in a container", "critical",
                f"the kernel's write-count map is full (drift.write_tracking_entries: "
                f"{entries}) on more containers than it can name: every copied-up image "
                f"file on this node is taken as modified (fail closed)", self.node,
                {"container.id": None, "write_tracking.uncounted": anywhere,
                 "write_tracking.entries": entries}))

    def _check_drops(self) -> None:
        """Losses since the last check — the ring full, bulk events shed from a container
        over its budget, batches the user-space queue could not take — logged, and past
        the threshold an alert of the agent's own naming the containers whose events were
        lost and where."""
        sensor = self.pipeline.sensor
        drops, shed = sensor.drops(), sensor.shed()
        new = {k: v - self.kernel_drops.get(k, 0) for k, v in drops.items()
               if v != self.kernel_drops.get(k, 0)}
        new_shed = {k: v - self.kernel_shed.get(k, 0) for k, v in shed.items()
                    if v != self.kernel_shed.get(k, 0)}
        self.kernel_drops, self.kernel_shed = drops, shed
        queued = sum(self._queue_drops_by_cgroup.values())
        if not new and not new_shed and not queued:
            return
        where: dict[int, dict[str, int]] = {}
        if new:
            log.warning("kernel dropped events (ring full): %s", new)
            by_cg = sensor.drops_by_cgroup()
            for cg, n in by_cg.items():
                if n != self._cgroup_drops.get(cg, 0):
                    where.setdefault(cg, {})["ring_full"] = n - self._cgroup_drops.get(cg, 0)
            self._cgroup_drops = by_cg
        if new_shed:
            log.warning("kernel shed bulk events of containers over budget: %s", new_shed)
            by_cg = sensor.shed_by_cgroup()
            for cg, n in by_cg.items():
                if n != self._cgroup_shed.get(cg, 0):
                    where.setdefault(cg, {})["shed"] = n - self._cgroup_shed.get(cg, 0)
            self._cgroup_shed = by_cg
        if queued:
            log.warning("user-space queue full: %d events dropped", queued)
            for cg, n in self._queue_drops_by_cgroup.items():
                where.setdefault(cg, {})["queue_full"] = n
            self._queue_drops_by_cgroup.clear()
        total = sum(new.values()) + sum(new_shed.values()) + queued
        if total < self.cfg.metrics.drop_alert_threshold:
            return
        containers = []
        for cg, why in sorted(where.items(), key=lambda x: -sum(x[1].values())):
            info = self.pipeline.registry.lookup(cg)
            containers.append({"cgroup_id": cg, "container": info.id if info else None,
                               "lost": sum(why.values()), **why})
        parts = []
        if new:
            parts.append(f"{sum(new.values())} lost in the kernel (ring full: " +
                         ", ".join(f"{k} {v}" for k, v in sorted(new.items())) + ")")
        if new_shed:
            parts.append(f"{sum(new_shed.values())} bulk events shed from containers over "
                         "their budget (" + ", ".join(f"{k} {v}" for k, v in
                                                     sorted(new_shed.items())) + ")")
        if queued:
            parts.append(f"{queued} dropped in user space (queue full)")
        named = ", ".join(c["container"] or f"cgroup {c['cgroup_id']}" for c in containers[:5])
        self._publish(agent_alert(
            "Mamori lost kernel events", "high",
            f"{total} events lost in the last second: " + "; ".join(parts) +
            (f"; most from {named}" if named else ""),
            self.node, {"lost.kinds": {k: new.get(k, 0) + new_shed.get(k, 0)
                                       for k in sorted({*new, *new_shed})},
                        "lost.reasons": {"ring_full": sum(new.values()),
                                         "shed": sum(new_shed.values()),
                                         "queue_full": queued},
                        "lost.containers": containers}))
