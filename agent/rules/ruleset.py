"""A compiled ruleset: every rule's condition, exceptions and output compiled once per load
into Python closures, indexed by event kind, so that an event is only tested against the
rules that can match it. Every rule that matches fires (not first-match)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ..severity import SEVERITIES
from .. import fields as registry
from . import attack, condition as C, fields as F, window as W
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
    window: object = None                # window.Threshold | window.Sequence: over time
    extra: object = None                 # the match.* fields of a fired windowed rule

    def fired(self, extra: dict) -> "Rule":
        """This rule as it fired over time: its alert carries `extra` (match.count…)."""
        return replace(self, extra=extra)


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
        self.windowed = tuple(r for r in self.rules if r.window is not None and r.enabled)

    def evaluate(self, item) -> list[Rule]:
        """Every enabled rule the event matches, in ruleset order; a threshold or sequence
        rule only when the event completes its match (then with its match fields)."""
        hits = self.matching(item)
        if hits and self.windowed:
            hits = _over_time(item, hits)
        return hits

    def matching(self, item) -> list[Rule]:
        """Every enabled rule whose condition the event satisfies, in ruleset order. The
        rules gated on one field are found from the event's value of it: those whose gate
        names that exact value (one dict lookup), and, when the value passes one of their
        prefix, suffix or substring tests, those with such tests; the others are skipped
        without being tested."""
        plan = self._plans.get(item.event.kind)
        if plan is None:
            return []
        free, groups = plan
        hits = [r for r in free if r.match(item)]
        merged = False
        for get, by_value, by_value_plus, prefixes, suffixes, substrings, partial in groups:
            v = get(item)
            if v is None:
                continue
            if partial and ((prefixes and v.startswith(prefixes)) or
                            (suffixes and v.endswith(suffixes)) or
                            (substrings and any(map(v.__contains__, substrings)))):
                cand = by_value_plus.get(v, partial)
            else:
                cand = by_value.get(v)
                if cand is None:
                    continue
            more = [r for r in cand if r.match(item)]
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


def _over_time(item, hits: list[Rule]) -> list[Rule]:
    """The hits with each threshold or sequence rule fed the event: kept (as fired, with its
    match fields) only when that completes its match."""
    out = []
    for r in hits:
        if r.window is None:
            out.append(r)
            continue
        m = r.window.offer(item)
        if m is not None:
            out.append(r.fired(m))
    return out


def _plan(kind: str, rules: tuple[Rule, ...]):
    """(rules without a gate, [per gated field: (getter, {value: rules whose gate names it
    exactly}, {value: those and the partial ones}, prefixes, suffixes, substrings, the
    partial rules: those with a prefix, suffix or substring test)]) for one event kind,
    each tuple of rules in ruleset order."""
    free, by_field = [], {}
    for r in rules:
        g = r.gate(kind) if r.gate is not None else None
        if g is None:
            free.append(r)
            continue
        by_field.setdefault(g.field, []).append((r, g))
    groups = []
    for members in by_field.values():
        by_value: dict = {}
        partial, merged = [], None
        for r, g in members:
            for v in g.exact:
                by_value.setdefault(v, []).append(r)
            if g.prefixes or g.suffixes or g.substrings:
                partial.append(r)
                part = C.Gate(g.field, g.get, frozenset(), g.prefixes, g.suffixes,
                              g.substrings)
                merged = part if merged is None else merged.union(part)
        pre, suf, subs = _minimal(merged) if merged is not None else ((), (), ())
        partial_t = tuple(partial)
        plus = {v: tuple(sorted({r.rank: r for r in (*rs_, *partial_t)}.values(), key=_rank))
                for v, rs_ in by_value.items()} if partial_t else {}
        groups.append((members[0][1].get, {v: tuple(rs_) for v, rs_ in by_value.items()},
                       plus, pre, suf, subs, partial_t))
    return tuple(free), groups


def _minimal(g) -> tuple:
    """The gate's (prefixes, suffixes, substrings) without the values another one already
    covers (a prefix of a longer prefix, a suffix containing a substring…): the same test,
    with less to test on every event."""
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
    return pre, suf, subs


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
    over = _compile_over_time(it, v, events, comp, ctx, problems)
    if over is False:
        return None
    top = comp.fn
    window, comp = over if over is not None else (None, comp)
    render = _compile_output(it, v["output"], problems, windowed=window is not None)
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
    # a sequence is gated by its steps' conditions (comp), then tested by its own
    # condition only: the window tests the steps, those the event's kind can take
    cond = top if isinstance(window, W.Sequence) else comp.fn
    match = (lambda item: cond(item) and not exc_fn(item)) if exc_names else cond
    return Rule(name, v["desc"].strip(), tuple(events), v["condition"], v["output"], sev,
                tactic, technique, action, enabled, tuple(tags),
                f"{it.where.file}:{it.where.line}", match, render, tuple(exc_names),
                comp.fields, comp.gate, window=window)


_MATCH_FIELDS = frozenset(f.name for f in registry.REGISTRY.values() if f.use == registry.MATCH)
_THRESHOLD_KEYS = {"count", "distinct"}
_STEP_KEYS = {"condition", "key"}


def _unknown_field(name: str) -> str:
    why = F.NOT_FOR_RULES.get(name)
    return f"{name} is not for rules: {why}" if why else f"unknown field {name!r}"


def _node_where(it: Item, node) -> Where:
    return Where(it.where.file, node.start_mark.line + 1, node.start_mark.column + 1)


def _compile_over_time(it: Item, v: dict, events: list, comp, ctx, problems):
    """A threshold or sequence rule's window: (window.Threshold | window.Sequence, the
    compiled condition the evaluator gates and tests the rule by), None for a rule of one
    event, False after reporting an error."""
    keys = [k for k in ("within", "group_by", "threshold", "sequence") if k in v]
    if not keys:
        return None
    name = it.name

    def bad(key, msg, where=None):
        problems.append((where or it.value_at(key)).problem(f"rule {name!r}: {msg}"))
        return False
    if "threshold" in v and "sequence" in v:
        return bad("sequence", "a rule has threshold: or sequence:, not both")
    if "threshold" not in v and "sequence" not in v:
        return bad(keys[0], f"{keys[0]}: is for rules over time: add threshold: or "
                            "sequence: (docs/rules.md, Rules over time)")
    if "within" not in v:
        return bad(keys[0], "threshold: and sequence: need within: (the window: 500ms, 2s, "
                            "5m, 1h at most)")
    try:
        within = W.parse_duration(v["within"])
    except ValueError as e:
        return bad("within", str(e))
    spec = str(v["within"]).strip()
    gb = v.get("group_by", ["container.id"])
    gb = [gb] if isinstance(gb, str) else gb
    if not isinstance(gb, list) or not 1 <= len(gb) <= 4 or \
            not all(isinstance(x, str) for x in gb):
        return bad("group_by", "group_by is a list of 1 to 4 fields, e.g. [container.id] "
                               "(the default) or [container.id, proc.exec_id]")
    getters = []
    for fname in gb:
        fld = F.lookup(fname)
        if fld is None:
            return bad("group_by", f"group_by: {_unknown_field(fname)}")
        getters.append(fld.get)
    if "threshold" in v:
        t = v["threshold"]
        if isinstance(t, int) and not isinstance(t, bool):
            t = {"count": t}
        if not isinstance(t, dict) or "count" not in t or set(t) - _THRESHOLD_KEYS:
            return bad("threshold", "threshold is a number of events (threshold: 20) or "
                                    "{count: N, distinct: FIELD} (N distinct values)")
        count = t["count"]
        if isinstance(count, bool) or not isinstance(count, int) or \
                not 2 <= count <= W.MAX_COUNT:
            return bad("threshold", f"threshold count must be a whole number from 2 to "
                                    f"{W.MAX_COUNT}, not {count!r}")
        dname, dget = t.get("distinct"), None
        if dname is not None:
            fld = F.lookup(str(dname))
            if fld is None:
                return bad("threshold", f"distinct: {_unknown_field(str(dname))}")
            dget = fld.get
        return W.Threshold(within, tuple(getters), count, dget, tuple(gb),
                           str(dname or ""), spec), comp
    seq, node = v["sequence"], it.nodes.get("sequence")
    if not isinstance(seq, list) or not 2 <= len(seq) <= W.MAX_STEPS:
        return bad("sequence", f"sequence is a list of 2 to {W.MAX_STEPS} steps, each "
                               "{condition: …, key: FIELD (optional)}")
    steps, texts, kinds_of = [], [], []
    for i, step in enumerate(seq):
        snode = node.value[i] if node is not None and i < len(node.value) else None
        where = _node_where(it, snode) if snode is not None else it.value_at("sequence")
        if not isinstance(step, dict) or set(step) - _STEP_KEYS or \
                not isinstance(step.get("condition"), str) or not step["condition"].strip():
            return bad("sequence", f"step {i + 1} is {{condition: …, key: FIELD}} (key "
                                   "optional), with a non-empty condition", where)
        try:
            sc = C.compile_condition(step["condition"], ctx)
        except C.ConditionError as e:
            return bad("sequence", f"step {i + 1}: {e}", where)
        kget = None
        if step.get("key") is not None:
            fld = F.lookup(str(step["key"]))
            if fld is None:
                return bad("sequence", f"step {i + 1}: key: {_unknown_field(str(step['key']))}",
                           where)
            kget = fld.get
        steps.append(W.Step(sc.fn, kget, str(step.get("key") or "")))
        texts.append(step["condition"])
        kinds_of.append(frozenset(k for k in events if sc.can(k)))
    if len({s.key is None for s in steps}) > 1:
        return bad("sequence", "give key: on every step or on none (the steps are joined on "
                               "its value)")
    joined = " or ".join(f"({t})" for t in texts)
    try:
        combined = C.compile_condition(f"({v['condition']}) and ({joined})", ctx)
    except C.ConditionError as e:
        return bad("sequence", str(e))
    return W.Sequence(within, tuple(getters), tuple(steps), tuple(gb), spec,
                      kinds_of=tuple(kinds_of)), combined


def _compile_output(it: Item, template: str, problems, windowed: bool = False) -> object:
    getters = []
    ok = True
    for m in _OUT_FIELD.finditer(template):
        fname = m.group(1) or m.group(2)
        if fname in _MATCH_FIELDS:
            if windowed:
                getters.append((m.group(0), None, fname))
                continue
            problems.append(it.value_at("output").problem(
                f"rule {it.name!r}: %{fname} is set by threshold and sequence rules only"))
            ok = False
            continue
        fld = F.lookup(fname)
        if fld is None:
            problems.append(it.value_at("output").problem(
                f"rule {it.name!r}: output refers to unknown field %{fname}"))
            ok = False
            continue
        getters.append((m.group(0), fld.get, ""))
    if not ok:
        return None
    # longest first, so %proc.exe_name is replaced before %proc.exe
    getters.sort(key=lambda g: -len(g[0]))

    def render(item, extra=None):
        s = template
        for token, get, mname in getters:
            if get is not None:
                val = get(item)
            elif mname == "match.steps":
                val = W.describe_steps((extra or {}).get(mname))
            else:
                val = (extra or {}).get(mname)
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
