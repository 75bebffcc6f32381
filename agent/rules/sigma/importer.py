"""`mamori rules import-sigma FILE_OR_DIR...`: Sigma rules in, one Mamori rules file out,
and a report with one line per Sigma rule — translated (as which rule, with any note on
what it approximates) or not translated, and why.

Every rule produced is loaded through Mamori's own loader before it is written (ruleset.
load, with the ATT&CK catalog): a rule the loader rejects is reported as not translated with
the loader's message, so the file written always loads.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field

import yaml

from .. import attack
from .. import ruleset as RS
from .expr import FALSE, TRUE, Or, Untranslatable, bind, detection_expr, render
from .fieldmap import logsource_of
from .meta import attack_ids, severity

SIGMA_SUFFIXES = (".yml", ".yaml")


@dataclass
class Entry:
    """One Sigma rule (or one file that could not be read) and what became of it."""
    file: str
    title: str = ""
    sigma_id: str = ""
    translated: bool = False
    category: str = ""           # why not, in a word or two (the report's breakdown)
    detail: str = ""             # why not, exactly
    notes: list = field(default_factory=list)
    name: str = ""               # the Mamori rule's name

    def line(self) -> str:
        who = f"{self.file}: {self.title}" if self.title else self.file
        if self.translated:
            renamed = f" as {self.name!r}" if self.name != self.title else ""
            notes = f" (note: {'; '.join(self.notes)})" if self.notes else ""
            return f"{who}: translated{renamed}{notes}"
        return f"{who}: not translated: {self.category}: {self.detail}"


@dataclass
class Report:
    entries: list = field(default_factory=list)
    unreadable: list = field(default_factory=list)     # files that could not be read

    @property
    def translated(self) -> list:
        return [e for e in self.entries if e.translated]

    @property
    def failed(self) -> list:
        return [e for e in self.entries if not e.translated]

    def breakdown(self) -> Counter:
        return Counter(e.category for e in self.failed)

    def lines(self) -> list[str]:
        return [e.line() for e in self.entries]

    def summary(self) -> str:
        n = len(self.entries) - len(self.unreadable)
        return (f"{len(self.translated)} of {n} Sigma rules translated"
                + (f", {len(self.unreadable)} files unreadable" if self.unreadable else ""))


# -- input -------------------------------------------------------------------------------
def sigma_files(paths, report: Report) -> list[str]:
    """Files named, and the *.yml / *.yaml files below directories (recursively, sorted:
    Sigma repositories nest them by log source)."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                out += [os.path.join(root, f) for f in sorted(files)
                        if f.endswith(SIGMA_SUFFIXES)]
        elif os.path.exists(p):
            out.append(p)
        else:
            _unreadable(report, p, "no such file or directory")
    return out


def _unreadable(report: Report, path: str, why: str) -> None:
    report.entries.append(Entry(path, category="unreadable", detail=why))
    report.unreadable.append(path)


def _documents(path: str, report: Report):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        _unreadable(report, path, "not UTF-8 text")
        return []
    except OSError as e:
        _unreadable(report, path, f"cannot read: {e.strerror or e}")
        return []
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        _unreadable(report, path, f"YAML syntax{where}: {getattr(e, 'problem', None) or e}")
        return []


# -- one rule ------------------------------------------------------------------------------
def _title(doc) -> str:
    t = doc.get("title") if isinstance(doc, dict) else None
    return " ".join(str(t).split()) if t is not None else ""


def _parse(doc):
    """A pySigma SigmaRule, or Untranslatable for what is no single rule or no valid one."""
    from sigma.rule import SigmaRule
    if not isinstance(doc, dict):
        raise Untranslatable("invalid Sigma", f"a rule is a mapping (title:, logsource:, "
                             f"detection: …), not a {type(doc).__name__}")
    if "correlation" in doc:
        raise Untranslatable("aggregation/timeframe",
                             "a correlation rule (events counted or ordered over time); "
                             "Mamori rules match one event at a time")
    if "filter" in doc and "detection" not in doc:
        raise Untranslatable("not a rule", "a Sigma filter (it changes other rules)")
    if "action" in doc:
        raise Untranslatable("not a rule", f"a multi-document part (action: {doc['action']})")
    _check_types(doc)
    try:
        rule = SigmaRule.from_dict(doc, collect_errors=True)
    except Exception as e:   # pySigma raises assorted types on wrongly typed input
        raise Untranslatable("invalid Sigma", _sigma_message(e)) from None
    if rule.errors:
        raise Untranslatable("invalid Sigma", _sigma_message(rule.errors[0]))
    return rule


def _check_types(doc: dict) -> None:
    """The types pySigma takes without checking (a list as the category, a number as the
    condition), checked here so that the report says which key is wrong."""
    def bad(key, what):
        v = doc_value(key)
        given = type(v).__name__
        if isinstance(v, list):
            odd = next((x for x in v if not isinstance(x, str)), None)
            given = ("an empty list" if not v else "a list" if odd is None else
                     f"a list holding {odd!r}")
        raise Untranslatable("invalid Sigma", f"{key} must be {what}, not {given}")

    def doc_value(key):
        node = doc
        for k in key.split("."):
            node = node.get(k) if isinstance(node, dict) else None
        return node
    for key in ("title", "id", "status", "level", "description", "author"):
        if doc.get(key) is not None and not isinstance(doc[key], (str, int)):
            bad(key, "text")
    for key in ("logsource", "detection"):
        if not isinstance(doc.get(key), dict):
            bad(key, "a mapping")
    for key in ("category", "product", "service"):
        v = doc["logsource"].get(key)
        if v is not None and not isinstance(v, str):
            bad(f"logsource.{key}", "text")
    cond = doc["detection"].get("condition")
    if not (isinstance(cond, str) or (isinstance(cond, list) and cond and
                                      all(isinstance(c, str) for c in cond))):
        bad("detection.condition", "text or a list of texts")
    for key in ("tags", "falsepositives", "references"):
        v = doc.get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            bad(key, "a list of texts")


def _sigma_message(e) -> str:
    msg = str(e).strip() or type(e).__name__
    return re.sub(r"\s+", " ", msg)


def _conjunction(parts) -> str:
    """`a and b and c`, each part (text, needs parentheses) as given."""
    parts = [(t, paren) for t, paren in parts if t]
    return " and ".join(f"({t})" if paren and len(parts) > 1 else t for t, paren in parts)


def _condition(expr, logsource, category: str, notes: list) -> tuple[list[str], str]:
    kept = []
    for v in logsource.variants:
        b = bind(expr, v, category, notes)
        if b is not FALSE:
            kept.append((v, b))
    if not kept:
        raise Untranslatable("condition", f"it cannot hold on any event of {category} "
                             f"({', '.join(v.kind for v in logsource.variants)})")
    texts = []
    for v, b in kept:
        body = ("", False) if b is TRUE else (render(b), isinstance(b, Or))
        parts = [body, (v.test, " or " in v.test)]
        if len(kept) > 1:
            parts.insert(0, (f"event.kind = {v.kind}", False))
        text = _conjunction(parts) or f"event.kind = {v.kind}"
        texts.append(text)
    cond = texts[0] if len(texts) == 1 else " or ".join(f"({t})" for t in texts)
    return [v.kind for v, _ in kept], cond


def _describe(rule, sigma_id: str, source: str) -> str:
    desc = " ".join(str(rule.description or rule.title).split()).rstrip(".") + "."
    status = rule.status.name.lower() if rule.status else "not given"
    level = rule.level.name.lower() if rule.level else "not given"
    out = [desc, f"Imported from Sigma rule {sigma_id or '(no id)'} ({os.path.basename(source)};"
           f" status {status}, level {level}" + (f"; by {rule.author}" if rule.author else "")
           + ")."]
    if rule.falsepositives:
        out.append("False positives: " + "; ".join(" ".join(str(f).split()).rstrip(".")
                                                   for f in rule.falsepositives) + ".")
    return " ".join(out)


def translate(doc, source: str, catalog: attack.Catalog, names: set) -> tuple[dict, Entry]:
    """(the Mamori rule as a dict, its Entry) for one Sigma document; Entry.translated is
    False (and the dict empty) when it cannot be translated."""
    entry = Entry(source, title=_title(doc))
    try:
        rule = _parse(doc)
        entry.sigma_id = str(rule.id or "")
        entry.title = " ".join(str(rule.title).split())
        logsource, why = logsource_of(rule.logsource)
        if logsource is None:
            raise Untranslatable("logsource", why)
        category = rule.logsource.category
        expr = detection_expr(rule, entry.notes)
        events, cond = _condition(expr, logsource, category, entry.notes)
        tactic, technique, more_tags = attack_ids(rule.tags, catalog, entry.notes)
    except Untranslatable as e:
        entry.category, entry.detail = e.category, e.detail
        return {}, entry
    except Exception as e:       # a type pySigma let through and then trips on
        entry.category, entry.detail = "invalid Sigma", f"{type(e).__name__}: {e}"
        return {}, entry
    name = entry.title or f"Sigma rule {entry.sigma_id}"
    if name in names:
        name = f"{name} ({entry.sigma_id[:8] or os.path.basename(source)})"
    n = 2
    while name in names:
        name, n = f"{entry.title} ({n})", n + 1
    names.add(name)
    entry.name, entry.translated = name, True
    status = rule.status.name.lower() if rule.status else ""
    tags = ["sigma"] + ([f"sigma-status:{status}"] if status else []) + more_tags + \
        [f"{t.namespace}.{t.name}" for t in rule.tags if t.namespace != "attack"]
    out = {
        "rule": name,
        "desc": _describe(rule, entry.sigma_id, source),
        "events": events,
        "condition": cond,
        "output": re.sub(r"%(?=[a-z{])", "% ", entry.title) + ": " + logsource.output,
        "severity": severity(rule.level, entry.notes),
        "tactic": tactic,
        "technique": technique,
    }
    if status in ("deprecated", "unsupported"):
        out["enabled"] = False
        entry.notes.append(f"status {status}: enabled: false")
    out["tags"] = tags
    return out, entry


# -- output --------------------------------------------------------------------------------
def _chunk(rule: dict, entry: Entry) -> str:
    head = f"# Sigma {entry.sigma_id or '(no id)'} from {entry.file}\n"
    for width in (96, float("inf")):   # folded lines must read back as the same text
        text = yaml.safe_dump([rule], sort_keys=False, allow_unicode=True, width=width,
                              default_flow_style=None)
        if yaml.safe_load(text) == [rule]:
            break
    return head + text


def _validate(chunks: list, catalog: attack.Catalog) -> dict:
    """Load the rules through Mamori's loader: {chunk index: [problems]} (errors, and
    warnings as 'warning: …'), every chunk on its own lines."""
    starts, line = [], 1
    for c in chunks:
        starts.append(line)
        line += c.count("\n")
    out: dict = {}
    if not chunks:
        return out
    with tempfile.TemporaryDirectory(prefix="mamori-sigma-") as d:
        path = os.path.join(d, "sigma.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(chunks))
        _, problems = RS.load([path], catalog)
    for p in problems:
        i = max(j for j, s in enumerate(starts) if s <= p.line) if p.line >= 1 else 0
        msg = p.message if p.level == "error" else f"warning: {p.message}"
        out.setdefault(i, []).append((p.level, msg))
    return out


def import_sigma(paths, catalog: attack.Catalog | None = None) -> tuple[str, Report]:
    """Translate the Sigma rules in files and directories. Returns (the Mamori rules file's
    text, which Mamori's loader loads; the Report)."""
    catalog = catalog or attack.load()
    report = Report()
    names: set = set()
    pairs = []
    for path in sigma_files(paths, report):
        for doc in _documents(path, report):
            rule, entry = translate(doc, path, catalog, names)
            report.entries.append(entry)
            if entry.translated:
                pairs.append((rule, entry))
    while True:                  # dropping a rejected rule never makes another one wrong
        chunks = [_chunk(r, e) for r, e in pairs]
        problems = _validate(chunks, catalog)
        rejected = {i for i, ps in problems.items() if any(lv == "error" for lv, _ in ps)}
        for i, ps in problems.items():
            e = pairs[i][1]
            if i in rejected:
                e.translated, e.category = False, "rejected by the rule loader"
                e.detail = "; ".join(m for lv, m in ps if lv == "error")
            else:
                e.notes += [m for _, m in ps if m not in e.notes]
        if not rejected:
            break
        pairs = [p for i, p in enumerate(pairs) if i not in rejected]
    header = ("# Mamori rules translated from Sigma by `mamori rules import-sigma` "
              f"({len(pairs)} rules; docs/sigma.md says how).\n"
              "# Regenerate them from the Sigma sources rather than editing them here.\n")
    return header + "\n".join([""] + chunks if chunks else []), report


def main_import(args_list) -> int:
    """`mamori rules import-sigma FILE_OR_DIR... [-o OUT]`: the rules on stdout or in OUT,
    the report on stderr. 1 when an input cannot be read, or when rules were found and none
    could be translated; else 0."""
    ap = argparse.ArgumentParser(prog="mamori rules import-sigma",
                                 description="Translate Sigma rules into Mamori rules.")
    ap.add_argument("paths", nargs="+", metavar="FILE_OR_DIR",
                    help="Sigma rule files, or directories searched for *.yml and *.yaml")
    ap.add_argument("-o", "--output", metavar="OUT",
                    help="write the rules file here (default: standard output)")
    try:
        args = ap.parse_args(args_list)
    except SystemExit as e:
        return int(e.code or 0)
    text, report = import_sigma(args.paths)
    for line in report.lines():
        print(line, file=sys.stderr)
    print(report.summary(), file=sys.stderr)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            print(f"{args.output}: cannot write: {e.strerror or e}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    if report.unreadable:
        return 1
    if report.failed and not report.translated:
        return 1
    return 0
