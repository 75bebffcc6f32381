"""Prometheus metrics, /healthz and /readyz, on one HTTP port.

Counters the agent already keeps (events per kind, drops, alerts, actions) are read at
scrape time by a collector, so the event path pays nothing for them; latency histograms
(detect -> alert, detect -> action, rule evaluation) are observed as things happen.
"""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    def __init__(self, agent):
        self.agent = agent
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)          # process_resident_memory_bytes …
        self.registry.register(_AgentCollector(agent.stats))
        vulns = getattr(agent, "vulns", None)
        if vulns is not None:                 # the vulnerability database's age and records
            from .vulndb.status import Collector as VulnDBCollector
            self.registry.register(VulnDBCollector(vulns.cfg.path,
                                                   vulns.cfg.max_age_hours * 3600))
        self.detect_to_alert = Histogram(
            "mamori_detect_to_alert_seconds", "From the kernel event to the alert published",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.detect_to_action = Histogram(
            "mamori_detect_to_action_seconds", "From the kernel event to the node-local "
            "response (SIGKILL or isolation) done", buckets=LATENCY_BUCKETS,
            registry=self.registry)
        self.rule_eval = Histogram(
            "mamori_rule_evaluation_seconds", "Rule evaluation time per event (batch mean)",
            buckets=(1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3),
            registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _AgentCollector:
    """Every agent metric, from one AgentStats snapshot per scrape (agent/stats.py)."""

    def __init__(self, stats):
        self.stats = stats                  # () -> AgentStats

    def collect(self):
        s = self.stats()
        c = CounterMetricFamily("mamori_events", "Events received from the kernel",
                                labels=["kind"])
        for kind, n in s.events.items():
            c.add_metric([kind], n)
        yield c
        c = CounterMetricFamily("mamori_events_lost", "Events lost, in the kernel (ring full), "
                                "shed in the kernel from a container over its budget, or in "
                                "the agent's queue", labels=["kind", "where"])
        for kind, n in s.lost_kernel.items():
            c.add_metric([kind, "kernel"], n)
        for kind, n in s.lost_shed.items():
            c.add_metric([kind, "shed"], n)
        c.add_metric(["all", "user-queue"], s.lost_queue)
        yield c
        yield GaugeMetricFamily("mamori_congested", "1 while the kernel is told the agent "
                                "falls behind (containers over budget shed bulk events)",
                                value=1 if s.congested else 0)
        yield CounterMetricFamily("mamori_pod_objects_malformed", "Pod objects or watch "
                                  "events from the API skipped as malformed",
                                  value=s.pod_objects_malformed)
        c = CounterMetricFamily("mamori_malformed_records", "Records that did not decode",
                                labels=["reason"])
        for reason, n in s.malformed.items():
            c.add_metric([reason], n)
        yield c
        c = CounterMetricFamily("mamori_alerts", "Alerts raised", labels=["rule", "severity"])
        for (rule, sev), n in s.alerts.items():
            c.add_metric([rule, sev], n)
        yield c
        c = CounterMetricFamily("mamori_actions", "Response actions by outcome",
                                labels=["action", "outcome"])
        for (action, outcome), n in s.actions.items():
            c.add_metric([action, outcome], n)
        yield c
        yield GaugeMetricFamily("mamori_subscribers", "gRPC subscribers connected",
                                value=s.subscribers)
        yield GaugeMetricFamily("mamori_rules_loaded", "Rules loaded (enabled or not)",
                                value=s.rules_loaded)
        yield GaugeMetricFamily("mamori_rules_last_reload_ok", "1 if the last rules load "
                                "succeeded, 0 if it failed (the previous rules still run)",
                                value=1 if s.rules_reload_ok else 0)
        yield GaugeMetricFamily("mamori_journal_persisting", "1 while alerts are written to "
                                "the journal, 0 while it cannot be written (alerts are "
                                "delivered live only)", value=1 if s.journal_persisting else 0)
        yield CounterMetricFamily("mamori_journal_write_errors", "Journal writes, rotations "
                                  "and fsyncs that failed", value=s.journal_write_errors)
        yield CounterMetricFamily("mamori_journal_unpersisted_alerts", "Alerts delivered but "
                                  "not written to the journal", value=s.journal_unpersisted)
        c = CounterMetricFamily("mamori_stage_errors", "Exceptions a pipeline stage caught "
                                "and went on after (the batch or poll is lost)",
                                labels=["stage"])
        for stage in ("poller", "evaluator", "publish"):
            c.add_metric([stage], s.stage_errors.get(stage, 0))
        yield c
        c = CounterMetricFamily("mamori_output_errors", "Alerts an output failed to take",
                                labels=["output"])
        for name, n in s.output_errors.items():
            c.add_metric([name], n)
        yield c
        g = GaugeMetricFamily("mamori_stage_idle_seconds", "Seconds since the stage last "
                              "made progress (the evaluator: finished a batch or found the "
                              "queue empty)", labels=["stage"])
        for stage, idle in s.stage_idle_s.items():
            g.add_metric([stage], idle)
        yield g
        yield GaugeMetricFamily("mamori_healthy", "1 if /healthz answers ok (no pipeline stage "
                                "dead or stalled)", value=1 if s.healthy else 0)
        c = CounterMetricFamily("mamori_inventory_images", "Image inventories finished, by "
                                "outcome (done, too_large, failed)", labels=["state"])
        for state in ("done", "too_large", "failed"):
            c.add_metric([state], s.inventory_finished.get(state, 0))
        yield c
        yield CounterMetricFamily("mamori_inventory_seconds", "Time spent reading images "
                                  "for their inventories", value=s.inventory_seconds)
        yield CounterMetricFamily("mamori_inventory_dropped", "Containers not inventoried: "
                                  "the inventory queue was full", value=s.inventory_dropped)
        yield GaugeMetricFamily("mamori_inventory_known_images", "Image inventories the agent "
                                "holds", value=s.inventory_images)


class HealthServer:
    """GET /metrics, /healthz (alive: 503 with the reason when the poller or the evaluator
    is dead or stalled, see Agent.liveness), /readyz (probes attached, rules loaded, pod
    watch synced or standalone)."""

    def __init__(self, agent, metrics: Metrics, address: str):
        host, _, port = address.rpartition(":")
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/metrics":
                    body, ctype, code = metrics.render(), CONTENT_TYPE_LATEST, 200
                elif self.path == "/healthz":
                    alive, why = outer.agent.liveness()
                    body, ctype, code = (why + "\n").encode(), "text/plain", \
                        200 if alive else 503
                elif self.path == "/readyz":
                    ready, why = outer.ready()
                    body, ctype, code = (why + "\n").encode(), "text/plain", \
                        200 if ready else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.agent = agent
        self.server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ready(self) -> tuple[bool, str]:
        a = self.agent
        if not a.probes_attached:
            return False, "probes not attached yet"
        if a.engine.ruleset is None:
            return False, "rules not loaded"
        pods = a.pipeline.pods
        if pods is not None and not pods.synced.is_set():
            return False, "pod watch not synced yet"
        if not a.serving:
            return False, "response, gRPC API and pipeline threads starting"
        return True, "ready" + (" (standalone)" if pods is None else "")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
