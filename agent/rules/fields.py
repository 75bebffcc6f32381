"""The fields a rule can use: type, the event kinds that carry them, and how to read each
from an enriched event without building the whole field dict (rules touch a few fields of
each event; building all of them costs more than evaluating the rules).

Derived from the field registry (agent/fields.py): every field it marks for rules."""
from __future__ import annotations

from .. import fields as registry
from ..fields import (BOOL, EVENT_KINDS, INT, INTS, LIST_TYPES, MAP, STR, STRS,  # noqa: F401
                      Field)

ALL = registry.ALL_KINDS

FIELDS: dict[str, Field] = {f.name: f for f in registry.REGISTRY.values() if f.in_rules}

# fields alerts carry that a rule cannot name: why, for the error message
NOT_FOR_RULES: dict[str, str] = {f.name: f.why for f in registry.REGISTRY.values()
                                 if not f.in_rules}


def lookup(name: str) -> Field | None:
    """A field by name; `k8s.labels.<key>` gives one label (a string field)."""
    f = FIELDS.get(name)
    if f is not None:
        return f
    if name.startswith("k8s.labels.") and len(name) > len("k8s.labels."):
        key = name[len("k8s.labels."):]

        def get(item, _k=key):
            return item.pod.labels.get(_k) if item.pod is not None else None
        return Field(name, STR, ALL, get)
    return None
