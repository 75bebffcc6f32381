"""What the rule corpora share: the pipeline and rules they judge with (the module-scoped
fixtures of the per-rule, procedure and benign tests), and the procedures' judging
(tests/testbed/judge.py runs and reads the container)."""
from __future__ import annotations

import pytest

from agent import config
from agent.config import DEFAULT_RULES
from agent.pipeline import Pipeline
from agent.rules.engine import RuleEngine
from procedures import PROCEDURES
from testbed import runc
from testbed.judge import describe, fired, script_items


def procedures_of(image: str, part: int, parts: int) -> list:
    """The corpus's procedures for `image`, split in `parts` files that run at once."""
    mine = [p for p in PROCEDURES if image in p.images]
    return [p for i, p in enumerate(mine) if i % parts == part]


@pytest.fixture(scope="module")
def engine():
    e = RuleEngine([DEFAULT_RULES])
    e.load()
    return e


@pytest.fixture(scope="module")
def pipe():
    p = Pipeline(config.load(None, {"kubernetes.mode": "off", **runc.agent_overrides()}))
    p.start()
    yield p
    p.close()


def judge(proc, c, pipe, engine) -> None:
    """Run the procedure in c: some rule must report its technique."""
    if proc.setup:
        script_items(pipe, c, proc.setup)
    matches = fired(engine, script_items(pipe, c, proc.script))
    assert any(proc.detected_by(r.technique) for r, _ in matches), (
        f"{proc.name!r} ({proc.technique}) not detected; fired:\n{describe(matches)}")
