"""The commands the documentation shows a user, read from the Markdown itself at test time,
so that a command added, renamed or changed there is tested without anyone remembering to.

Where commands are taken from, in every Markdown file of the repository (README.md first,
then docs/, then the others; not tests/, build or tool directories):
  - fenced code blocks in a shell language (sh, bash, shell, console, shell-session): every
    line is one command (backslash continuations joined, `# comments` dropped; in a console
    block only the lines after a `$ ` prompt);
  - inline code spans outside them that are a whole invocation of what this repository
    ships: `make <target>`, `mamori <verb> ...`, `.venv/bin/mamori ...`,
    `.venv/bin/python <script>`, optionally after `sudo` (`sudo make bench`, `mamori status`,
    `mamori release NAMESPACE/POD`). Prose fragments of other programs (`helm install
    --create-namespace`) are not commands; the fenced blocks carry those.
The words are split as a POSIX shell splits them (shlex): `rules.team\\\\.yaml` is the
`rules.team\\.yaml` helm sees. A placeholder for what the user fills in -- `<the digest of
your image>` in a fenced block, an upper-case word in an inline span (`NAMESPACE/POD`,
`FILE|DIR...`) -- is kept as one word, written `<...>`, for the test to fill. The same command
written in several places (with or without `sudo`) is one command, run once, with every
place it is written.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHELL_LANGS = {"sh", "bash", "shell", "console", "shell-session"}
INLINE_PROGRAMS = {"make", "mamori", ".venv/bin/mamori", ".venv/bin/python"}
SKIP_DIRS = {".git", ".venv", ".tools", ".pytest_cache", "node_modules", "tests", "build",
             "__pycache__"}
OPERATORS = {"|", "||", "&", "&&", ";", ">", ">>", "<", "<<", "(", ")"}
PLACEHOLDER = re.compile(r"<([A-Za-z][^<>\n]*)>")
CAPS = re.compile(r"(?<![\w./<-])([A-Z][A-Z_]+(?:[|/][A-Z][A-Z_]+)*(?:\.\.\.)?)(?![\w./>-])")
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")


@dataclass
class DocCommand:
    argv: tuple[str, ...]             # as written, `sudo` included when written with it
    text: str                         # one line, as the reader sees it
    where: list[str] = field(default_factory=list)      # "README.md:21", every place
    inline: bool = False              # only ever seen as an inline code span

    @property
    def sudo(self) -> bool:
        return self.argv[:1] == ("sudo",)

    @property
    def words(self) -> tuple[str, ...]:
        """The command without `sudo`, its program named as a user types it: `mamori` for
        `.venv/bin/mamori`."""
        w = self.argv[1:] if self.sudo else self.argv
        if w and w[0] == ".venv/bin/mamori":
            w = ("mamori",) + w[1:]
        return tuple(w)

    @property
    def placeholders(self) -> list[str]:
        return [m.group(1) for w in self.argv for m in PLACEHOLDER.finditer(w)]

    @property
    def id(self) -> str:
        return f"{self.where[0]}: {self.text}"


def markdown_files(root: str = ROOT) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        found += [os.path.join(dirpath, f) for f in filenames if f.endswith(".md")]
    rel = [os.path.relpath(p, root) for p in found]

    def order(p):
        return (p != "README.md", not p.startswith("docs" + os.sep), p)
    return sorted(rel, key=order)


def _split(text: str, inline: bool = False) -> tuple[str, ...]:
    """Shell words; placeholders (`<...>`; in an inline span also upper-case words) kept
    whole, as `<...>`, through the split."""
    held: list[str] = []

    def hold(m):
        held.append(m.group(1))
        return f"\x01{len(held) - 1}\x02"
    text = PLACEHOLDER.sub(hold, text)
    if inline:
        text = CAPS.sub(hold, text)
    lex = shlex.shlex(text, posix=True, punctuation_chars=";&|<>()")
    lex.whitespace_split = True
    lex.commenters = "#"
    return tuple(re.sub("\x01(\\d+)\x02", lambda m: f"<{held[int(m.group(1))]}>", w)
                 for w in lex)


def commands_in(path: str, root: str = ROOT) -> list[DocCommand]:
    """(argv, text, 'file:line', inline) of every command in one Markdown file."""
    with open(os.path.join(root, path)) as f:
        lines = f.read().split("\n")
    out: list[DocCommand] = []
    prose = []                         # the lines outside fences (fence lines blanked)
    fence, lang, pending, start = None, "", "", 0
    for n, line in enumerate(lines, 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence, lang = m.group(1), m.group(2).lower()
            prose.append("")
            continue
        if fence is not None:
            prose.append("")
            if line.strip().startswith(fence[0] * 3) and not line.strip().strip(fence[0]):
                fence = None
                continue
            if lang not in SHELL_LANGS:
                continue
            text = line.strip()
            if lang in ("console", "shell-session") and not pending:
                if not text.startswith("$ "):
                    continue
                text = text[2:]
            if not pending:
                start = n
            if text.endswith("\\") and not text.endswith("\\\\"):
                pending += text[:-1] + " "
                continue
            text, pending = pending + text, ""
            argv = _split(text)
            if argv:
                out.append(DocCommand(argv, _display(argv, text), [f"{path}:{start}"]))
            continue
        prose.append(line)
    body = "\n".join(prose)
    for m in INLINE.finditer(body):
        text = " ".join(m.group(1).replace("\\|", "|").split())
        try:
            argv = _split(text, inline=True)
        except ValueError:
            continue
        words = argv[1:] if argv[:1] == ("sudo",) else argv
        if len(words) >= 2 and words[0] in INLINE_PROGRAMS:
            line = body.count("\n", 0, m.start()) + 1
            out.append(DocCommand(argv, text, [f"{path}:{line}"], inline=True))
    return out


def _display(argv: tuple[str, ...], text: str) -> str:
    """The command as one line without its comment (cut at the first `#` that starts a
    word outside quotes, as the shell does)."""
    quote, cut = None, len(text)
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            cut = i
            break
    return " ".join(text[:cut].split())


def doc_commands(root: str = ROOT) -> list[DocCommand]:
    """Every command in the documentation, once, in the order a reader meets them."""
    merged: dict[tuple[str, ...], DocCommand] = {}
    for path in markdown_files(root):
        for c in commands_in(path, root):
            key = c.words
            if key in merged:
                m = merged[key]
                m.where += c.where
                m.inline = m.inline and c.inline
                if c.sudo and not m.sudo:
                    m.argv, m.text = c.argv, c.text
            else:
                merged[key] = c
    return list(merged.values())


def has_operator(argv: tuple[str, ...]) -> bool:
    return any(w in OPERATORS for w in argv)


# -- what the docs leave to the user ------------------------------------------------------

# Example values the docs use where a user puts their own -> the name of what the test
# puts there (the runner passes the values).
EXAMPLES = {"my-rules.yaml": "my_rules", "/my/cgroup": "cgroup", "10.0.0.5:50051": "tcp",
            "ca.pem": "ca", "me.pem": "cert", "me.key": "key"}
# Placeholders (`<...>` in a code block, upper-case words inline), matched whole and
# case-insensitively -> the name of what the test puts there.
PLACEHOLDERS = [(r"file\|dir\.\.\.", "rule_paths"), (r"dir", "rules_dir"),
                (r"osv export.*", "osv_export"), (r"url of an osv zip", "osv_url"),
                (r"sigma rules.*", "sigma_dir"),
                (r"file", "my_rules"), (r"namespace/pod", "pod"), (r".*digest.*", "digest")]


def fill(cmd: DocCommand, values: dict) -> list[str]:
    """The command's words (without sudo) with example values and placeholders replaced."""
    def need(name, what):
        assert name in values, (f"{cmd.id}: {what} has no value in this command's runner "
                                f"(add `{name}` to what it passes to fill())")
        return values[name]

    def name_of(ph):
        for pattern, name in PLACEHOLDERS:
            if re.fullmatch(pattern, ph, re.I):
                return name
        raise AssertionError(f"{', '.join(cmd.where)}: unknown placeholder <{ph}> in "
                             f"`{cmd.text}`: add it to PLACEHOLDERS with what the test puts "
                             "there")
    out: list[str] = []
    for w in cmd.words:
        if w in EXAMPLES:
            v = need(EXAMPLES[w], w)
            out += v if isinstance(v, list) else [v]
            continue
        k, eq, v = w.partition("=")
        if eq and v in EXAMPLES:
            out.append(f"{k}={need(EXAMPLES[v], v)}")
            continue
        whole = re.fullmatch(r"<([^<>]+)>", w)
        if whole:
            v = need(name_of(whole.group(1)), w)
            out += v if isinstance(v, list) else [v]
            continue
        out.append(re.sub(r"<([^<>]+)>", lambda m: str(need(name_of(m.group(1)), m.group(0))),
                          w))
    return out


if __name__ == "__main__":              # what the test would run, without running it
    for c in doc_commands():
        print(f"{', '.join(c.where):40} {'inline' if c.inline else 'fenced'}  {c.text}")
