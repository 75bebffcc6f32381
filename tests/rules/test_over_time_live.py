"""Rules over time on a real container: a flood of connections to thousands of ports raises
one port-scan alert for the burst (not one per connection), and the sweep rule, grouped by
port, keeps no more groups than its bound however many ports the flood names."""
from corpus_bed import engine, pipe  # noqa: F401 (the module's fixtures)
from agent.rules import window as W
from testbed.judge import fired, script_items

FLOOD = ("python3 -c 'import socket\n"
         "for p in range(1, {n} + 1):\n"
         "    s = socket.socket(); s.settimeout(0.2)\n"
         "    try: s.connect((\"127.0.0.1\", p))\n"
         "    except OSError: pass\n"
         "    s.close()'")


def test_a_connection_flood_is_one_scan_alert_and_bounded_state(pipe, engine,
                                                                 debian_containers):
    c = debian_containers(network=True)
    n = W.MAX_GROUPS + 1500
    items = script_items(pipe, c, FLOOD.format(n=n), timeout=60)
    connects = [i for i in items if i.kind == "connect" and i.event.dport]
    assert len({i.event.dport for i in connects}) >= n - 50      # the ring lost (almost) none
    hits = [(r, i) for r, i in fired(engine, items)]
    scans = [(r, i) for r, i in hits if r.name == "Port scan from a container"]
    assert len(scans) == 1, [r.name for r, _ in hits][:20]
    r, item = scans[0]
    assert (r.extra["match.count"], r.extra["match.field"], r.extra["match.group"]) == (
        12, "net.dport", {"container.id": c.id})
    assert len(r.extra["match.values"]) == 12
    sweep = engine.ruleset.rule("Network sweep from a container").window
    assert len(sweep) <= W.MAX_GROUPS and sweep.stats.evicted >= len(
        {i.event.dport for i in connects}) - W.MAX_GROUPS
    # every group the sweep keeps holds one address: nothing grew past its bound
    assert all(len(g.seen) <= 24 for g in sweep.groups.table.values())
