"""A compiled ruleset: every rule's condition, exceptions and output compiled once per load
into Python closures, indexed by event kind, so that an event is only tested against the
rules that can match it. Every rule that matches fires (not first-match)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..severity import SEVERITIES
from . import attack, condition as C, fields as F
from .loader import Item, Problem, Where, merge, parse_file, rule_files

ACTIONS = ("log", "isolate", "terminate")
# %proc.exe, or %{k8s.labels.app.kubernetes.io/name} for names with other characters
_OUT_FIELD = re.compile(r"%\{([^}]+)\}|%([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+)")
_EXC_COMPS = {"=", "!=", "in", "startswith", "endswith", "contains", "glob"}


@dataclass
class Rule:
    name: str
    desc: str
    events: tuple[str, ...]
    condition: str
    output: str
    severity: str
    tactic: str
    technique: str
    action: str
    enabled: bool
    tags: tuple[str, ...]
    defined_at: str                      # file:line
    match: object = None                 # item -> bool (condition and not exceptions)
    render: object = None                # item -> str
    exceptions: tuple = ()               # names of the exceptions
    fields: set = field(default_factory=set)
    gate: object = None                  # kind -> condition.Gate (necessary) or None
    rank: int = 0                        # position in the ruleset (the order alerts keep)


@dataclass
class Ruleset:
    rules: list[Rule]
    by_kind: dict[str, tuple[Rule, ...]]
    catalog: attack.Catalog
    files: list[str]

    def __post_init__(self):
        for i, r in enumerate(self.rules):
            r.rank = i
        self._plans = {kind: _plan(kind, rules) for kind, rules in self.by_kind.items()}

    def evaluate(self, item) -> list[Rule]:
        """Every enabled rule the event matches, in ruleset order. Rules with a gate on
        the same field are skipped together when the event's value passes none of them."""
        plan = self._plans.get(item.event.kind)
        if plan is None:
            return []
        free, groups = plan
        hits = [r for r in free if r.match(item)]
        merged = False
        for get, exact, prefixes, suffixes, substrings, rules in groups:
            v = get(item)
            if v is None or not (v in exact or (prefixes and v.startswith(prefixes)) or
                                 (suffixes and v.endswith(suffixes)) or
                                 (substrings and any(map(v.__contains__, substrings)))):
                continue
            more = [r for r in rules if r.match(item)]
            if more:
                merged = merged or bool(hits)
                hits += more
        if merged:
            hits.sort(key=_rank)
        return hits

    def rule(self, name: str) -> Rule | None:
        for r in self.rules:
            if r.name == name:
                return r
        return None


def _rank(rule: Rule) -> int:
    return rule.rank


def _plan(kind: str, rules: tuple[Rule, ...]):
    """(rules without a gate, [(getter, exact, prefixes, suffixes, substrings, rules) per
    gated field]) for one event kind, each list in ruleset order."""
    free, by_field = [], {}
    for r in rules:
        g = r.gate(kind) if r.gate is not None else None
        if g is None:
            free.append(r)
            continue
        if g.field in by_field:
            merged, members = by_field[g.field]
            by_field[g.field] = (merged.union(g), members)
        else:
            by_field[g.field] = (g, members := [])
        members.append(r)
    groups = [(g.get, *_minimal(g), tuple(members)) for g, members in by_field.values()]
    return tuple(free), groups


def _minimal(g) -> tuple:
    """The gate's (exact, prefixes, suffixes, substrings) without the values another one
    already covers (a prefix of a longer prefix, an exact value under a prefix…): the same
    test, with less to test on every event."""
    def shortest(vals, covers):
        vals = sorted(set(vals), key=len)
        out: list = []
        for v in vals:
            if not any(covers(v, o) for o in out):
                out.append(v)
        return tuple(out)
    subs = shortest(g.substrings, lambda v, o: o in v)
    pre = tuple(p for p in shortest(g.prefixes, str.startswith)
                if not any(s in p for s in subs))
    suf = tuple(x for x in shortest(g.suffixes, str.endswith) if not any(s in x for s in subs))
    if not all(isinstance(v, str) for v in g.exact):
        return g.exact, pre, suf, subs
    exact = frozenset(v for v in g.exact if not (
        v.startswith(pre) or v.endswith(suf) or any(s in v for s in subs)))
    return exact, pre, suf, subs


class RulesError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        errors = [p for p in problems if p.level == "error"]
        super().__init__("\n".join(str(p) for p in errors))


def _cond_where(item: Item, key: str, offset: int) -> Problem:
    """Where a condition's character at `offset` is, as near as YAML lets us know."""
    node = item.nodes.get(key)
    w = item.value_at(key)
    style = getattr(node, "style", None)
    if style in (None, "'", '"') and node is not None and \
            node.start_mark.line == node.end_mark.line:
        return Where(w.file, w.line, w.col + offset + (1 if style else 0))
    return w


def _list_values(name, lists, raw, seen=()):
    out = []
    for v in raw:
        if isinstance(v, str) and v in lists and v not in seen:
            out += _list_values(v, lists, lists[v].values.get("items") or [], (*seen, name))
        else:
            out.append(v)
    return out


def compile_items(merged: dict[str, dict[str, Item]], catalog: attack.Catalog,
                  problems: list[Problem]) -> list[Rule]:
    lists_items, macros, rules = merged["list"], merged["macro"], merged["rule"]
    lists = {}
    for name, it in lists_items.items():
        vals = it.values.get("items")
        if not isinstance(vals, list) or not all(isinstance(v, (str, int)) and
                                                 not isinstance(v, bool) for v in vals):
            problems.append(it.value_at("items").problem(
                f"list {name!r}: items must be a list of strings or numbers"))
            continue
        lists[name] = _list_values(name, lists_items, vals)
    macro_src = {}
    for name, it in macros.items():
        cond = it.values.get("condition")
        if not isinstance(cond, str) or not cond.strip():
            problems.append(it.at("condition" if "condition" in it.keys else "macro").problem(
                f"macro {name!r} needs a condition (a string)"))
            continue
        macro_src[name] = cond
    ctx = C.Context(lists, macro_src)
    for name, it in macros.items():
        if name not in macro_src:
            continue
        # compile each macro on its own, so that its errors point into its own condition
        ctx.stack.append(name)
        try:
            p = C._Parser(macro_src[name], ctx)
            fn, can, gate = p.parse()
            ctx.compiled_macros.setdefault(name, C.Compiled(C._memo(fn), p.fields, can, gate))
        except C.ConditionError as e:
            ctx.broken.add(name)
            msg = str(e)
            problems.append(_cond_where(it, "condition", e.offset).problem(
                f"macro {name!r}: {msg}"))
        finally:
            ctx.stack.pop()
    ctx.used_macros = set()
    out = []
    for name, it in rules.items():
        r = _compile_rule(it, ctx, catalog, problems)
        if r is not None:
            out.append(r)
    for name, it in macros.items():
        if name not in ctx.used_macros:
            problems.append(it.where.problem(f"macro {name!r} is never used", "warning"))
    for name, it in lists_items.items():
        if name not in ctx.used_lists and not any(
                name in (other.values.get("items") or []) for other in lists_items.values()):
            problems.append(it.where.problem(f"list {name!r} is never used", "warning"))
    return out


def _compile_rule(it: Item, ctx: C.Context, catalog, problems) -> Rule | None:
    v, name = it.values, it.name
    ok = True

    def bad(key, msg, level="error"):
        nonlocal ok
        problems.append(it.value_at(key).problem(f"rule {name!r}: {msg}", level))
        ok = ok and level != "error"

    for key in ("desc", "events", "condition", "output", "severity", "tactic", "technique"):
        if key not in v:
            problems.append(it.where.problem(f"rule {name!r}: missing {key}:"))
            ok = False
    if not ok:
        return None
    for key in ("desc", "condition", "output"):
        if not isinstance(v[key], str) or not v[key].strip():
            bad(key, f"{key} must be a non-empty string")
    events = v["events"]
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        bad("events", "events must be a list of event kinds")
        events = []
    for e in events:
        if e not in F.EVENT_KINDS:
            bad("events", f"unknown event kind {e!r} (kinds: {', '.join(F.EVENT_KINDS)})")
    sev = v["severity"]
    if sev not in SEVERITIES:
        bad("severity", f"severity must be one of {', '.join(SEVERITIES)}, not {sev!r}")
    action = v.get("action", "log")
    if action not in ACTIONS:
        bad("action", f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    enabled = v.get("enabled", True)
    if not isinstance(enabled, bool):
        bad("enabled", f"enabled must be true or false, not {enabled!r}")
    tags = v.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        bad("tags", "tags must be a list of strings")
        tags = []
    tactic, technique = str(v["tactic"]), str(v["technique"])
    for msg in catalog.check(tactic, technique):
        bad("tactic" if msg.startswith(("tactic", "unknown tactic")) else "technique", msg)
    if not ok:
        return None
    try:
        comp = C.compile_condition(v["condition"], ctx)
    except C.ConditionError as e:
        problems.append(_cond_where(it, "condition", e.offset).problem(f"rule {name!r}: {e}"))
        return None
    render = _compile_output(it, v["output"], problems)
    if render is None:
        return None
    exc = _compile_exceptions(it, v.get("exceptions", []), ctx, problems)
    if exc is None:
        return None
    exc_fn, exc_names = exc
    for kind in events:
        if not comp.can(kind):
            missing = sorted(f for f in comp.fields if kind not in F.lookup(f).kinds)
            why = (f"{', '.join(missing)} never set on it" if missing else
                   "its condition asks for another event.kind")
            problems.append(it.value_at("events").problem(
                f"rule {name!r} can never match a {kind} event ({why})", "warning"))
    cond = comp.fn
    match = (lambda item: cond(item) and not exc_fn(item)) if exc_names else cond
    return Rule(name, v["desc"].strip(), tuple(events), v["condition"], v["output"], sev,
                tactic, technique, action, enabled, tuple(tags),
                f"{it.where.file}:{it.where.line}", match, render, tuple(exc_names),
                comp.fields, comp.gate)


def _compile_output(it: Item, template: str, problems) -> object:
    getters = []
    ok = True
    for m in _OUT_FIELD.finditer(template):
        fname = m.group(1) or m.group(2)
        fld = F.lookup(fname)
        if fld is None:
            problems.append(it.value_at("output").problem(
                f"rule {it.name!r}: output refers to unknown field %{fname}"))
            ok = False
            continue
        getters.append((m.group(0), fld.get))
    if not ok:
        return None
    # longest first, so %proc.exe_name is replaced before %proc.exe
    getters.sort(key=lambda g: -len(g[0]))

    def render(item):
        s = template
        for token, get in getters:
            val = get(item)
            if isinstance(val, (list, tuple)):
                val = " ".join(str(x) for x in val)
            s = s.replace(token, "<NA>" if val is None or val == "" else str(val))
        return s
    return render


def _compile_exceptions(it: Item, excs, ctx, problems):
    """exceptions: [{name, fields: [..], comps: [..], values: [[..], ..]}] -> a closure
    true when any value tuple matches."""
    if not isinstance(excs, list):
        problems.append(it.value_at("exceptions").problem(
            f"rule {it.name!r}: exceptions must be a list"))
        return None
    tests, names = [], []
    for i, e in enumerate(excs):
        where = it.value_at("exceptions")
        if not isinstance(e, dict) or "name" not in e or "fields" not in e:
            problems.append(where.problem(f"rule {it.name!r}: exception {i + 1} needs name: "
                                          "and fields:"))
            return None
        unknown = set(e) - {"name", "fields", "comps", "values"}
        if unknown:
            problems.append(where.problem(f"rule {it.name!r}: exception {e['name']!r}: unknown "
                                          f"key {sorted(unknown)[0]!r}"))
            return None
        flds = e["fields"] if isinstance(e["fields"], list) else [e["fields"]]
        comps = e.get("comps") or ["="] * len(flds)
        comps = comps if isinstance(comps, list) else [comps]
        values = e.get("values") or []
        getters = []
        for fname in flds:
            fld = F.lookup(str(fname))
            if fld is None:
                problems.append(where.problem(f"rule {it.name!r}: exception {e['name']!r}: "
                                              f"unknown field {fname!r}"))
                return None
            getters.append(fld)
        if len(comps) != len(flds) or any(c not in _EXC_COMPS for c in comps):
            problems.append(where.problem(
                f"rule {it.name!r}: exception {e['name']!r}: comps must give one of "
                f"{', '.join(sorted(_EXC_COMPS))} per field"))
            return None
        rows = []
        for row in values:
            row = row if isinstance(row, list) else [row]
            if len(row) != len(flds):
                problems.append(where.problem(
                    f"rule {it.name!r}: exception {e['name']!r}: each value must give "
                    f"{len(flds)} item(s), one per field ({row!r} does not)"))
                return None
            preds = []
            for fld, comp, val in zip(getters, comps, row):
                vals = val if comp == "in" and isinstance(val, list) else val
                text = (f"{fld.name} in ({', '.join(_q(x) for x in vals)})" if comp == "in"
                        else f"{fld.name} {comp} {_q(vals)}")
                try:
                    preds.append(C.compile_condition(text, ctx).fn)
                except C.ConditionError as err:
                    problems.append(where.problem(
                        f"rule {it.name!r}: exception {e['name']!r}: {err}"))
                    return None
            rows.append(tuple(preds))
        tests += rows
        names.append(str(e["name"]))
    rows = tuple(tests)
    return (lambda item: any(all(p(item) for p in row) for row in rows)), names


def _q(v) -> str:
    s = str(v)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def load(paths, catalog: attack.Catalog | None = None) -> tuple[Ruleset | None, list[Problem]]:
    """Load and compile rule files and directories. Returns (ruleset or None when there
    are errors, every problem found: errors and warnings)."""
    catalog = catalog or attack.load()
    problems: list[Problem] = []
    files = rule_files(paths)
    items = []
    for f in files:
        items += parse_file(f, problems)
    merged = merge(items, problems)
    rules = compile_items(merged, catalog, problems)
    problems.sort(key=lambda p: (p.file, p.line, p.col))
    if any(p.level == "error" for p in problems):
        return None, problems
    enabled = [r for r in rules if r.enabled]
    by_kind: dict[str, list[Rule]] = {}
    for r in enabled:
        for k in r.events:
            by_kind.setdefault(k, []).append(r)
    return Ruleset(rules, {k: tuple(v) for k, v in by_kind.items()}, catalog, files), problems
