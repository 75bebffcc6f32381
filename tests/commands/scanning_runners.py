"""Runners for the documented commands of the image side: `mamori inventory` (against the
bed's agent), `mamori vulndb import|update|status` (a database of the test's own, an OSV
export written by the test, served over HTTP for update) and `mamori rules import-sigma`
(the tests' Sigma corpus)."""
from __future__ import annotations

import http.server
import json
import os
import sys
import threading

from agent.rules.ruleset import load as load_rules
from doc_commands import ROOT, DocCommand, fill
from readme_bed import Bed, flag_values, ok, program, run

sys.path.insert(0, os.path.join(ROOT, "tests", "vulndb"))
import advisories  # noqa: E402 (tests/vulndb/advisories.py: real advisories' facts)

SIGMA = os.path.join(ROOT, "tests", "rules", "sigma_corpus", "supported")
STATES = {"pending", "done", "too_large", "failed"}


def _scratch(bed: Bed) -> dict:
    """The bed's OSV export (a zip of real advisories' records), its database, and a local
    HTTP server for the zip (these machines reach no other)."""
    if getattr(bed, "_scan", None) is None:
        d = bed.dir("scanning")
        zpath = advisories.write_zip(os.path.join(d, "all.zip"), advisories.ALL)
        handler = type("H", (http.server.SimpleHTTPRequestHandler,), {
            "log_message": lambda *a: None,
            "__init__": lambda self, *a, **k: http.server.SimpleHTTPRequestHandler.__init__(
                self, *a, directory=d, **k)})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        bed._scan = {"osv_export": zpath, "db": os.path.join(d, "osv.sqlite3"),
                     "osv_url": f"http://127.0.0.1:{srv.server_address[1]}/all.zip",
                     "server": srv}
    return bed._scan


def _records() -> int:
    return sum(1 for r in advisories.ALL if not r.get("withdrawn"))


def run_vulndb(cmd: DocCommand, bed: Bed) -> None:
    s = _scratch(bed)
    words = fill(cmd, bed.values(osv_export=s["osv_export"], osv_url=s["osv_url"]))
    if not flag_values(words, "--db"):
        words += ["--db", s["db"]]
    verb = words[2]
    if verb == "status" and not os.path.exists(s["db"]):       # status of a database made
        ok(run(program(["mamori", "vulndb", "import", s["osv_export"], "--db", s["db"]],
                       cmd)), "import")
    if verb == "status" and "--json" not in words:
        words.append("--json")
    argv = program(words, cmd)
    lines = ok(run(argv, timeout=120), argv)
    if verb in ("import", "update"):
        assert lines[-1] == (f"{s['db']}: {_records()} records from 1 source(s); 1 withdrawn "
                             "left out, 0 bad skipped"), lines
    else:
        st = json.loads("\n".join(lines))
        assert (st["present"], st["records"], st["withdrawn"]) == (True, _records(), 1), st
        assert st["stale"] is False and sum(st["per_ecosystem"].values()) >= _records(), st


def run_inventory(cmd: DocCommand, bed: Bed) -> None:
    agent = bed.agent()
    words = fill(cmd, bed.values())
    if not flag_values(words, "--server"):
        words += ["--server", agent.unix]
    argv = program(words, cmd)
    lines = ok(run(argv, timeout=60), argv)
    assert lines[0].split() == ["IMAGE", "OS", "PACKAGES", "STATE", "CONTAINERS"], lines
    for row in lines[1:]:                    # whatever the node runs: each row well formed
        cells = row.split()
        assert cells[-1].isdigit() and any(c in STATES for c in cells), row


def run_import_sigma(cmd: DocCommand, bed: Bed) -> None:
    out = os.path.join(bed.dir("sigma"), "my-rules.yaml")
    words = fill(cmd, bed.values(sigma_dir=SIGMA, my_rules=out))
    if len([w for w in words[3:] if not w.startswith("-")]) == 0:
        words.append(SIGMA)                  # named without files (`mamori rules import-sigma`)
    argv = program(words, cmd)
    p = run(argv)
    assert p.returncode == 0, (argv, p.stderr[-3000:])
    assert p.stderr.rstrip().splitlines()[-1] == "14 of 14 Sigma rules translated", p.stderr
    target = flag_values(words, "-o", "--output")
    text = open(target[0]).read() if target else p.stdout
    path = os.path.join(bed.dir("sigma"), "check.yaml")
    with open(path, "w") as f:
        f.write(text)
    rs, problems = load_rules([os.path.join(ROOT, "rules"), path])
    assert rs is not None, [str(x) for x in problems]
    assert len(rs.rules) == len(load_rules([os.path.join(ROOT, "rules")])[0].rules) + 14
