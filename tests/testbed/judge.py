"""Run a script in a real container and judge its events with a rule set: what the
procedure and benign corpora (tests/rules/test_procedures_*.py) and the per-rule tests
share. The events are read from a running Pipeline (the agent's own sensor, context and
drift stages); the script is followed by a sentinel exec, so that every event of the
script has arrived when the sentinel has."""
from __future__ import annotations

import time


def script_items(pipe, c, script: str, timeout: float = 10.0) -> list:
    """The enriched events of container c while `script` runs (sh -c, as root)."""
    c.sh(script, check=False)
    sentinel = f"sentinel-{time.monotonic_ns()}"
    c.exec("/bin/true", sentinel)
    deadline = time.monotonic() + timeout
    items, seen = [], False
    while time.monotonic() < deadline and not seen:
        for item in pipe.step():
            if item.container is None or item.container.id != c.id:
                continue
            if item.kind == "exec" and item.event.args == ("/bin/true", sentinel):
                seen = True
            items.append(item)
        time.sleep(0.02)
    assert seen, f"the sentinel exec after {script!r} never arrived"
    return items


def fired(engine, items) -> list[tuple]:
    """(rule, item) for every rule that matches every item, in order."""
    return [(r, item) for item in items for r in engine.ruleset.evaluate(item)]


def describe(matches) -> str:
    """One line per match: the rule, its technique and the fields that say what ran."""
    lines = []
    for r, item in matches:
        f = item.fields()
        lines.append(f"{r.name} [{r.technique}]: {item.kind} {f.get('proc.exe')} "
                     f"{list(f.get('proc.args') or ())} {f.get('file.path') or ''} "
                     f"{f.get('net.daddr') or ''}:{f.get('net.dport') or ''} parent "
                     f"{[a.get('name') for a in f.get('proc.ancestors') or ()][:3]}")
    return "\n".join(lines)
