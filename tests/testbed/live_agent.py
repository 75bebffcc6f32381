"""A real agent in the test's process (real eBPF), watching the test bed's containers, with
one rule of its own — a shadow read — to show it goes on alerting."""
from __future__ import annotations

import threading
from dataclasses import replace

from agent import config
from agent.runtime import Agent
from testbed import runc

SHADOW_RULE = """
- rule: Shadow read
  desc: d
  events: [open]
  condition: container.id exists and file.path = /etc/shadow
  output: "shadow read by %proc.exe"
  severity: high
  tactic: TA0006
  technique: T1003.008
"""


def start_agent(tmp_path, name: str = "agent", **overrides) -> tuple[Agent, list]:
    """(the started agent, the list its alerts are appended to); stop it with .stop()."""
    rules = tmp_path / f"{name}-rules.yaml"
    rules.write_text(SHADOW_RULE)
    cfg = config.load(None, {"kubernetes.mode": "off", "api.listen": [],
                             "metrics.listen": "", **runc.agent_overrides(),
                             "alerts.journal_dir": str(tmp_path / f"{name}-journal"),
                             **overrides})
    cfg = replace(cfg, sensor=replace(cfg.sensor, ring_bytes=16 << 20))
    alerts: list = []
    agent = Agent(cfg, [str(rules)], outputs=[alerts.append])
    t = threading.Thread(target=agent.start)
    t.start()
    t.join()
    return agent, alerts
