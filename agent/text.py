"""Text from containers, made safe to show.

An attacker in a container controls argv, paths, comm, pod labels… Shown raw on a terminal,
an escape sequence in one of them clears the screen, moves the cursor and forges rows; a
bidi override (U+202E) makes a line read backwards. Everything a human reads goes through
`printable()`: C0 controls (tab, newline and carriage return included: one field is one
line), DEL, C1 controls, line and paragraph separators and the bidi controls are shown
escaped, as Python writes them (\\x1b, \\n, \\u202e). Backslashes are left as they are: this
is for safe display, not for decoding back.

JSON lines (`json_line()`) stay valid JSON with the same decoded values: json.dumps already
escapes C0 controls; DEL, C1, the separators and the bidi controls are written as \\uXXXX
escapes too, since those files are read on terminals as well (`kubectl logs`, `tail -f`).
"""
from __future__ import annotations

import json

_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_SEPARATORS = (0x2028, 0x2029)
_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}

# code point -> its escaped form, for str.translate
_HUMAN = {c: _NAMED.get(c, f"\\x{c:02x}") for c in (*range(0x00, 0x20), 0x7F,
                                                     *range(0x80, 0xA0))}
_HUMAN.update({c: f"\\u{c:04x}" for c in (*_SEPARATORS, *_BIDI)})
# in JSON text C0 controls are already escaped by json.dumps
_JSON = {c: f"\\u{c:04x}" for c in (0x7F, *range(0x80, 0xA0), *_SEPARATORS, *_BIDI)}


def printable(value) -> str:
    """`value` as text that a terminal shows as it is: no control character, no bidi
    control, no line break. Anything that is not a str is converted with str() first."""
    s = value if isinstance(value, str) else str(value)
    if s.isprintable():          # the common case; every character escaped is not
        return s
    return s.translate(_HUMAN)


def json_safe(text: str) -> str:
    """JSON text with DEL, C1 controls, U+2028/9 and bidi controls written as \\u escapes
    (they can only occur inside JSON strings, where the escape means the same character)."""
    if text.isascii() and "\x7f" not in text:
        return text
    return text.translate(_JSON)


def json_line(obj, **kw) -> str:
    """json.dumps (non-ASCII kept readable), then json_safe."""
    return json_safe(json.dumps(obj, ensure_ascii=False, **kw))
