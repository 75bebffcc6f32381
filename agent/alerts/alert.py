"""An alert: a rule matched an event. Carries the rule's ATT&CK tags, the rendered output
and a snapshot of the event's fields under the dotted vocabulary."""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from ..text import json_line


@dataclass(frozen=True)
class Alert:
    rule: str
    severity: str
    tactic_id: str
    tactic_name: str
    technique_id: str
    technique_name: str
    output: str
    action: str
    node: str
    fields: dict
    time: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc)
                      .isoformat(timespec="microseconds"))
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    source: str = "rule"          # rule | agent (the agent's own alerts: reload failures…)

    def to_dict(self) -> dict:
        return {"id": self.id, "time": self.time, "node": self.node, "rule": self.rule,
                "severity": self.severity, "source": self.source,
                "tactic": {"id": self.tactic_id, "name": self.tactic_name},
                "technique": {"id": self.technique_id, "name": self.technique_name},
                "output": self.output, "action": self.action, "fields": self.fields}

    def to_json(self) -> str:
        return record_json(self.to_dict())


def record_json(rec: dict) -> str:
    """An alert record as one JSON line (sets and tuples as lists; no raw control or bidi
    character, see agent/text.py)."""
    return json_line(rec, separators=(",", ":"), default=list)


def from_match(rule, item, catalog, node: str) -> Alert:
    return Alert(rule.name, rule.severity, rule.tactic, catalog.tactic_name(rule.tactic),
                 rule.technique, catalog.technique_name(rule.technique), rule.render(item),
                 rule.action, node, item.fields())


def agent_alert(name: str, severity: str, output: str, node: str, details: dict) -> Alert:
    """An alert the agent raises about itself (not from a rule)."""
    return Alert(name, severity, "", "", "", "", output, "log", node, details, source="agent")
