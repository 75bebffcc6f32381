"""The memory cap in the agent (real eBPF, real runc containers): an image whose inventory
needs more than inventory.memory_limit is marked too_large with the limit in force while
the agent goes on alerting; an agent started with a larger limit reads it."""
from __future__ import annotations

import threading
import time
from dataclasses import replace

from agent import config
from agent.runtime import Agent
from test_inventory_containers import _big_debian
from testbed import runc
from testbed.image import build_image
from testbed.runc import Container

RULE = """
- rule: Shadow read
  desc: d
  events: [open]
  condition: container.id exists and file.path = /etc/shadow
  output: "shadow read by %proc.exe"
  severity: high
  tactic: TA0006
  technique: T1003.008
"""


def _until(pred, timeout=90.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out")


def _agent(tmp_path, name, memory_limit):
    rules = tmp_path / "r.yaml"
    rules.write_text(RULE)
    cfg = config.load(None, {"kubernetes.mode": "off", "api.listen": [],
                             **runc.agent_overrides(),
                             "alerts.journal_dir": str(tmp_path / f"j-{name}"),
                             "metrics.listen": "", "inventory.memory_limit": memory_limit,
                             "vulndb.path": str(tmp_path / "none.sqlite3")})
    cfg = replace(cfg, sensor=replace(cfg.sensor, ring_bytes=16 << 20))
    alerts = []
    agent = Agent(cfg, [str(rules)], outputs=[alerts.append])
    t = threading.Thread(target=agent.start)
    t.start()
    t.join()
    return agent, alerts


def test_an_image_over_the_cap_is_too_large_and_the_agent_goes_on(tmp_path):
    root = build_image(str(tmp_path / "big"))
    _big_debian(root, 60_000)
    agent, alerts = _agent(tmp_path, "small", "64Mi")
    c = None
    try:
        c = Container(root, str(tmp_path / "work")).start()
        inv = _until(lambda: next((i for i in agent.inventory.store.all()
                                   if i.state != "pending"), None))
        assert (inv.state, inv.memory_limit, inv.packages) == ("too_large", 64 << 20, ())
        assert inv.reason == "over the memory limit of 64 MiB (inventory.memory_limit)"
        c.sh("cat /etc/shadow > /dev/null")
        _until(lambda: any(a.rule == "Shadow read" for a in alerts), 10)
        assert agent.stats().inventory_finished == {"too_large": 1}
    finally:
        agent.stop()
    # the same container, an agent whose configured limit is larger: the image is read
    agent, alerts = _agent(tmp_path, "large", "1Gi")
    try:
        inv = _until(lambda: next((i for i in agent.inventory.store.all()
                                   if i.state != "pending"), None), 120)
        assert (inv.state, len(inv.packages), inv.memory_limit) == ("done", 60_000, 1 << 30)
    finally:
        if c is not None:
            c.stop()
        agent.stop()
