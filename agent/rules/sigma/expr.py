"""A Sigma rule's detection as an expression over Sigma field names, then, per variant of
its log source (fieldmap.py), a Mamori condition.

Sigma's parser (pySigma) gives the detections, their items with the modifiers already
applied to the values (contains puts wildcards around a string, windash and base64offset
give an expansion, cidr a network, re a regular expression), and the condition's parse
tree before identifiers are resolved. Here each value becomes the Mamori operator that
means the same: a plain value `=` (several: `in`), `*x` endswith, `x*` startswith, `*x*`
contains, any other wildcard glob, a regular expression regex, an IPv4 range the prefixes
of its addresses' text. What has no Mamori meaning raises Untranslatable with a category
(for the report's breakdown) and what exactly it was.

Matching is case-sensitive, where Sigma's default is not: Linux file names, paths and
command-line options are case-sensitive (`base64 -d` is not `base64 -D`), SigmaHQ's Linux
rules write them in their real case, and a case-sensitive test on proc.exe or file.path is
what the rule engine gates on (docs/rules.md "Writing rules that stay fast").
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sigma import conditions as SC
from sigma import modifiers as SM
from sigma import types as ST
from sigma.exceptions import SigmaError

from .. import fields as F
from .fieldmap import Const, UNMAPPED_WHY, Variant


class Untranslatable(Exception):
    def __init__(self, category: str, detail: str):
        super().__init__(f"{category}: {detail}")
        self.category, self.detail = category, detail


# -- the expression ----------------------------------------------------------------------
@dataclass(frozen=True)
class Leaf:
    field: str          # a Sigma field; after binding, a Mamori field
    op: str             # = startswith endswith contains glob regex exists < <= > >= !=
    values: tuple       # any of them (exists: ())


@dataclass(frozen=True)
class And:
    args: tuple


@dataclass(frozen=True)
class Or:
    args: tuple


@dataclass(frozen=True)
class Not:
    arg: object


TRUE, FALSE = True, False
_UNSUPPORTED_MODIFIERS = {
    SM.SigmaWideModifier: "UTF-16 encodes Windows event data; Linux arguments are bytes",
    SM.SigmaUTF16Modifier: "UTF-16 encodes Windows event data; Linux arguments are bytes",
    SM.SigmaUTF16LEModifier if hasattr(SM, "SigmaUTF16LEModifier") else None:
        "UTF-16 encodes Windows event data; Linux arguments are bytes",
    SM.SigmaUTF16BEModifier: "UTF-16 encodes Windows event data; Linux arguments are bytes",
    SM.SigmaExpandModifier: "placeholders are filled in by a pipeline Mamori does not have",
    SM.SigmaFieldReferenceModifier: "Mamori compares a field with values, not with another "
                                    "field",
}
_UNSUPPORTED_MODIFIERS.pop(None, None)
_COMPARE = {ST.CompareOperators.LT: "<", ST.CompareOperators.LTE: "<=",
            ST.CompareOperators.GT: ">", ST.CompareOperators.GTE: ">="}
if hasattr(ST.CompareOperators, "NEQ"):
    _COMPARE[ST.CompareOperators.NEQ] = "!="


def _modifier_name(m) -> str:
    return SM.reverse_modifier_mapping.get(m.__name__, m.__name__)


def _glob_escape(s: str) -> str:
    """A literal for fnmatch (the `glob` operator): `*`, `?`, `[` as one-character sets."""
    return re.sub(r"([*?\[])", r"[\1]", s)


def _string_leaf(fld: str, s: ST.SigmaString, notes: list) -> Leaf:
    parts = list(s.s)
    if any(isinstance(p, ST.Placeholder) for p in parts):
        raise Untranslatable("unsupported modifier",
                             f"{fld}: a placeholder (%name%) needs a pipeline to fill it")
    star, qmark = ST.SpecialChars.WILDCARD_MULTI, ST.SpecialChars.WILDCARD_SINGLE
    if not parts:
        return Leaf(fld, "=", ("",))
    if all(p == star for p in parts):
        return Leaf(fld, "exists", ())
    inner = parts[1:-1] if len(parts) > 2 else []
    plain = [p for p in parts if isinstance(p, str)]
    if len(plain) == 1 and qmark not in parts and star not in inner:
        text = plain[0]
        head, tail = parts[0] == star, parts[-1] == star
        op = {(False, False): "=", (True, False): "endswith", (False, True): "startswith",
              (True, True): "contains"}[(head, tail)]
        if len([p for p in parts if p == star]) == head + tail:
            return Leaf(fld, op, (text,))
    pattern = "".join("*" if p == star else "?" if p == qmark else _glob_escape(p)
                      for p in parts)
    return Leaf(fld, "glob", (pattern,))


def _regex_leaf(fld: str, rx: ST.SigmaRegularExpression) -> Leaf:
    text = rx.regexp.to_plain() if isinstance(rx.regexp, ST.SigmaString) else str(rx.regexp)
    letters = {"IGNORECASE": "i", "MULTILINE": "m", "DOTALL": "s"}
    flags = "".join(sorted(letters[f.name] for f in (rx.flags or ()) if f.name in letters))
    if flags:
        text = f"(?{flags}){text}"
    try:
        re.compile(text)
    except re.error as e:
        raise Untranslatable("regular expression",
                             f"{fld}: {text!r} is not one Python's re accepts ({e})") from None
    return Leaf(fld, "regex", (text,))


def _cidr_leaves(fld: str, c: ST.SigmaCIDRExpression, notes: list) -> list:
    """IPv4: exactly, as the prefixes of the addresses' text (10.0.0.0/8: startswith 10.;
    172.16.0.0/12: startswith 172.16. … 172.31.). IPv6: pySigma's wildcard patterns for
    the text form (RFC 5952), which can also match a few addresses outside the range."""
    net = c.network
    if net.version == 6 and net.prefixlen not in (0, 128):
        notes.append(f"{fld}|cidr {c.cidr}: IPv6 range matched by wildcard patterns on the "
                     "address text, which can also match a few addresses outside it")
    return [_string_leaf(fld, ST.SigmaString(p), notes) for p in c.expand("*")]


def _value_leaves(fld: str, v, notes: list) -> list:
    """One Sigma value as leaves (any of them)."""
    if isinstance(v, ST.SigmaString):          # SigmaCasedString too: already case-sensitive
        return [_string_leaf(fld, v, notes)]
    if isinstance(v, ST.SigmaExpansion):       # windash, base64offset
        return [x for sub in v.values for x in _value_leaves(fld, sub, notes)]
    if isinstance(v, ST.SigmaRegularExpression):
        return [_regex_leaf(fld, v)]
    if isinstance(v, ST.SigmaCIDRExpression):
        return _cidr_leaves(fld, v, notes)
    if isinstance(v, ST.SigmaBool):
        return [Leaf(fld, "=", ("true" if v.boolean else "false",))]
    if isinstance(v, ST.SigmaNumber):
        if not isinstance(v.number, int):
            raise Untranslatable("value", f"{fld}: {v.number} (Mamori numbers are integers)")
        return [Leaf(fld, "=", (v.number,))]
    if isinstance(v, ST.SigmaCompareExpression):
        op = _COMPARE.get(v.op)
        if op is None or not isinstance(v.number.number, int):
            raise Untranslatable("value", f"{fld}: comparison {v.op.name} {v.number}")
        return [Leaf(fld, op, (v.number.number,))]
    if isinstance(v, ST.SigmaNull):
        return [Not(Leaf(fld, "exists", ()))]
    if isinstance(v, ST.SigmaExists):
        return [Leaf(fld, "exists", ()) if v.exists else Not(Leaf(fld, "exists", ()))]
    raise Untranslatable("value", f"{fld}: a {type(v).__name__} value")


def _group(leaves: list) -> list:
    """Leaves of one field and operator merged into one (`in`, `endswith (a, b)`)."""
    out, index = [], {}
    for lf in leaves:
        if isinstance(lf, Leaf) and lf.op in ("=", "startswith", "endswith", "contains",
                                              "glob"):
            key = (lf.field, lf.op)
            if key in index:
                i = index[key]
                out[i] = Leaf(lf.field, lf.op, out[i].values + tuple(
                    x for x in lf.values if x not in out[i].values))
                continue
            index[key] = len(out)
        out.append(lf)
    return out


def _item(item, notes: list):
    if item.field is None:
        values = ", ".join(repr(str(v)) for v in item.value[:3])
        raise Untranslatable("keywords",
                             f"values without a field ({values}…) match a log line's text; "
                             "Mamori events have fields")
    for m in item.modifiers:
        why = _UNSUPPORTED_MODIFIERS.get(m)
        if why:
            raise Untranslatable("unsupported modifier",
                                 f"{item.field}|{_modifier_name(m)}: {why}")
    if not item.value:
        return Not(Leaf(item.field, "exists", ()))
    leaves = [x for v in item.value for x in _value_leaves(item.field, v, notes)]
    if item.value_linking is SC.ConditionAND:          # |all
        node = And(tuple(leaves))
    else:
        node = Or(tuple(_group(leaves)))
    if getattr(item, "negated", False):
        node = Not(node)
    return node


def _detection(det, notes: list):
    from sigma.rule.detection import SigmaDetectionItem
    args = tuple(_item(i, notes) if isinstance(i, SigmaDetectionItem) else _detection(i, notes)
                 for i in det.detection_items)
    return And(args) if det.item_linking is SC.ConditionAND else Or(args)


def _condition(node, detections, notes: list):
    if isinstance(node, SC.ConditionIdentifier):
        d = detections.detections.get(node.identifier)
        if d is None:
            raise Untranslatable("invalid Sigma",
                                 f"the condition names {node.identifier!r}, which is not a "
                                 "detection")
        return _detection(d, notes)
    if isinstance(node, SC.ConditionSelector):
        ids = node.resolve_referenced_detections(detections)
        if not ids:
            raise Untranslatable("invalid Sigma", f"'{node.args[0]} of {node.pattern}' "
                                 "matches no detection")
        parts = tuple(_condition(i, detections, notes) for i in ids)
        return And(parts) if node.cond_class is SC.ConditionAND else Or(parts)
    if isinstance(node, SC.ConditionNOT):
        return Not(_condition(node.args[0], detections, notes))
    if isinstance(node, (SC.ConditionAND, SC.ConditionOR)):
        parts = tuple(_condition(a, detections, notes) for a in node.args)
        return And(parts) if isinstance(node, SC.ConditionAND) else Or(parts)
    raise Untranslatable("invalid Sigma", f"a {type(node).__name__} in the condition")


def detection_expr(rule, notes: list):
    """The rule's detection as an expression over Sigma fields."""
    dets = rule.detection
    for cond in dets.parsed_condition:
        if "|" in cond.condition:
            raise Untranslatable("aggregation/timeframe",
                                 f"condition {cond.condition.strip()!r}: an aggregation "
                                 "(| count() …) over events; Mamori rules match one event")
    if "timeframe" in dets.detections or getattr(dets, "timeframe", None):
        raise Untranslatable("aggregation/timeframe",
                             "timeframe: Mamori rules match one event at a time")
    exprs = []
    for cond in dets.parsed_condition:
        try:
            tree = cond.parse(postprocess=False)
        except SigmaError as e:
            raise Untranslatable("invalid Sigma", f"condition: {e}") from None
        exprs.append(_condition(tree, dets, notes))
    return exprs[0] if len(exprs) == 1 else Or(tuple(exprs))


# -- binding to a variant ----------------------------------------------------------------
def _typed(target_field: str, sigma_field: str, op: str, values: tuple):
    fld = F.lookup(target_field)
    if fld.type in (F.INT, F.INTS):
        if op in ("startswith", "endswith", "contains", "glob", "regex"):
            raise Untranslatable("value", f"{sigma_field} is a number in Mamori "
                                 f"({target_field}): {op} does not apply")
        out = []
        for v in values:
            try:
                out.append(int(str(v), 10) if not isinstance(v, int) else v)
            except ValueError:
                raise Untranslatable("value", f"{sigma_field} is a number in Mamori "
                                     f"({target_field}), not {v!r}") from None
        return tuple(out)
    if op in ("<", "<=", ">", ">="):
        raise Untranslatable("value", f"{sigma_field}|{op}: {target_field} is text")
    return tuple(str(v) for v in values)


def bind(expr, variant: Variant, category: str, notes: list):
    """The expression with Mamori fields for one variant; constants folded to TRUE/FALSE."""
    if isinstance(expr, bool):
        return expr
    if isinstance(expr, Leaf):
        tgt = variant.fields.get(expr.field)
        if tgt is None:
            why = UNMAPPED_WHY.get(expr.field, "no Mamori field for it")
            raise Untranslatable("unmapped field", f"{expr.field} ({category}): {why}")
        if isinstance(tgt, Const):
            if expr.op == "exists":
                return TRUE
            if expr.op != "=":
                raise Untranslatable("value", f"{expr.field}|{expr.op}")
            return any(str(v).lower() == tgt.value for v in expr.values)
        op, values = expr.op, expr.values
        if tgt.values is not None:
            op, values = tgt.values(expr.field, op, values)
        if tgt.note and tgt.note not in notes:
            notes.append(tgt.note)
        return Leaf(tgt.name, op, _typed(tgt.name, expr.field, op, values))
    if isinstance(expr, Not):
        inner = bind(expr.arg, variant, category, notes)
        if isinstance(inner, bool):
            return not inner
        return inner.arg if isinstance(inner, Not) else Not(inner)
    is_and = isinstance(expr, And)
    args = []
    for a in expr.args:
        b = bind(a, variant, category, notes)
        if isinstance(b, bool):
            if b != is_and:             # FALSE in an and, TRUE in an or
                return b
            continue
        args.append(b)
    if not args:
        return is_and
    if len(args) == 1:
        return args[0]
    return And(tuple(args)) if is_and else Or(tuple(_group(args)))


# -- Mamori text ---------------------------------------------------------------------------
def quote(v) -> str:
    if isinstance(v, int):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _leaf_text(lf: Leaf) -> str:
    f, op, vs = lf.field, lf.op, lf.values
    if op == "exists":
        return f"{f} exists"
    if op == "regex" or len(vs) == 1:
        if len(vs) > 1:
            return "(" + " or ".join(f"{f} regex {quote(v)}" for v in vs) + ")"
        return f"{f} {op} {quote(vs[0])}"
    word = "in" if op == "=" else op
    return f"{f} {word} ({', '.join(quote(v) for v in vs)})"


def render(expr, top: bool = True) -> str:
    if isinstance(expr, Leaf):
        return _leaf_text(expr)
    if isinstance(expr, Not):
        inner = expr.arg
        text = render(inner, False)
        if isinstance(inner, (And, Or)) and not text.startswith("("):
            text = f"({text})"
        return f"not {text}"
    sep = " and " if isinstance(expr, And) else " or "
    parts = []
    for a in expr.args:
        t = render(a, False)
        if isinstance(a, (And, Or)) and type(a) is not type(expr):
            t = f"({t})"
        parts.append(t)
    return sep.join(parts)
