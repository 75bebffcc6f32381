"""The metrics endpoint reads one typed snapshot (agent/stats.py), nothing else."""
from prometheus_client import CollectorRegistry, generate_latest

from agent.metrics import _AgentCollector
from agent.stats import AgentStats


def _scrape(stats: AgentStats) -> dict[str, float]:
    reg = CollectorRegistry()
    reg.register(_AgentCollector(lambda: stats))
    out = {}
    for line in generate_latest(reg).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_every_metric_comes_from_the_snapshot():
    s = AgentStats(events={"open": 7, "exec": 2}, malformed={"unknown event kind": 1},
                   lost_kernel={"open": 3}, lost_shed={"open": 4}, lost_queue=5,
                   congested=True, pod_objects_malformed=6,
                   alerts={("Shadow read", "high"): 8}, actions={("terminate", "done"): 9},
                   subscribers=2, rules_loaded=59, rules_reload_ok=False,
                   journal_persisting=False, journal_write_errors=10, journal_unpersisted=11,
                   stage_errors={"evaluator": 12}, output_errors={"syslog": 13},
                   stage_idle_s={"poller": 0.5, "evaluator": 1.5}, healthy=False,
                   inventory_finished={"done": 14, "too_large": 15}, inventory_seconds=16.5,
                   inventory_dropped=17, inventory_images=18)
    m = _scrape(s)
    assert m == {
        'mamori_events_total{kind="open"}': 7.0, 'mamori_events_total{kind="exec"}': 2.0,
        'mamori_events_lost_total{kind="open",where="kernel"}': 3.0,
        'mamori_events_lost_total{kind="open",where="shed"}': 4.0,
        'mamori_events_lost_total{kind="all",where="user-queue"}': 5.0,
        "mamori_congested": 1.0, "mamori_pod_objects_malformed_total": 6.0,
        'mamori_malformed_records_total{reason="unknown event kind"}': 1.0,
        'mamori_alerts_total{rule="Shadow read",severity="high"}': 8.0,
        'mamori_actions_total{action="terminate",outcome="done"}': 9.0,
        "mamori_subscribers": 2.0, "mamori_rules_loaded": 59.0,
        "mamori_rules_last_reload_ok": 0.0, "mamori_journal_persisting": 0.0,
        "mamori_journal_write_errors_total": 10.0,
        "mamori_journal_unpersisted_alerts_total": 11.0,
        'mamori_stage_errors_total{stage="poller"}': 0.0,
        'mamori_stage_errors_total{stage="evaluator"}': 12.0,
        'mamori_stage_errors_total{stage="publish"}': 0.0,
        'mamori_output_errors_total{output="syslog"}': 13.0,
        'mamori_stage_idle_seconds{stage="poller"}': 0.5,
        'mamori_stage_idle_seconds{stage="evaluator"}': 1.5,
        "mamori_healthy": 0.0,
        'mamori_inventory_images_total{state="done"}': 14.0,
        'mamori_inventory_images_total{state="too_large"}': 15.0,
        'mamori_inventory_images_total{state="failed"}': 0.0,
        "mamori_inventory_seconds_total": 16.5, "mamori_inventory_dropped_total": 17.0,
        "mamori_inventory_known_images": 18.0}
