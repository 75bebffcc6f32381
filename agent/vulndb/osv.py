"""One OSV record: parsed from JSON, checked, and reduced to what matching needs.

A record that does not follow the schema where it matters (no id, affected packages without
an ecosystem or name, ranges without events, event versions the ecosystem cannot order) is
reported with why; what can be kept of it is kept (an affected entry with a bad range is
dropped, not the whole record). Withdrawn records are recognised so that the importer can
leave them out.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import versions

RANGE_TYPES = ("ECOSYSTEM", "SEMVER", "GIT")
EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")


class RecordError(ValueError):
    """The record cannot be used at all (the message says why)."""


@dataclass(frozen=True, slots=True)
class Range:
    type: str                                   # ECOSYSTEM | SEMVER (GIT is not matched)
    events: tuple[tuple[str, str], ...]         # (kind, version) in the record's order


@dataclass(frozen=True, slots=True)
class Affected:
    ecosystem: str                  # as written: "Debian:12", "PyPI", "Alpine:v3.19"
    name: str                       # as written
    key: str                        # the name normalised for the ecosystem (the index)
    purl: str = ""
    ranges: tuple[Range, ...] = ()
    versions: tuple[str, ...] = ()
    severity: tuple[dict, ...] = ()             # affected[].severity (schema 1.5+)
    ecosystem_specific: dict = field(default_factory=dict)
    database_specific: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Record:
    id: str
    modified: str
    withdrawn: str = ""
    aliases: tuple[str, ...] = ()
    summary: str = ""
    details: str = ""
    severity: tuple[dict, ...] = ()             # [{"type": "CVSS_V3", "score": vector}]
    references: tuple[str, ...] = ()
    database_specific: dict = field(default_factory=dict)
    affected: tuple[Affected, ...] = ()


def normalise_name(ecosystem: str, name: str) -> str:
    """The name as the ecosystem compares names: PEP 503 for PyPI; lower-case for the
    case-insensitive ones (Maven group:artifact, Debian/Alpine/RPM source names are already
    lower-case by policy); npm and Go as written (they are case-sensitive)."""
    base = ecosystem.split(":", 1)[0]
    if base == "PyPI":
        import re
        return re.sub(r"[-_.]+", "-", name).lower()
    if base in ("Maven", "Debian", "Ubuntu", "Alpine"):
        return name.lower()
    return name


def _str(v, where: str, problems: list[str], required=False) -> str:
    if v is None:
        if required:
            raise RecordError(f"{where}: missing")
        return ""
    if not isinstance(v, str):
        if required:
            raise RecordError(f"{where}: must be a string, not {type(v).__name__}")
        problems.append(f"{where}: must be a string, not {type(v).__name__} (ignored)")
        return ""
    return v


def _dict(v, where: str, problems: list[str]) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict):
        problems.append(f"{where}: must be an object (ignored)")
        return {}
    return v


def _severity(v, where: str, problems: list[str]) -> tuple[dict, ...]:
    out = []
    for i, s in enumerate(v or ()):
        if isinstance(s, dict) and isinstance(s.get("type"), str) and \
                isinstance(s.get("score"), str):
            out.append({"type": s["type"], "score": s["score"]})
        else:
            problems.append(f"{where}[{i}]: needs a type and a score (ignored)")
    return tuple(out)


def _affected(a, i: int, problems: list[str]) -> Affected | None:
    where = f"affected[{i}]"
    if not isinstance(a, dict):
        problems.append(f"{where}: must be an object (ignored)")
        return None
    pkg = a.get("package")
    if not isinstance(pkg, dict):
        problems.append(f"{where}: no package (ignored)")
        return None
    eco, name = pkg.get("ecosystem"), pkg.get("name")
    if not isinstance(eco, str) or not eco or not isinstance(name, str) or not name:
        problems.append(f"{where}.package: needs an ecosystem and a name (ignored)")
        return None
    ranges = []
    for j, r in enumerate(a.get("ranges") or ()):
        rw = f"{where}.ranges[{j}]"
        if not isinstance(r, dict) or r.get("type") not in RANGE_TYPES:
            problems.append(f"{rw}: type must be one of {', '.join(RANGE_TYPES)} (ignored)")
            continue
        evs = r.get("events")
        if not isinstance(evs, list) or not evs:
            problems.append(f"{rw}: no events (ignored)")
            continue
        events, bad = [], None
        for k, e in enumerate(evs):
            kinds = [x for x in EVENT_KINDS if isinstance(e, dict) and x in e]
            if len(kinds) != 1 or not isinstance(e[kinds[0]], str) or not e[kinds[0]]:
                bad = f"{rw}.events[{k}]: must be exactly one of {', '.join(EVENT_KINDS)}"
                break
            kind, ver = kinds[0], e[kinds[0]]
            if r["type"] != "GIT" and not (kind == "introduced" and ver == "0"):
                why = versions.check(eco, r["type"], ver)
                if why:
                    bad = f"{rw}.events[{k}]: {kind} {ver!r}: {why}"
                    break
            events.append((kind, ver))
        if bad:
            problems.append(bad + " (range ignored)")
            continue
        if not any(k == "introduced" for k, _ in events):
            problems.append(f"{rw}: no introduced event (range ignored)")
            continue
        ranges.append(Range(r["type"], tuple(events)))
    vers = a.get("versions") or []
    if not isinstance(vers, list) or not all(isinstance(v, str) for v in vers):
        problems.append(f"{where}.versions: must be a list of strings (ignored)")
        vers = []
    if not ranges and not vers:
        problems.append(f"{where} ({eco} {name}): no usable range or version (ignored)")
        return None
    return Affected(eco, name, normalise_name(eco, name), _str(pkg.get("purl"), "purl", []),
                    tuple(ranges), tuple(vers),
                    _severity(a.get("severity"), f"{where}.severity", problems),
                    _dict(a.get("ecosystem_specific"), f"{where}.ecosystem_specific", problems),
                    _dict(a.get("database_specific"), f"{where}.database_specific", problems))


def parse(data: bytes | str | dict) -> tuple[Record, list[str]]:
    """(record, problems that did not stop it). Raises RecordError when nothing of it can be
    used: not JSON, not an object, no id or modified, no affected package left."""
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise RecordError(f"not JSON: {e}") from None
    if not isinstance(data, dict):
        raise RecordError("not an OSV record (a JSON object)")
    problems: list[str] = []
    rid = _str(data.get("id"), "id", problems, required=True)
    if not rid:
        raise RecordError("id: empty")
    modified = _str(data.get("modified"), "modified", problems, required=True)
    withdrawn = _str(data.get("withdrawn"), "withdrawn", problems)
    aliases: list[str] = []
    for key in ("aliases", "upstream"):     # upstream (schema 1.6): the CVE a distro
        v = data.get(key) or []             # record (UBUNTU-CVE-..., ALPINE-CVE-...) is about
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            problems.append(f"{key}: must be a list of strings (ignored)")
            continue
        aliases += [x for x in v if x not in aliases and x != rid]
    refs = []
    for i, r in enumerate(data.get("references") or ()):
        if isinstance(r, dict) and isinstance(r.get("url"), str):
            refs.append(r["url"])
        else:
            problems.append(f"references[{i}]: needs a url (ignored)")
    affected_raw = data.get("affected") or []
    if not isinstance(affected_raw, list):
        raise RecordError("affected: must be a list")
    affected = tuple(a for a in (_affected(a, i, problems) for i, a in enumerate(affected_raw))
                     if a is not None)
    rec = Record(rid, modified, withdrawn, tuple(aliases),
                 _str(data.get("summary"), "summary", problems),
                 _str(data.get("details"), "details", problems),
                 _severity(data.get("severity"), "severity", problems), tuple(refs),
                 _dict(data.get("database_specific"), "database_specific", problems), affected)
    if not affected and not withdrawn:
        raise RecordError("no affected package that can be matched" +
                          (f" ({'; '.join(problems)})" if problems else ""))
    return rec, problems
