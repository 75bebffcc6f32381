"""The memory cap in the agent (real eBPF, real runc containers): an image whose inventory
needs more than inventory.memory_limit is marked too_large with the limit in force while
the agent goes on alerting; an agent started with a larger limit reads it."""
from __future__ import annotations

from test_inventory_containers import _big_debian
from testbed.image import build_image
from testbed.live_agent import start_agent
from testbed.runc import Container
from testbed.waiting import value_within


def _agent(tmp_path, name, memory_limit):
    return start_agent(tmp_path, name, **{"inventory.memory_limit": memory_limit,
                                          "vulndb.path": str(tmp_path / "none.sqlite3")})


def test_an_image_over_the_cap_is_too_large_and_the_agent_goes_on(tmp_path):
    root = build_image(str(tmp_path / "big"))
    _big_debian(root, 60_000)
    agent, alerts = _agent(tmp_path, "small", "64Mi")
    c = None
    try:
        c = Container(root, str(tmp_path / "work")).start()
        inv = value_within(lambda: next((i for i in agent.inventory.store.all()
                                   if i.state != "pending"), None))
        assert (inv.state, inv.memory_limit, inv.packages) == ("too_large", 64 << 20, ())
        assert inv.reason == "over the memory limit of 64 MiB (inventory.memory_limit)"
        c.sh("cat /etc/shadow > /dev/null")
        value_within(lambda: any(a.rule == "Shadow read" for a in alerts), 10)
        assert agent.stats().inventory_finished == {"too_large": 1}
    finally:
        agent.stop()
    # the same container, an agent whose configured limit is larger: the image is read
    agent, alerts = _agent(tmp_path, "large", "1Gi")
    try:
        inv = value_within(lambda: next((i for i in agent.inventory.store.all()
                                   if i.state != "pending"), None), 120)
        assert (inv.state, len(inv.packages), inv.memory_limit) == ("done", 60_000, 1 << 30)
    finally:
        if c is not None:
            c.stop()
        agent.stop()
