"""Severity of a finding: the CVSS base score computed from the record's vector with the
`cvss` library (v3.x first, then v4, then v2), else the distribution's own rating (Debian
urgency, Ubuntu priority, GHSA's database_specific.severity), else "unknown".

Levels are agent/severity.py's names (info, low, medium, high, critical) plus "unknown".
"""
from __future__ import annotations

from dataclasses import dataclass

import cvss

UNKNOWN = "unknown"
# the order a CVSS vector is preferred in
CVSS_TYPES = ("CVSS_V3", "CVSS_V4", "CVSS_V2")
# distribution ratings -> level (Debian urgency "unimportant", Ubuntu "negligible": low)
DISTRO_LEVEL = {"critical": "critical", "important": "high", "high": "high",
                "moderate": "medium", "medium": "medium", "low": "low",
                "negligible": "low", "unimportant": "low"}


@dataclass(frozen=True, slots=True)
class Severity:
    level: str                      # info | low | medium | high | critical | unknown
    score: float | None = None      # the CVSS base score, when a vector was given
    vector: str = ""
    source: str = ""                # CVSS_V3 | CVSS_V4 | CVSS_V2 | the distro field | ""
    distro: str = ""                # the distribution's own rating, as written


def level_of(score: float) -> str:
    """CVSS v3/v4 qualitative rating (v2 scores are mapped on the same scale)."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    if score > 0.0:
        return "low"
    return "info"


def base_score(kind: str, vector: str) -> float:
    """The base score of a vector; raises ValueError for one the library rejects."""
    try:
        if kind == "CVSS_V3":
            return float(cvss.CVSS3(vector).base_score)
        if kind == "CVSS_V4":
            return float(cvss.CVSS4(vector).base_score)
        if kind == "CVSS_V2":
            return float(cvss.CVSS2(vector).base_score)
    except Exception as e:          # cvss raises CVSS2/3/4MalformedError and others
        raise ValueError(f"{kind} vector {vector!r}: {e}") from None
    raise ValueError(f"not a CVSS type: {kind}")


def _distro(specific: tuple[dict, ...], severity: tuple[dict, ...]) -> tuple[str, str]:
    for s in severity:              # OSV 1.6: {"type": "Ubuntu", "score": "medium"}
        if s.get("type") == "Ubuntu" and isinstance(s.get("score"), str):
            return s["score"], "Ubuntu priority"
    for d in specific:
        for key in ("urgency", "severity", "priority"):
            v = d.get(key)
            if isinstance(v, str) and v.strip():
                return v.strip(), key
    return "", ""


def of(severity: tuple[dict, ...], specific: tuple[dict, ...] = ()) -> Severity:
    """The severity of a record (its severity[] and its affected entry's, and the
    database_specific/ecosystem_specific objects, most specific first)."""
    distro, distro_src = _distro(specific, severity)
    by_type = {}
    for s in severity:
        by_type.setdefault(s.get("type"), s.get("score"))
    for kind in CVSS_TYPES:
        vec = by_type.get(kind)
        if not vec:
            continue
        try:
            score = base_score(kind, vec)
        except ValueError:
            continue                # a vector the library refuses: try the next one
        return Severity(level_of(score), score, vec, kind, distro)
    if distro:
        lvl = DISTRO_LEVEL.get(distro.lower().rstrip("*").strip(), UNKNOWN)
        return Severity(lvl, None, "", distro_src if lvl != UNKNOWN else "", distro)
    return Severity(UNKNOWN)
