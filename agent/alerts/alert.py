"""An alert: a rule matched an event (or the agent reports on itself). One immutable
record from the evaluator to every output: the response writes its outcome with
`with_response`, the journal gives it its sequence number (`AlertHub.publish` returns the
numbered record), and nothing changes it in place — a subscriber's queue, the journal and
the response thread may all hold the same record.

Dicts appear only where an alert leaves the process: `to_dict()` is the one JSON / journal
shape (docs/alerts.md), `from_dict()` reads it back (journal replay, `mamori alerts`), and
agent/api/server.py `to_proto` builds the gRPC message from the record."""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ..text import json_line

SOURCES = ("rule", "agent", "response")
_EMPTY = MappingProxyType({})


@dataclass(frozen=True)
class Response:
    """What the response did about the alert (agent/response/responder.py)."""
    action: str                 # isolate | terminate
    status: str                 # done | failed | pending | skipped | audit
    detail: str = ""

    def to_dict(self) -> dict:
        return {"action": self.action, "status": self.status, "detail": self.detail}

    def added(self, note: str, **changes) -> "Response":
        """This response with `note` appended to its detail (and any field changed)."""
        return replace(self, detail=f"{self.detail}; {note}" if self.detail else note,
                       **changes)


@dataclass(frozen=True)
class Alert:
    rule: str
    severity: str
    tactic_id: str
    tactic_name: str
    technique_id: str
    technique_name: str
    output: str
    action: str                 # the rule's action: log | isolate | terminate
    node: str
    fields: MappingProxyType    # the event's snapshot under the dotted names (read-only)
    time: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc)
                      .isoformat(timespec="microseconds"))
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    source: str = "rule"        # rule | agent (its own alerts) | response (a response's outcome)
    response: Response | None = None
    seq: int = 0                # the journal's number; 0 until published

    def __post_init__(self):
        if not isinstance(self.fields, MappingProxyType):
            object.__setattr__(self, "fields",
                               MappingProxyType(self.fields) if self.fields else _EMPTY)

    def with_response(self, response: Response, source: str | None = None) -> "Alert":
        return replace(self, response=response, source=source or self.source)

    def with_fields(self, updates: dict) -> "Alert":
        """A copy whose snapshot has `updates` set (the pod learnt after the event)."""
        return replace(self, fields=MappingProxyType({**self.fields, **updates}))

    def to_dict(self) -> dict:
        d = {"id": self.id, "time": self.time, "node": self.node, "rule": self.rule,
             "severity": self.severity, "source": self.source,
             "tactic": {"id": self.tactic_id, "name": self.tactic_name},
             "technique": {"id": self.technique_id, "name": self.technique_name},
             "output": self.output, "action": self.action, "fields": dict(self.fields)}
        if self.response is not None:
            d["response"] = self.response.to_dict()
        if self.seq:
            d["seq"] = self.seq
        return d

    def to_json(self) -> str:
        """One JSON line (sets and tuples as lists; no raw control or bidi character, see
        agent/text.py)."""
        return json_line(self.to_dict(), separators=(",", ":"), default=list)

    @classmethod
    def from_dict(cls, d: dict) -> "Alert":
        """The record `to_dict` wrote (the journal's, a JSON line). Missing parts are empty;
        a part of the wrong type is a ValueError naming it."""
        if not isinstance(d, dict):
            raise ValueError(f"an alert record is a map, not {type(d).__name__}")

        def part(key, kind, default):
            v = d.get(key, default)
            if v is None:
                return default
            if not isinstance(v, kind):
                raise ValueError(f"alert record: {key} is {type(v).__name__}, not "
                                 f"{kind.__name__}")
            return v
        tac, tech = part("tactic", dict, {}), part("technique", dict, {})
        r = part("response", dict, None)
        return cls(
            rule=part("rule", str, ""), severity=part("severity", str, ""),
            tactic_id=str(tac.get("id") or ""), tactic_name=str(tac.get("name") or ""),
            technique_id=str(tech.get("id") or ""),
            technique_name=str(tech.get("name") or ""),
            output=part("output", str, ""), action=part("action", str, "log"),
            node=part("node", str, ""), fields=part("fields", dict, {}),
            time=part("time", str, ""), id=part("id", str, ""),
            source=part("source", str, "rule"),
            response=None if r is None else Response(
                str(r.get("action") or ""), str(r.get("status") or ""),
                str(r.get("detail") or "")),
            seq=part("seq", int, 0))


def from_match(rule, item, catalog, node: str) -> Alert:
    """The alert of a rule that matched `item`; a threshold or sequence rule that fired
    adds what it counted (match.count, match.values, match.steps…) to the snapshot."""
    fields, extra = item.fields(), rule.extra
    if extra:
        fields.update(extra)
    return Alert(rule.name, rule.severity, rule.tactic, catalog.tactic_name(rule.tactic),
                 rule.technique, catalog.technique_name(rule.technique),
                 rule.render(item, extra) if extra else rule.render(item),
                 rule.action, node, fields)


def agent_alert(name: str, severity: str, output: str, node: str, details: dict) -> Alert:
    """An alert the agent raises about itself (not from a rule)."""
    return Alert(name, severity, "", "", "", "", output, "log", node, details, source="agent")
