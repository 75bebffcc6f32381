"""A Sigma rule's description as Mamori's: ATT&CK tags to one tactic and one technique
(checked against the catalog, rules/mitre/attack.yaml), level to severity, status and false
positives into the description and tags."""
from __future__ import annotations

import re

from .. import attack
from .expr import Untranslatable

LEVELS = {"informational": "info", "low": "low", "medium": "medium", "high": "high",
          "critical": "critical"}
_TECHNIQUE_TAG = re.compile(r"^t\d{4}(\.\d{3})?$")


def _tactic_ids(catalog: attack.Catalog) -> dict[str, str]:
    """credential-access -> TA0006, from the catalog's names (Credential Access)."""
    return {re.sub(r"[^a-z]+", "-", name.lower()).strip("-"): tid
            for tid, name in catalog.tactics.items()}


def attack_ids(tags, catalog: attack.Catalog, notes: list) -> tuple[str, str, list[str]]:
    """(tactic, technique, the ATT&CK tags not used) from a rule's tags. The technique is the
    first technique tag the catalog knows (a sub-technique it lacks gives its parent); the
    tactic the first tactic tag it belongs to, else the only tactic it has, else the first
    of its tactics in the catalog's order."""
    by_name = _tactic_ids(catalog)
    tactic_tags, technique_tags, rest = [], [], []
    for t in tags:
        if t.namespace != "attack":
            continue
        name = t.name.lower()
        if name.replace("_", "-") in by_name:
            tactic_tags.append(by_name[name.replace("_", "-")])
        elif _TECHNIQUE_TAG.match(name):
            technique_tags.append(name.upper())
        else:
            rest.append(f"attack.{t.name}")
    technique = None
    unknown = []
    for tid in technique_tags:
        if tid in catalog.techniques:
            technique = tid
            break
        parent = tid.split(".")[0]
        if "." in tid and parent in catalog.techniques:
            notes.append(f"technique {tid} is not in the catalog: its parent {parent} is used")
            technique = parent
            break
        unknown.append(tid)
    if technique is None:
        if unknown:
            raise Untranslatable("ATT&CK", f"no technique the catalog knows (tags: "
                                 f"{', '.join(unknown)}; the catalog has Linux and "
                                 "container techniques)")
        raise Untranslatable("ATT&CK", "no attack.tNNNN technique tag (a Mamori rule needs "
                             "a technique and a tactic)")
    belongs = catalog.techniques[technique][1]
    tactic = next((t for t in tactic_tags if t in belongs), None)
    if tactic is None:
        ordered = [t for t in catalog.tactics if t in belongs]
        tactic = ordered[0]
        if len(ordered) > 1:
            given = (f"its tactic tags ({', '.join(tactic_tags)}) are not among them"
                     if tactic_tags else "no tactic tag")
            notes.append(f"{technique} belongs to {', '.join(ordered)}; {given}: "
                         f"{tactic} used")
    others = [f"attack.{t.lower()}" for t in technique_tags if t != technique]
    return tactic, technique, others + rest


def severity(level, notes: list) -> str:
    if level is None:
        notes.append("no level: severity medium")
        return "medium"
    return LEVELS[level.name.lower()]
