"""Issue 20, finding 14: text an attacker in a container controls (argv, paths) must never
reach a terminal as control sequences. An argv that clears the screen, returns the cursor
and writes a row of its own ("Benign: all clear") is shown escaped by `mamori alerts` (table
and follow mode) and `mamori status`, written as valid JSON with \\u escapes to the output
file, and kept out of the agent's log lines."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time

from agent.text import json_line, json_safe, printable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULE = "System reconnaissance commands in a container"
FORGED = "      9  00:00:00.000  info      -       -          shop/web-1   Benign: all clear"
# clear the screen, cursor home, carriage return, a forged row on a new line, a bidi
# override, an 8-bit CSI and DEL
PAYLOAD = f"\x1b[2J\x1b[H\r{FORGED}\n\u202eevil\u202c\x9b31m\x7f"
ESCAPED = ("\\x1b[2J\\x1b[H\\r" + FORGED + "\\n\\u202eevil\\u202c\\x9b31m\\x7f")
RAW = ("\x1b", "\r", "\u202e", "\u202c", "\x9b", "\x7f")


def _cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HOME": "/nonexistent-home"})


def _assert_clean(text: str) -> None:
    found = [repr(ch) for ch in RAW if ch in text]
    assert not found, f"raw control characters reached the output: {found}"


def test_printable_escapes_controls_bidi_and_line_breaks():
    assert printable("plain /bin/cat é ü 漢字") == "plain /bin/cat é ü 漢字"
    assert printable(PAYLOAD) == ESCAPED
    assert printable("a\tb\u2028c\u2029d\x00e\u2066f\u2069\u200eg") == \
        "a\\tb\\u2028c\\u2029d\\x00e\\u2066f\\u2069\\u200eg"
    assert printable(42) == "42"
    line = json_line({"output": PAYLOAD})
    _assert_clean(line)
    assert "\u2028" not in json_safe(json.dumps("\u2028", ensure_ascii=False))
    assert json.loads(line) == {"output": PAYLOAD}            # same value for JSON readers


def test_log_lines_escape_what_containers_control():
    from agent.cli import PrintableFormatter
    f = PrintableFormatter("%(levelname)s %(message)s")
    rec = logging.LogRecord("mamori.x", logging.WARNING, __file__, 1, "exec of %s", (PAYLOAD,),
                            None)
    assert f.format(rec) == f"WARNING exec of {ESCAPED}"
    try:
        raise OSError(f"cannot open {PAYLOAD}")
    except OSError:
        rec = logging.LogRecord("mamori.x", logging.ERROR, __file__, 1, "failed", (),
                                sys.exc_info())
    out = f.format(rec)
    _assert_clean(out)
    assert out.splitlines()[0] == "ERROR failed"
    assert out.splitlines()[-1] == f"OSError: cannot open {ESCAPED}"


def test_an_argv_with_escape_sequences_is_shown_escaped(agent_factory, containers):
    agent = agent_factory()
    c = containers()
    m = agent.mark()
    c.exec("uname", PAYLOAD, check=False)
    a = agent.wait_for(RULE, c.id, since=m)
    assert a["fields"]["proc.args"] == ["uname", PAYLOAD]     # the record keeps the value
    assert a["output"].startswith(f"Recon command uname {PAYLOAD} in ")
    with open(agent.output, encoding="utf-8") as f:
        raw = f.read()
    _assert_clean(raw)                                        # the JSON-lines file
    assert "\\u001b[2J\\u001b[H\\r" in raw and "\\u202eevil\\u202c\\u009b31m\\u007f" in raw

    server = f"unix://{agent.socket}"
    r = _cli("alerts", "--server", server, "--wait", "2")
    assert r.returncode == 0, r.stderr
    _assert_clean(r.stdout)
    lines = r.stdout.splitlines()
    assert len(lines) == 1 + len(agent.alerts())              # header + one line per alert
    assert all(line.split()[0].isdigit() for line in lines[1:])
    [row] = [line for line in lines if "Benign: all clear" in line]
    assert row.split()[0] == str(a["seq"])                    # the forged row is inside it
    assert f"{RULE}: Recon command uname {ESCAPED} in " in row

    j = _cli("alerts", "--server", server, "--wait", "2", "--json")
    assert j.returncode == 0, j.stderr
    _assert_clean(j.stdout)
    mine = [json.loads(x) for x in j.stdout.splitlines()]
    assert [x["output"] for x in mine if x["rule"] == RULE] == [a["output"]]

    s = _cli("status", "--server", server)
    assert s.returncode == 0, s.stderr
    _assert_clean(s.stdout)
    assert s.stdout.splitlines()[0] == "node            adversarial-node"
    _assert_clean(agent.log())


def test_follow_mode_escapes_too(agent_factory, containers):
    agent = agent_factory()
    c = containers()
    p = subprocess.Popen([sys.executable, "-m", "agent.cli", "alerts", "--server",
                          f"unix://{agent.socket}", "--follow"], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: list[str] = []

    def read():
        for line in p.stdout:
            out.append(line)
    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 15
        while not out and time.monotonic() < deadline:        # the header: subscribed
            time.sleep(0.05)
        m = agent.mark()
        c.exec("uname", PAYLOAD, check=False)
        a = agent.wait_for(RULE, c.id, since=m)
        while not any("Benign" in x for x in out) and time.monotonic() < deadline + 15:
            time.sleep(0.05)
    finally:
        p.terminate()
        p.wait(timeout=10)
        t.join(timeout=5)
    text = "".join(out)
    _assert_clean(text)
    [row] = [x for x in out if "Benign: all clear" in x]
    assert row.split()[0] == str(a["seq"])
    assert f"Recon command uname {ESCAPED} in " in row
