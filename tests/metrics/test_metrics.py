"""Metrics and health of a running agent (in-process): values move as real events, drops
and alerts happen; readiness only once probes and rules are in place; /healthz fails when a
pipeline stage is dead or stalled, and a batch that raises is survived."""
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace

from agent import config
from agent.runtime import Agent
from testbed import runc

RULE = """- rule: Hostname read
  desc: test
  events: [open]
  condition: container.id exists and not proc.runtime_setup and file.path = /etc/hostname
  output: "%proc.exe read %file.path"
  severity: low
  tactic: TA0007
  technique: T1082
"""


def _get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}}" if want else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _agent(tmp_path, ring=16 << 20, **overrides):
    rules = tmp_path / "r.yaml"
    rules.write_text(RULE)
    cfg = config.load(None, {"kubernetes.mode": "off", "api.listen": [],
                             **runc.agent_overrides(),
                             "alerts.journal_dir": str(tmp_path / "j"),
                             "metrics.listen": "127.0.0.1:0", **overrides})
    cfg = replace(cfg, sensor=replace(cfg.sensor, ring_bytes=ring))
    records = []
    return Agent(cfg, [str(rules)], outputs=[lambda a: records.append(a.to_dict())]), records


def test_readiness_metrics_and_alerts(tmp_path, containers):
    agent, records = _agent(tmp_path)
    t = threading.Thread(target=agent.start)
    t.start()
    try:
        while agent.health is None:
            time.sleep(0.01)
        port = agent.health.port
        code, body = _get(port, "/readyz")
        assert (code, body) == (503, "probes not attached yet\n")   # compiling the probes
        assert _get(port, "/healthz") == (200, "ok\n")
        t.join()
        assert _get(port, "/readyz") == (200, "ready (standalone)\n")
        c = containers()
        c.sh("cat /etc/hostname > /dev/null")
        deadline = time.monotonic() + 10
        while not records and time.monotonic() < deadline:
            time.sleep(0.05)
        code, text = _get(port, "/metrics")
        assert code == 200
        assert _metric(text, "mamori_events_total", kind="exec") >= 1
        assert _metric(text, "mamori_alerts_total", rule="Hostname read", severity="low") == 1
        assert _metric(text, "mamori_rules_loaded") == 1
        assert _metric(text, "mamori_rules_last_reload_ok") == 1
        assert _metric(text, "mamori_detect_to_alert_seconds_count") == 1
        assert _metric(text, "process_resident_memory_bytes") > 10e6
    finally:
        t.join()
        agent.stop()


def test_kernel_drops_are_counted_and_raise_an_alert_naming_the_container(tmp_path,
                                                                          containers):
    agent, records = _agent(tmp_path, ring=4096)
    agent.start()
    try:
        c = containers()
        c.sh("i=0; while [ $i -lt 3000 ]; do cat /etc/hostname /etc/passwd > /dev/null; "
             "i=$((i+1)); done", timeout=120)
        deadline = time.monotonic() + 10
        lost = []
        while not lost and time.monotonic() < deadline:
            lost = [r for r in records if r["rule"] == "Mamori lost kernel events"]
            time.sleep(0.1)
        assert lost, "no alert about lost events"
        a = lost[0]
        assert (a["source"], a["severity"]) == ("agent", "high")
        assert a["fields"]["lost.kinds"].get("open", 0) > 0
        assert c.id in [x["container"] for x in a["fields"]["lost.containers"]]
        _, text = _get(agent.health.port, "/metrics")
        assert _metric(text, "mamori_events_lost_total", kind="open", where="kernel") > 0
    finally:
        agent.stop()


def _until(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_a_bad_batch_is_survived_and_healthz_tells_a_stalled_or_dead_evaluator(tmp_path,
                                                                            containers):
    agent, records = _agent(tmp_path, **{"metrics.stall_after_s": 1})
    agent.start()
    try:
        port = agent.health.port
        assert _get(port, "/healthz") == (200, "ok\n")
        c = containers()
        real = agent.pipeline.process
        raised = []

        def bad_once(batch):                  # one batch whose handling raises
            if not raised:
                raised.append(len(batch))
                raise RuntimeError("a record nobody expected")
            return real(batch)
        agent.pipeline.process = bad_once
        c.sh("cat /etc/hostname > /dev/null")
        assert _until(lambda: raised)
        c.sh("cat /etc/hostname > /dev/null")
        assert _until(lambda: any(r["rule"] == "Hostname read" for r in records)), \
            "the evaluator did not go on after a batch raised"
        _, text = _get(port, "/metrics")
        assert _metric(text, "mamori_stage_errors_total", stage="evaluator") == 1
        assert _get(port, "/healthz") == (200, "ok\n")

        gate = threading.Event()

        def stuck(batch):                     # a batch that takes forever (a FIFO, 1 TiB…)
            gate.wait(30)
            return real(batch)
        agent.pipeline.process = stuck
        for _ in range(3):
            c.sh("cat /etc/hostname > /dev/null")
        assert _until(lambda: _get(port, "/healthz")[0] == 503)
        code, body = _get(port, "/healthz")
        assert body.startswith("the evaluator is stalled: one batch has taken 1.")
        assert body.endswith(" batches waiting)\n")
        _, text = _get(port, "/metrics")
        assert _metric(text, "mamori_healthy") == 0
        assert _metric(text, "mamori_stage_idle_seconds", stage="evaluator") > 1
        agent.pipeline.process = real
        gate.set()
        assert _until(lambda: _get(port, "/healthz") == (200, "ok\n"))

        check = agent.engine.changed           # stuck between batches (the periodic check)
        agent.engine.changed = lambda: gate.clear() or gate.wait(30) or check()
        assert _until(lambda: not gate.is_set())
        for _ in range(3):
            c.sh("cat /etc/hostname > /dev/null")
        assert _until(lambda: _get(port, "/healthz")[1].startswith(
            "the evaluator is stalled: no progress for 1."))
        assert _get(port, "/healthz")[1].endswith(" batches wait\n")
        agent.engine.changed = check
        gate.set()
        assert _until(lambda: _get(port, "/healthz") == (200, "ok\n"))

        agent.queue.put(None)                 # the evaluator thread ends
        assert _until(lambda: _get(port, "/healthz") == (
            503, "the evaluator thread is not running\n"))
    finally:
        agent.stop()
