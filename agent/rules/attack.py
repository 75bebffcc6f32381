"""The ATT&CK catalog (rules/mitre/attack.yaml): tactics, techniques, and which tactics
each technique belongs to. Rules are checked against it."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import yaml

DEFAULT_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "rules", "mitre",
                            "attack.yaml")
_TACTIC = re.compile(r"^TA\d{4}$")
_TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")


@dataclass(frozen=True)
class Catalog:
    source: str
    version: str
    tactics: dict[str, str]                         # TA0006 -> Credential Access
    techniques: dict[str, tuple[str, frozenset]]    # T1003.008 -> (name, tactics)

    def tactic_name(self, tid: str) -> str:
        return self.tactics.get(tid, "")

    def technique_name(self, tid: str) -> str:
        t = self.techniques.get(tid)
        return t[0] if t else ""

    def check(self, tactic: str, technique: str) -> list[str]:
        """Problems with a rule's (tactic, technique), as messages; [] if fine."""
        out = []
        if not _TACTIC.match(tactic):
            out.append(f"tactic {tactic!r} is not an ATT&CK tactic id (TA0000)")
        elif tactic not in self.tactics:
            out.append(f"unknown tactic {tactic}")
        if not _TECHNIQUE.match(technique):
            out.append(f"technique {technique!r} is not an ATT&CK technique id "
                       "(T0000 or T0000.000)")
        elif technique not in self.techniques:
            out.append(f"unknown technique {technique}")
        elif tactic in self.tactics and tactic not in self.techniques[technique][1]:
            names = ", ".join(f"{t} {self.tactics[t]}"
                              for t in sorted(self.techniques[technique][1]))
            out.append(f"technique {technique} ({self.technique_name(technique)}) does not "
                       f"belong to tactic {tactic} ({self.tactics[tactic]}); it belongs to "
                       f"{names}")
        return out


def load(path: str = DEFAULT_PATH) -> Catalog:
    with open(path) as f:
        data = yaml.safe_load(f)
    tactics = {str(k): str(v) for k, v in data["tactics"].items()}
    techniques: dict[str, tuple[str, frozenset]] = {}
    for tid, spec in data["techniques"].items():
        tid = str(tid)
        name = spec[0]
        if len(spec) > 1:
            tacs = frozenset(spec[1])
        else:
            parent = techniques.get(tid.split(".")[0])
            if parent is None:
                raise ValueError(f"{path}: {tid} is listed before its parent technique")
            tacs = parent[1]
        unknown = tacs - set(tactics)
        if unknown:
            raise ValueError(f"{path}: {tid} names unknown tactics {sorted(unknown)}")
        techniques[tid] = (name, tacs)
    return Catalog(str(data.get("source", "")), str(data.get("version", "")), tactics,
                   techniques)
