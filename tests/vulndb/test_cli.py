"""`mamori vulndb update|import|status` as a user types them: every `mamori vulndb` line of
docs/vulnerabilities.md is run (against a local HTTP server standing in for osv.dev and the
mirror, and files of the test's own), plus the failures a user meets."""
from __future__ import annotations

import json
import os
import re
import shlex

import pytest

from advisories import DSA_5532_1, GHSA_35JH, GHSA_J8R2, write_dir, write_zip, zip_bytes
from osv_server import OSVServer
from agent import cli
from agent.vulndb import update

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def documented() -> list[list[str]]:
    text = open(os.path.join(ROOT, "docs", "vulnerabilities.md")).read()
    out = []
    for line in text.splitlines():
        if line.startswith("$ mamori vulndb"):
            lex = shlex.shlex(line[2:], posix=True)
            lex.whitespace_split, lex.commenters = True, "#"
            out.append(list(lex))
    return out


@pytest.fixture
def server(monkeypatch):
    s = OSVServer()
    for eco, recs in (("Debian", [DSA_5532_1]), ("PyPI", [GHSA_J8R2]), ("npm", [GHSA_35JH]),
                      ("Ubuntu", [DSA_5532_1]), ("Alpine", [DSA_5532_1]), ("Go", [GHSA_35JH]),
                      ("Maven", [GHSA_35JH])):
        s.files[f"/{eco}/all.zip"] = zip_bytes(recs)
    s.files["/osv/Debian/all.zip"] = zip_bytes([DSA_5532_1])
    monkeypatch.setattr(update, "OSV_EXPORT", s.url)          # osv.dev, here
    yield s
    s.close()


def run(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_the_documented_commands(server, tmp_path, monkeypatch, capsys):
    cmds = documented()
    assert len(cmds) == 6 and all(c[:2] == ["mamori", "vulndb"] for c in cmds)
    monkeypatch.chdir(tmp_path)
    write_zip("Debian-all.zip", [DSA_5532_1])
    write_zip("PyPI-all.zip", [GHSA_J8R2])
    export = write_dir(str(tmp_path / "export"), [GHSA_35JH])
    db = str(tmp_path / "osv.sqlite3")
    for words in cmds:
        argv = [w.replace("https://mirror.internal", server.url)
                .replace("/srv/osv-export/", export) for w in words[1:]]
        rc, out, err = run(argv + ["--db", db], capsys)
        assert rc == 0, (words, err)
        if words[2] in ("update", "import"):
            assert re.search(rf"^{re.escape(db)}: \d+ records from \d+ source\(s\)", out,
                             re.M), out
        else:
            assert f"database        {db}" in out and "per ecosystem" in out
    assert server.requests[:9] == ["/Debian/all.zip", "/Ubuntu/all.zip", "/Alpine/all.zip",
                                   "/PyPI/all.zip", "/npm/all.zip", "/Go/all.zip",
                                   "/Maven/all.zip", "/Debian/all.zip", "/PyPI/all.zip"]
    assert server.requests[9:] == ["/osv/Debian/all.zip"]


def test_update_failure_says_why_and_keeps_the_database(server, tmp_path, capsys):
    db = str(tmp_path / "osv.sqlite3")
    assert run(["vulndb", "import", write_zip(str(tmp_path / "a.zip"), [DSA_5532_1]),
                "--db", db], capsys)[0] == 0
    body = zip_bytes([GHSA_J8R2])
    server.files["/cut.zip"] = body
    server.cut["/cut.zip"] = 100
    rc, out, err = run(["vulndb", "update", "-q", "--source", server.url + "/cut.zip",
                        "--db", db], capsys)
    assert rc == 1
    assert err == (f"mamori: update failed, the previous database is kept: {server.url}"
                   f"/cut.zip: the connection closed after 100 of {len(body)} bytes "
                   "(download incomplete)\n")
    rc, out, _ = run(["vulndb", "status", "--json", "--db", db], capsys)
    st = json.loads(out)
    assert (rc, st["records"], st["per_ecosystem"]) == (0, 1, {"Debian:12": 1})


def test_import_reports_bad_records(tmp_path, capsys):
    db = str(tmp_path / "osv.sqlite3")
    z = write_zip(str(tmp_path / "x.zip"), [GHSA_J8R2], {"bad.json": b"{"})
    rc, out, err = run(["vulndb", "import", z, "--db", db], capsys)
    assert rc == 0
    assert err.startswith(f"{z}:bad.json: not JSON:")
    assert out == f"{db}: 1 records from 1 source(s); 0 withdrawn left out, 1 bad skipped\n"


def test_status_without_database_and_stale(tmp_path, capsys):
    db = str(tmp_path / "osv.sqlite3")
    rc, out, err = run(["vulndb", "status", "--db", db], capsys)
    assert rc == 1 and "no vulnerability database at" in err
    run(["vulndb", "import", write_zip(str(tmp_path / "a.zip"), [DSA_5532_1]), "--db", db],
        capsys)
    import sqlite3
    c = sqlite3.connect(db)
    c.execute("UPDATE meta SET value='2020-01-01T00:00:00+00:00' WHERE key='built_at'")
    c.commit()
    c.close()
    rc, out, err = run(["vulndb", "status", "--db", db], capsys)
    assert rc == 0 and "STALE" in out
    assert "mamori: warning: the vulnerability database" in err and "still used" in err
    from agent.vulndb.status import Collector, database_age_seconds
    assert database_age_seconds(db) > 5 * 365 * 86400
    gauges = {m.name: m for m in Collector(db, 3600).collect()}
    assert gauges["mamori_vulndb_stale"].samples[0].value == 1
    assert gauges["mamori_vulndb_records"].samples[0].labels == {"ecosystem": "Debian:12"}


def test_config_errors_are_file_line(tmp_path, capsys):
    cfg = tmp_path / "m.yaml"
    cfg.write_text("vulndb:\n  sources: [ftp://x]\n")
    rc, out, err = run(["vulndb", "status", "--config", str(cfg)], capsys)
    assert rc == 2
    assert err == (f"mamori: {cfg}:2: vulndb.sources: must be a list of http://, https:// "
                   "or file:// URLs\n")


def test_update_without_sources_says_why_the_agent_was_not_asked(tmp_path):
    from agent.vulndb.cli import _node_ecosystems
    args = type("A", (), {"server": f"unix://{tmp_path}/none.sock", "config": None})
    assert _node_ecosystems(args) == (
        [], f"the agent at unix://{tmp_path}/none.sock did not answer (UNAVAILABLE)")
