"""A corpus of broken rule files, each with the exact errors `mamori rules check` must
report (tests/rules/broken/NAME.expected), and the command's exit status."""
import glob
import os
import subprocess
import sys

import pytest

from agent.rules.ruleset import load

HERE = os.path.dirname(os.path.abspath(__file__))
BROKEN = sorted(os.path.basename(p) for p in glob.glob(os.path.join(HERE, "broken", "*.yaml")))


def test_the_corpus_is_large_enough():
    assert len(BROKEN) >= 30


@pytest.mark.parametrize("name", BROKEN)
def test_broken_file_reports_exactly_its_errors(name, monkeypatch):
    monkeypatch.chdir(os.path.join(HERE, "broken"))
    rs, problems = load([name])
    assert rs is None
    errors = [str(p) for p in problems if p.level == "error"]
    with open(name[:-5] + ".expected") as f:
        assert errors == f.read().splitlines()


def test_check_command_reports_every_error_and_fails(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(open(os.path.join(HERE, "broken", "08-unknown-field.yaml")).read())
    b.write_text(open(os.path.join(HERE, "broken", "20-bad-severity.yaml")).read()
                 .replace("- rule: R", "- rule: S"))
    r = subprocess.run([sys.executable, "-m", "agent.cli", "rules", "check", str(a), str(b)],
                       capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(HERE)))
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        f"{a}:4:14: rule 'R': unknown field 'proc.exx'",
        f"{b}:6:13: rule 'S': severity must be one of info, low, medium, high, critical, "
        "not 'severe'",
        "2 error(s), 0 warning(s)"]


def test_check_command_on_the_default_rules_is_clean():
    root = os.path.dirname(os.path.dirname(HERE))
    r = subprocess.run([sys.executable, "-m", "agent.cli", "rules", "check", "rules"],
                       capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stdout
    assert r.stdout.startswith("94 rules (94 enabled) across 13 tactics; 0 warning(s)")


def test_warnings_do_not_fail(tmp_path):
    f = tmp_path / "w.yaml"
    f.write_text("- macro: unused\n  condition: proc.name = sh\n"
                 "- rule: R\n  desc: d\n  events: [exec, connect]\n"
                 "  condition: proc.name = sh and proc.exe_fs = overlay\n  output: o\n"
                 "  severity: low\n  tactic: TA0002\n  technique: T1059.004\n")
    rs, problems = load([str(f)])
    assert rs is not None
    assert [str(p) for p in problems] == [
        f"{f}:1:3: warning: macro 'unused' is never used",
        f"{f}:5:11: warning: rule 'R' can never match a connect event (proc.exe_fs never "
        "set on it)"]
