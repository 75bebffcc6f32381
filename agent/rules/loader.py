"""Rule files: YAML in, items out, with the file, line and column of everything so that each
mistake is reported where it is. Merges users' files onto the defaults: a same-name item
must say `override:` (append to a list, macro condition or rule's exceptions; replace a
rule's severity, action, enabled…); without it, it is an error, never a silent replacement.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import yaml
from yaml.constructor import SafeConstructor


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    col: int
    message: str
    level: str = "error"      # error | warning

    def __str__(self) -> str:
        prefix = "warning: " if self.level == "warning" else ""
        return f"{self.file}:{self.line}:{self.col}: {prefix}{self.message}"


@dataclass
class Where:
    file: str
    line: int
    col: int

    def problem(self, message: str, level: str = "error", col_offset: int = 0) -> Problem:
        return Problem(self.file, self.line, self.col + col_offset, message, level)


@dataclass
class Item:
    """One list, macro or rule as written, with where each key and value is."""
    type: str                         # list | macro | rule
    name: str
    values: dict                      # key -> python value
    where: Where                      # the item's first key
    keys: dict[str, Where] = field(default_factory=dict)      # key -> where the key is
    nodes: dict[str, yaml.Node] = field(default_factory=dict)  # key -> value node

    def at(self, key: str) -> Where:
        return self.keys.get(key, self.where)

    def value_at(self, key: str) -> Where:
        n = self.nodes.get(key)
        if n is None:
            return self.at(key)
        return Where(self.where.file, n.start_mark.line + 1, n.start_mark.column + 1)


ITEM_KEYS = {
    "list": {"list", "items", "override"},
    "macro": {"macro", "condition", "override"},
    "rule": {"rule", "desc", "events", "condition", "output", "severity", "tactic",
             "technique", "action", "enabled", "tags", "exceptions", "override",
             "within", "group_by", "threshold", "sequence"},
}
OVERRIDABLE = {
    "list": {"items": ("append", "replace")},
    "macro": {"condition": ("append", "replace")},
    "rule": {"condition": ("append", "replace"), "exceptions": ("append", "replace"),
             "tags": ("append", "replace"), "events": ("append", "replace"),
             "severity": ("replace",), "action": ("replace",), "enabled": ("replace",),
             "output": ("replace",), "desc": ("replace",), "tactic": ("replace",),
             "technique": ("replace",), "within": ("replace",), "threshold": ("replace",),
             "group_by": ("replace",)},
}


def _py(node):
    """The node's value, constructed from the node itself. (Serializing the node and loading
    the text again re-folds long folded scalars: a space inside a quoted regex of a `>`
    condition could come back as a line break.)"""
    return SafeConstructor().construct_document(node) if node is not None else None


def rule_files(paths) -> list[str]:
    """Files named directly, and the *.yaml / *.yml files of directories (sorted, not
    recursive: rules/mitre/ holds the catalog, not rules)."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(os.path.join(p, f) for f in os.listdir(p)
                          if f.endswith((".yaml", ".yml")) and os.path.isfile(os.path.join(p, f)))
        else:
            out.append(p)
    return out


def parse_file(path: str, problems: list[Problem]) -> list[Item]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        problems.append(Problem(path, 1, 1, f"cannot read: {getattr(e, 'strerror', e)}"))
        return []
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problems.append(Problem(path, line, col,
                                f"YAML syntax: {getattr(e, 'problem', None) or e}"))
        return []
    if root is None:
        return []
    if not isinstance(root, yaml.SequenceNode):
        problems.append(Problem(path, root.start_mark.line + 1, root.start_mark.column + 1,
                                "a rules file is a list of items (- list:, - macro:, "
                                "- rule:)"))
        return []
    items = []
    for node in root.value:
        w = Where(path, node.start_mark.line + 1, node.start_mark.column + 1)
        if not isinstance(node, yaml.MappingNode):
            problems.append(w.problem("each item must be a mapping with list:, macro: or "
                                      "rule:"))
            continue
        keys, nodes, values = {}, {}, {}
        for k, v in node.value:
            kname = k.value if isinstance(k, yaml.ScalarNode) else str(_py(k))
            kw = Where(path, k.start_mark.line + 1, k.start_mark.column + 1)
            if kname in keys:
                problems.append(kw.problem(f"duplicate key {kname!r} in this item"))
                continue
            keys[kname], nodes[kname] = kw, v
            try:
                values[kname] = _py(v)
            except yaml.YAMLError as e:
                problems.append(kw.problem(f"bad value: {e}"))
        types = [t for t in ("list", "macro", "rule") if t in keys]
        if len(types) != 1:
            problems.append(w.problem("an item has exactly one of list:, macro:, rule:"
                                      if types else
                                      f"unknown item (keys: {', '.join(keys)}): expected "
                                      "list:, macro: or rule:"))
            continue
        t = types[0]
        name = values.get(t)
        if not isinstance(name, str) or not name.strip():
            problems.append(keys[t].problem(f"{t} name must be a non-empty string"))
            continue
        item = Item(t, name, values, keys[t], keys, nodes)
        for k in keys:
            if k not in ITEM_KEYS[t]:
                problems.append(keys[k].problem(
                    f"unknown key {k!r} in {t} {name!r} (known: "
                    f"{', '.join(sorted(ITEM_KEYS[t]))})"))
        items.append(item)
    return items


def merge(items: list[Item], problems: list[Problem]) -> dict[str, dict[str, Item]]:
    """Apply overrides in file order. Returns {type: {name: merged item}}."""
    out: dict[str, dict[str, Item]] = {"list": {}, "macro": {}, "rule": {}}
    for it in items:
        table = out[it.type]
        ov = it.values.get("override")
        if ov is None:
            if it.name in table:
                first = table[it.name].where
                problems.append(it.where.problem(
                    f"duplicate {it.type} {it.name!r} (first defined at {first.file}:"
                    f"{first.line}); to change it, add override: to this item"))
                continue
            table[it.name] = it
            continue
        if not isinstance(ov, dict) or not ov:
            problems.append(it.value_at("override").problem(
                "override must map keys to append or replace, e.g. {items: append}"))
            continue
        base = table.get(it.name)
        if base is None:
            problems.append(it.where.problem(
                f"override of {it.type} {it.name!r}, which is not defined before this file"))
            continue
        merged = Item(base.type, base.name, dict(base.values), base.where, dict(base.keys),
                      dict(base.nodes))
        ok = True
        for key, how in ov.items():
            allowed = OVERRIDABLE[it.type].get(key)
            if allowed is None:
                problems.append(it.value_at("override").problem(
                    f"{key!r} of a {it.type} cannot be overridden (can: "
                    f"{', '.join(sorted(OVERRIDABLE[it.type]))})"))
                ok = False
                continue
            if how not in allowed:
                problems.append(it.value_at("override").problem(
                    f"override of {key!r} must be {' or '.join(allowed)}, not {how!r}"))
                ok = False
                continue
            if key not in it.values:
                problems.append(it.where.problem(f"override names {key!r} but the item does "
                                                 f"not give a new {key!r}"))
                ok = False
                continue
            new = it.values[key]
            if how == "append":
                old = merged.values.get(key, [] if key != "condition" else None)
                if key == "condition":
                    merged.values[key] = f"({old}) {new}"
                elif isinstance(old, list) and isinstance(new, list):
                    merged.values[key] = old + new
                else:
                    problems.append(it.at(key).problem(f"cannot append to {key!r}: both must "
                                                       "be lists"))
                    ok = False
                    continue
            else:
                merged.values[key] = new
            merged.keys[key], merged.nodes[key] = it.at(key), it.nodes.get(key)
        for key in it.values:
            if key not in ov and key not in (it.type, "override"):
                problems.append(it.at(key).problem(
                    f"{key!r} given in an override of {it.type} {it.name!r} but not listed "
                    "in override:"))
                ok = False
        if ok:
            table[it.name] = merged
    return out
