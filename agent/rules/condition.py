"""Conditions: parsed once, compiled into Python closures over enriched events.

    condition := or-expression of and-expressions of [not] factors
    factor    := ( condition ) | MACRO | FIELD OP VALUE | FIELD in ( VALUE|LIST, … )
               | FIELD in LIST | FIELD exists
    OP        := = != < <= > >= contains icontains startswith endswith glob regex

A field that is missing on an event (a host process has no container.id) makes every
comparison on it false; `not` inverts the result as usual. On a list field (proc.args,
file.flags, proc.ancestors.exe…) a comparison holds when any element satisfies it, and
`contains` means "has this element". On k8s.labels, `contains KEY` asks for a label key and
`k8s.labels.KEY` reads one label.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from . import fields as F

KEYWORDS = {"and", "or", "not", "in", "exists"}
WORD_OPS = {"contains", "icontains", "startswith", "endswith", "glob", "regex"}
SYM_OPS = {"=", "!=", "<", "<=", ">", ">="}
ORDER_OPS = {"<", "<=", ">", ">="}
_TOKEN = re.compile(r"""\s*(?:(?P<op><=|>=|!=|=|<|>)|(?P<p>[(),])|"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>(?:[^'\\]|\\.)*)'|(?P<w>[^\s(),=<>!"']+)|(?P<bad>\S))""")


class ConditionError(Exception):
    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.offset = offset


@dataclass(slots=True)
class Tok:
    kind: str       # op, p, str, word, end
    text: str
    pos: int


def tokenize(text: str) -> list[Tok]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            break
        start = m.start(m.lastgroup) if m.lastgroup else pos
        if m.group("bad") is not None:
            if m.group("bad") in "\"'":
                raise ConditionError("unterminated quoted string", start)
            raise ConditionError(f"unexpected character {m.group('bad')!r}", start)
        if m.group("op"):
            out.append(Tok("op", m.group("op"), start))
        elif m.group("p"):
            out.append(Tok("p", m.group("p"), start))
        elif m.group("dq") is not None or m.group("sq") is not None:
            raw = m.group("dq") if m.group("dq") is not None else m.group("sq")
            out.append(Tok("str", re.sub(r"\\(.)", r"\1", raw), start - 1))
        else:
            out.append(Tok("word", m.group("w"), start))
        pos = m.end()
    out.append(Tok("end", "", len(text)))
    return out


@dataclass
class Context:
    """What names mean while compiling: lists (name -> values) and macros (name -> compiled
    closure, compiled on first use)."""
    lists: dict[str, list]
    macro_src: dict[str, str]
    compiled_macros: dict = field(default_factory=dict)
    used_lists: set = field(default_factory=set)
    used_macros: set = field(default_factory=set)
    stack: list = field(default_factory=list)     # macros being compiled (recursion check)
    broken: set = field(default_factory=set)      # macros whose own condition has errors


@dataclass(frozen=True)
class Gate:
    """A necessary condition on one field, found at compile time: if the condition holds,
    the field's value is one of `exact`, starts with one of `prefixes` or ends with one of
    `suffixes`, or contains one of `substrings`. The ruleset tests the gates of many rules
    on the same field at once, so an event that none of them can match skips them all
    (most events match no rule). Conditions carry gates as functions of the event kind:
    `(event.kind = exec and …) or (file.path startswith /etc/x)` has a gate for open
    events (the first branch cannot hold there) and none for exec events."""
    field: str
    get: object
    exact: frozenset = frozenset()
    prefixes: tuple = ()
    suffixes: tuple = ()
    substrings: tuple = ()

    def union(self, other: "Gate") -> "Gate":
        return Gate(self.field, self.get, self.exact | other.exact,
                    self.prefixes + other.prefixes, self.suffixes + other.suffixes,
                    self.substrings + other.substrings)


# the field a gate is best placed on when a conjunction offers several: the ones most
# rules of a kind test, so that their gates merge into one test
GATE_PREFERENCE = ("file.path", "net.dport", "proc.name", "proc.exe")


def _better_gate(gates):
    gates = [g for g in gates if g is not None]
    if not gates:
        return None
    return min(gates, key=lambda g: GATE_PREFERENCE.index(g.field)
               if g.field in GATE_PREFERENCE else len(GATE_PREFERENCE))


def _gate_of(fld: F.Field, op: str, values):
    """The gate (a function of the kind) of `fld op values` on a scalar text or number
    field, or None."""
    g = None
    if fld.type == F.STR:
        if op in ("=", "in"):
            g = Gate(fld.name, fld.get, exact=frozenset(values))
        elif op == "startswith":
            g = Gate(fld.name, fld.get, prefixes=tuple(values))
        elif op == "endswith":
            g = Gate(fld.name, fld.get, suffixes=tuple(values))
        elif op == "contains":
            g = Gate(fld.name, fld.get, substrings=tuple(values))
        elif op == "glob":                 # the literal text before the first wildcard
            prefixes = tuple(re.split(r"[*?\[]", v, maxsplit=1)[0] for v in values)
            if all(prefixes):
                g = Gate(fld.name, fld.get, prefixes=prefixes)
    elif fld.type in (F.INT, F.BOOL) and op in ("=", "in"):
        g = Gate(fld.name, fld.get, exact=frozenset(values))
    return None if g is None else (lambda kind: g)


def _and_gate(gates):
    gates = [g for g in gates if g is not None]
    if not gates:
        return None
    return lambda kind: _better_gate(g(kind) for g in gates)


def _or_gate(cans, gates):
    """Branches that cannot hold for the kind do not count; every other branch needs a
    gate, on one field."""
    pairs = tuple(zip(cans, gates))

    def gate_for(kind):
        live = [g for c, g in pairs if c(kind)]
        if not live or any(g is None for g in live):
            return None
        gs = [g(kind) for g in live]
        if any(g is None for g in gs) or len({g.field for g in gs}) > 1:
            return None
        out = gs[0]
        for g in gs[1:]:
            out = out.union(g)
        return out
    return gate_for


@dataclass
class Compiled:
    fn: object                    # item -> bool
    fields: set                   # field names used (macros included)
    can: object = None            # kind -> bool: can the condition hold for that kind?
    gate: object = None           # kind -> Gate or None: a necessary condition (or None)


def _always(kind):
    return True


def _memo(fn):
    """A macro is evaluated once per event, however many rules use it: the result for the
    last item is kept (rules are evaluated one event at a time, in one thread)."""
    last = [None, False]

    def macro(item):
        if last[0] is item:
            return last[1]
        r = fn(item)
        last[0], last[1] = item, r
        return r
    return macro


def _all(fns):
    """a(i) and b(i) and … as nested closures (faster than all() over a generator)."""
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        a, b = fns
        return lambda item: a(item) and b(item)
    if len(fns) == 3:
        a, b, c = fns
        return lambda item: a(item) and b(item) and c(item)
    head, rest = fns[0], _all(fns[1:])
    return lambda item: head(item) and rest(item)


def _any(fns):
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        a, b = fns
        return lambda item: a(item) or b(item)
    if len(fns) == 3:
        a, b, c = fns
        return lambda item: a(item) or b(item) or c(item)
    head, rest = fns[0], _any(fns[1:])
    return lambda item: head(item) or rest(item)


class _Parser:
    def __init__(self, text: str, ctx: Context):
        self.toks = tokenize(text)
        self.i = 0
        self.ctx = ctx
        self.fields: set[str] = set()

    def peek(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, text: str) -> Tok:
        t = self.next()
        if t.text != text or t.kind not in ("p", "op", "word"):
            raise ConditionError(f"expected {text!r}, found {t.text or 'end of condition'!r}",
                                 t.pos)
        return t

    # condition := and ('or' and)*
    # Every method returns (fn, can, gate): fn(item) -> bool, can(kind) -> could fn be true
    # for an event of that kind (a comparison on a field the kind never has cannot), gate
    # a Gate that fn's truth implies, or None.
    def parse(self):
        fn = self.or_expr()
        t = self.peek()
        if t.kind != "end":
            raise ConditionError(f"unexpected {t.text!r} (expected and, or, or the end)",
                                 t.pos)
        return fn

    def or_expr(self):
        parts = [self.and_expr()]
        while self.peek().kind == "word" and self.peek().text == "or":
            self.next()
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        cans = tuple(p[1] for p in parts)
        return (_any([p[0] for p in parts]), (lambda k: any(c(k) for c in cans)),
                _or_gate(cans, [p[2] for p in parts]))

    def and_expr(self):
        parts = [self.not_expr()]
        while self.peek().kind == "word" and self.peek().text == "and":
            self.next()
            parts.append(self.not_expr())
        if len(parts) == 1:
            return parts[0]
        cans = tuple(p[1] for p in parts)
        return (_all([p[0] for p in parts]), (lambda k: all(c(k) for c in cans)),
                _and_gate(p[2] for p in parts))

    def not_expr(self):
        t = self.peek()
        if t.kind == "word" and t.text == "not":
            self.next()
            inner = self.not_expr()[0]
            return (lambda item: not inner(item)), _always, None
        return self.factor()

    def factor(self):
        t = self.next()
        if t.kind == "p" and t.text == "(":
            fn = self.or_expr()
            close = self.next()
            if close.text != ")":
                raise ConditionError("missing ')'", close.pos)
            return fn
        if t.kind == "end":
            raise ConditionError("condition ends where a comparison was expected", t.pos)
        if t.kind != "word" or t.text in KEYWORDS:
            raise ConditionError(f"expected a field or macro, found {t.text!r}", t.pos)
        name = t.text
        if name in self.ctx.macro_src:
            return self.macro(name, t.pos)
        fld = F.lookup(name)
        if fld is None:
            nxt = self.peek()
            looks_like_field = "." in name or nxt.kind == "op" or (
                nxt.kind == "word" and (nxt.text in WORD_OPS or nxt.text in ("in", "exists")))
            if name in F.NOT_FOR_RULES:
                raise ConditionError(f"{name} is not for rules: {F.NOT_FOR_RULES[name]}",
                                     t.pos)
            if looks_like_field:
                raise ConditionError(f"unknown field {name!r}", t.pos)
            raise ConditionError(f"undefined macro {name!r}", t.pos)
        self.fields.add(name)
        kinds = fld.kinds
        fn, gate = self.predicate(fld, t)
        g0 = gate(None) if name == "event.kind" and gate is not None else None
        if g0 is not None and not (g0.prefixes or g0.suffixes or g0.substrings):
            only = g0.exact                     # event.kind = exec: only exec events
            # no gate: rules are planned per kind, where this test always holds
            return fn, (lambda k: k in kinds and k in only), None
        return fn, (lambda k: k in kinds), gate

    def macro(self, name: str, pos: int):
        ctx = self.ctx
        ctx.used_macros.add(name)
        if name in ctx.stack:
            raise ConditionError(f"macro {name!r} refers to itself "
                                 f"({' -> '.join(ctx.stack + [name])})", pos)
        if name in ctx.broken:
            raise ConditionError(f"macro {name!r} has errors (reported where it is defined)",
                                 pos)
        if name not in ctx.compiled_macros:
            ctx.stack.append(name)
            try:
                sub = _Parser(ctx.macro_src[name], ctx)
                fn = sub.parse()
            except ConditionError as e:
                if not ctx.stack[:-1]:
                    ctx.broken.add(name)
                raise ConditionError(f"in macro {name!r}: {e}", pos) from None
            finally:
                ctx.stack.pop()
            ctx.compiled_macros[name] = Compiled(_memo(fn[0]), sub.fields, fn[1], fn[2])
        m = ctx.compiled_macros[name]
        self.fields |= m.fields
        return m.fn, m.can, m.gate

    # -- predicates --------------------------------------------------------------------
    def predicate(self, fld: F.Field, ftok: Tok):
        """(fn, gate) for `fld OP …`."""
        nxt = self.peek()
        if fld.type == F.BOOL and not (nxt.kind == "op" or (nxt.kind == "word" and (
                nxt.text in WORD_OPS or nxt.text in ("in", "exists")))):
            get = fld.get
            # a bare boolean field: is it true? (its gate: the value True, like `= true`)
            return (lambda item: bool(get(item))), _gate_of(fld, "=", (True,))
        t = self.next()
        if t.kind == "word" and t.text == "exists":
            get = fld.get
            if fld.type in F.LIST_TYPES or fld.type == F.MAP:
                return (lambda item: bool(get(item))), None
            return (lambda item: get(item) is not None), None
        if t.kind == "word" and t.text == "in":
            values = self.value_list(fld)
            return _in(fld, frozenset(values)), _gate_of(fld, "in", values)
        if t.kind == "word" and t.text in WORD_OPS - {"regex"} and (
                (self.peek().kind == "p" and self.peek().text == "(") or
                (self.peek().kind == "word" and self.peek().text in self.ctx.lists)):
            # startswith (a, b, list) …: any of the values
            values = self.value_list(F.Field(fld.name, F.STR, fld.kinds, fld.get))
            if t.text in ("startswith", "endswith") and fld.type == F.STR:
                values = tuple(str(v) for v in values)
                return (_prefix_suffix(fld.get, t.text, values),
                        _gate_of(fld, t.text, values))
            return (_any([_compare(fld, t.text, Tok("str", str(v), t.pos), self)
                          for v in values]),
                    _gate_of(fld, t.text, [str(v) for v in values]))
        if t.kind == "op" or (t.kind == "word" and t.text in WORD_OPS):
            op = t.text
            v = self.next()
            if v.kind not in ("word", "str"):
                raise ConditionError(f"{op} needs a value after it", v.pos)
            fn = _compare(fld, op, v, self)
            gate = _gate_of(fld, op, (_convert(fld, v.text, v.pos),)) \
                if fld.type in (F.STR, F.INT, F.BOOL) else None
            return fn, gate
        raise ConditionError(f"unknown operator {t.text or 'end of condition'!r} after "
                             f"{fld.name} (operators: =, !=, <, <=, >, >=, in, contains, "
                             "icontains, startswith, endswith, glob, regex, exists)", t.pos)

    def value_list(self, fld: F.Field) -> list:
        t = self.peek()
        if t.kind == "word" and t.text in self.ctx.lists:
            self.next()
            self.ctx.used_lists.add(t.text)
            return [_convert(fld, x, t.pos) for x in self.ctx.lists[t.text]]
        if t.kind == "word" and t.text not in KEYWORDS:
            raise ConditionError(f"undefined list {t.text!r}", t.pos)
        self.expect("(")
        out = []
        if self.peek().text == ")" and self.peek().kind == "p":
            self.next()
            return out
        while True:
            v = self.next()
            if v.kind == "word" and v.text in self.ctx.lists:
                self.ctx.used_lists.add(v.text)
                out += [_convert(fld, x, v.pos) for x in self.ctx.lists[v.text]]
            elif v.kind in ("word", "str"):
                out.append(_convert(fld, v.text, v.pos))
            else:
                raise ConditionError(f"expected a value in the list, found "
                                     f"{v.text or 'end of condition'!r}", v.pos)
            sep = self.next()
            if sep.text == ")":
                return out
            if sep.text != ",":
                raise ConditionError("expected ',' or ')' in the list", sep.pos)


def _convert(fld: F.Field, value, pos: int):
    """A literal as the field's type, or a ConditionError saying why not."""
    t = fld.type
    if t in (F.INT, F.INTS):
        if isinstance(value, bool):
            raise ConditionError(f"{fld.name} is a number, not {value!r}", pos)
        try:
            return int(str(value), 0)
        except ValueError:
            raise ConditionError(f"{fld.name} is a number, not {value!r}", pos) from None
    if t == F.BOOL:
        s = str(value).lower()
        if s not in ("true", "false"):
            raise ConditionError(f"{fld.name} is true or false, not {value!r}", pos)
        return s == "true"
    return str(value)


def _in(fld: F.Field, values: frozenset):
    get = fld.get
    if fld.type in F.LIST_TYPES:
        return lambda item: any(x in values for x in (get(item) or ()))
    if fld.type == F.MAP:
        raise ConditionError(f"{fld.name} is a map: use 'contains KEY' or {fld.name}.KEY")

    def pred(item):
        v = get(item)
        return v is not None and v in values
    return pred


def _prefix_suffix(get, op, values: tuple):
    if op == "startswith":
        def pred(item):
            v = get(item)
            return v is not None and v.startswith(values)
    else:
        def pred(item):
            v = get(item)
            return v is not None and v.endswith(values)
    return pred


def _scalar(get, op, val):
    """Closures for the common comparisons on a scalar field, written out (one call per
    test instead of two)."""
    if op == "=":
        return lambda item: get(item) == val
    if op in ("startswith", "endswith"):
        return _prefix_suffix(get, op, val)
    if op == "contains":
        def pred(item):
            v = get(item)
            return v is not None and val in v
        return pred
    if op == "!=":
        def pred(item):
            v = get(item)
            return v is not None and v != val
        return pred
    return None


def _compare(fld: F.Field, op: str, vtok: Tok, parser: _Parser):
    get, t = fld.get, fld.type
    if t == F.MAP:
        if op != "contains":
            raise ConditionError(f"{fld.name} is a map: only 'contains KEY', 'exists' and "
                                 f"{fld.name}.KEY work on it", vtok.pos)
        key = vtok.text
        return lambda item: key in (get(item) or {})
    if op in ORDER_OPS and t not in (F.INT, F.INTS):
        raise ConditionError(f"{op} compares numbers; {fld.name} is a {t}", vtok.pos)
    if op in WORD_OPS and t in (F.INT, F.INTS, F.BOOL):
        raise ConditionError(f"{op} works on text; {fld.name} is a {t}", vtok.pos)
    if t in (F.STR, F.INT, F.BOOL) and op in ("=", "!=", "startswith", "endswith",
                                              "contains"):
        return _scalar(get, op, _convert(fld, vtok.text, vtok.pos))
    if op == "glob":
        rx = re.compile(fnmatch.translate(vtok.text))
        test = lambda v: rx.match(v) is not None  # noqa: E731
    elif op == "regex":
        try:
            rx = re.compile(vtok.text)
        except re.error as e:
            raise ConditionError(f"bad regex {vtok.text!r}: {e}", vtok.pos) from None
        test = lambda v: rx.search(v) is not None  # noqa: E731
    else:
        val = _convert(fld, vtok.text, vtok.pos)
        if op in ("=", "contains") and t in F.LIST_TYPES:
            test = lambda v: v == val  # noqa: E731  (list: has this element)
        elif op == "=":
            test = lambda v: v == val  # noqa: E731
        elif op == "!=":
            test = lambda v: v != val  # noqa: E731
        elif op == "<":
            test = lambda v: v < val  # noqa: E731
        elif op == "<=":
            test = lambda v: v <= val  # noqa: E731
        elif op == ">":
            test = lambda v: v > val  # noqa: E731
        elif op == ">=":
            test = lambda v: v >= val  # noqa: E731
        elif op == "contains":
            test = lambda v: val in v  # noqa: E731
        elif op == "icontains":
            low = val.lower()
            test = lambda v: low in v.lower() if t not in F.LIST_TYPES else v.lower() == low  # noqa: E731,E501
        elif op == "startswith":
            test = lambda v: v.startswith(val)  # noqa: E731
        else:  # endswith
            test = lambda v: v.endswith(val)  # noqa: E731
    if t in F.LIST_TYPES:
        if op == "!=":
            return lambda item: (lambda vs: vs is not None and all(test(x) for x in vs))(get(item))
        return lambda item: any(test(x) for x in (get(item) or ()))

    def pred(item):
        v = get(item)
        return v is not None and test(v)
    return pred


def compile_condition(text: str, ctx: Context) -> Compiled:
    p = _Parser(text, ctx)
    fn, can, gate = p.parse()
    return Compiled(fn, p.fields, can, gate)
