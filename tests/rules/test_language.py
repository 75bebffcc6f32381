"""The rule language on events built field by field: operators, lists, macros, ancestry,
exceptions, overrides, all-match, indexing and output."""
import os
import time

import pytest

from agent import config
from agent.context.containers import ContainerInfo
from agent.context.enricher import Enriched
from agent.context.pods import PodInfo
from agent.rules.engine import RuleEngine
from agent.rules.ruleset import load
from agent.rules.window import Sequence
from agent.sensor.events import ExecEvent, FileEvent, NetEvent


def _hdr(kind):
    return (kind, 1, 100, 100, 99, 7, 1000, 1000, "curl", 5, 1, 1)


def exec_item(exe="/usr/bin/curl", args=("curl", "-s", "http://x"), stdin="pipe",
              ancestors=((99, "/bin/sh", "b:9:99", "sh"), (50, "/usr/bin/node", "b:5:50", "node")), container=True, pod=None):
    ev = tuple.__new__(ExecEvent, _hdr("exec") + (
        exe, 1, 1, "overlay", 1, False, False, False, True, False, exe, tuple(args), False, stdin, "pipe", "pipe", "", None, 0, 1000, 1000))
    c = ContainerInfo("abc", "containerd", "/k/abc") if container else None
    return Enriched(ev, exe.rsplit("/", 1)[-1], exe, tuple(args), "/", ancestors, False, c,
                    pod, None)


def open_item(path="/etc/shadow", flags=("O_RDONLY",)):
    ev = tuple.__new__(FileEvent, _hdr("open") + ("openat", 3, None, path, None, flags, 0,
                                                  -100, False))
    return Enriched(ev, "cat", "/bin/cat", ("cat", path), "/", (), False,
                    ContainerInfo("abc", "containerd", "/k/abc"), None, None)


def connect_item(dport=443, daddr="10.0.0.1"):
    ev = tuple.__new__(NetEvent, _hdr("connect") + ("connect", 0, None, "inet", "tcp",
                                                    "stream", "10.1.1.1", 5555, daddr, dport,
                                                    "", 3, 0))
    return Enriched(ev, "curl", "/usr/bin/curl", ("curl",), "/", (), False, None, None, None)


def ruleset(tmp_path, text, *more):
    paths = []
    for i, t in enumerate((text,) + more):
        p = tmp_path / f"r{i}.yaml"
        p.write_text(t)
        paths.append(str(p))
    rs, problems = load(paths)
    assert rs is not None, [str(p) for p in problems]
    return rs


def rule(cond, events="exec", name="R", extra=""):
    return (f"- rule: {name}\n  desc: d\n  events: [{events}]\n  condition: {cond}\n"
            f"  output: 'out %proc.exe %proc.args'\n  severity: high\n  tactic: TA0002\n"
            f"  technique: T1059.004\n{extra}")


@pytest.mark.parametrize("cond,expected", [
    ("proc.exe = /usr/bin/curl", True),
    ("proc.exe != /usr/bin/curl", False),
    ("proc.name in (wget, curl)", True),
    ("proc.exe contains bin/cu", True),
    ("proc.exe icontains BIN/CURL", True),
    ("proc.exe startswith /usr/", True),
    ("proc.exe endswith /curl", True),
    ("proc.exe glob /usr/*/c*", True),
    ("proc.exe regex '^/usr/bin/c[a-z]+$'", True),
    ("proc.uid >= 1000 and proc.uid < 1001", True),
    ("proc.uid > 1000", False),
    ("proc.args contains -s", True),                 # list: has this element
    ("proc.args startswith http", True),             # list: any element
    ("proc.args = -v", False),
    ("proc.cmdline contains '-s http'", True),
    ("proc.pname = sh", True),
    ("proc.ancestors.name in (node, java)", True),   # any ancestor
    ("proc.ancestors.exe = /usr/bin/python3", False),
    ("container.id exists", True),
    ("k8s.pod exists", False),                      # no pod: missing field
    ("k8s.pod = web", False),
    ("not k8s.pod = web", True),
    ("proc.name = wget or proc.name = curl and proc.uid = 0", False),   # and binds tighter
    ("(proc.name = wget or proc.name = curl) and proc.uid = 1000", True),
    ("proc.stdin = pipe", True),
    ("proc.runtime_setup", False),
    ("not proc.runtime_setup", True),
    ("proc.exe startswith (/opt/, /usr/)", True),
])
def test_operators(tmp_path, cond, expected):
    rs = ruleset(tmp_path, rule(cond))
    assert bool(rs.evaluate(exec_item())) is expected


def test_labels_and_pod_fields(tmp_path):
    pod = PodInfo("shop", "web-1", "u1", {"app": "web", "tier": "front"}, "Deployment", "web")
    rs = ruleset(tmp_path, rule("k8s.labels contains app and k8s.labels.tier = front and "
                                "k8s.ns = shop and k8s.owner_name = web"))
    assert rs.evaluate(exec_item(pod=pod))
    assert not rs.evaluate(exec_item())


def test_lists_macros_and_nested_lists(tmp_path):
    rs = ruleset(tmp_path, "- list: fetchers\n  items: [curl, wget]\n"
                           "- list: tools\n  items: [fetchers, nc]\n"
                           "- macro: fetching\n  condition: proc.name in (tools)\n" +
                 rule("fetching and proc.name in tools"))
    assert rs.evaluate(exec_item())


def test_every_matching_rule_fires_and_index_by_kind(tmp_path):
    rs = ruleset(tmp_path, rule("proc.name = curl", name="A") +
                 rule("proc.exe endswith curl", name="B") +
                 rule("file.path = /etc/shadow", events="open", name="C"))
    assert [r.name for r in rs.evaluate(exec_item())] == ["A", "B"]
    assert [r.name for r in rs.by_kind["exec"]] == ["A", "B"]
    assert [r.name for r in rs.by_kind["open"]] == ["C"]
    assert [r.name for r in rs.evaluate(open_item())] == ["C"]


def test_numbers_lists_and_connect(tmp_path):
    rs = ruleset(tmp_path, "- list: ports\n  items: [3333, 4444]\n" +
                 rule("net.dport in (ports) and net.daddr startswith 10.", events="connect"))
    assert rs.evaluate(connect_item(3333))
    assert not rs.evaluate(connect_item(443))


def test_exceptions_silence_matches(tmp_path):
    exc = ("  exceptions:\n"
           "    - name: known_fetchers\n      fields: [proc.exe, proc.pname]\n"
           "      values: [[/usr/bin/curl, sh], [/usr/bin/wget, sh]]\n"
           "    - name: by_prefix\n      fields: [proc.cwd]\n      comps: [startswith]\n"
           "      values: [[/srv]]\n")
    rs = ruleset(tmp_path, rule("proc.name in (curl, wget)", extra=exc))
    assert rs.evaluate(exec_item()) == []                               # excepted
    assert rs.evaluate(exec_item(ancestors=((99, "/bin/bash", "b:9:99", "bash"),)))       # other parent
    assert rs.rules[0].exceptions == ("known_fetchers", "by_prefix")


def test_users_extend_defaults_explicitly(tmp_path):
    base = ("- list: fetchers\n  items: [wget]\n"
            "- macro: m\n  condition: proc.uid = 0\n" +
            rule("proc.name in (fetchers) or m"))
    user = ("- list: fetchers\n  items: [curl]\n  override: {items: append}\n"
            "- rule: R\n  severity: low\n  enabled: true\n"
            "  override: {severity: replace, enabled: replace}\n"
            "- rule: R\n  exceptions:\n    - name: e\n      fields: [proc.uid]\n"
            "      values: [[0]]\n  override: {exceptions: append}\n")
    rs = ruleset(tmp_path, base, user)
    r = rs.rules[0]
    assert r.severity == "low"
    assert rs.evaluate(exec_item())            # curl now in the list
    disable = "- rule: R\n  enabled: false\n  override: {enabled: replace}\n"
    rs2 = ruleset(tmp_path, base, user, disable)
    assert rs2.evaluate(exec_item()) == [] and rs2.by_kind == {}


def test_output_renders_fields(tmp_path):
    rs = ruleset(tmp_path, rule("proc.name = curl"))
    assert rs.rules[0].render(exec_item()) == "out /usr/bin/curl curl -s http://x"
    rs = ruleset(tmp_path, rule("proc.name = curl").replace(
        "'out %proc.exe %proc.args'", "'%k8s.pod %{k8s.labels.app}'"))
    assert rs.rules[0].render(exec_item()) == "<NA> <NA>"


def test_reload_keeps_the_running_ruleset_on_errors(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text(rule("proc.name = curl"))
    eng = RuleEngine([str(f)])
    eng.load()
    assert not eng.changed()
    time.sleep(0.01)
    f.write_text(rule("proc.nme = curl"))
    os.utime(f, ns=(time.time_ns(), time.time_ns()))
    assert eng.changed()
    errors = eng.reload()
    assert [str(e) for e in errors] == [f"{f}:4:14: rule 'R': unknown field 'proc.nme'"]
    assert eng.ruleset.evaluate(exec_item())            # still the old rules
    f.write_text(rule("proc.name = wget"))
    assert eng.reload() == [] and eng.ruleset.evaluate(exec_item()) == []


def test_agent_raises_an_alert_of_its_own_when_a_reload_fails(tmp_path):
    from agent.runtime import Agent
    f = tmp_path / "r.yaml"
    f.write_text(rule("proc.name = curl"))
    alerts = []
    cfg = config.load(None, {"node_name": "n1", "alerts.journal_dir": str(tmp_path / "j")})
    agent = Agent(cfg, [str(f)], outputs=[lambda a: alerts.append(a.to_dict())])
    agent.engine.load()
    agent.journal.open()
    try:
        f.write_text("- rule: [\n")
        agent._reload()
    finally:
        agent.journal.close()
    [a] = alerts
    assert (a["rule"], a["severity"], a["source"], a["node"], a["seq"]) == (
        "Mamori rules reload failed", "high", "agent", "n1", 1)
    assert a["fields"]["reload.errors"] == [
        f"{f}:2:1: YAML syntax: expected the node content, but found '<stream end>'"]
    assert "previous 1 rules stay loaded" in a["output"]


GATED = "\n".join([
    rule("container.id exists and file.path = /etc/shadow", "open", "A exact"),
    rule("file.path startswith /var/log/ and not file.path endswith .gz", "open",
         "B prefix"),
    rule("(file.path endswith _history or file.path = /root/.netrc) and proc.name != vi",
         "open", "C or same field"),
    rule("file.path contains secret", "open", "D contains"),
    rule("file.path = /a or proc.name = vim", "open", "E or of two fields - no gate"),
    rule("not file.path = /etc/hostname", "open", "F not - no gate"),
    rule("net.dport in (3333, 4444) and container.id exists", "connect", "G numbers"),
])


def test_gates_found_at_compile_time(tmp_path):
    rs = ruleset(tmp_path, GATED + "\n" + "\n".join([
        rule("(event.kind = exec and proc.name = kill) or (event.kind = open and "
             "file.path startswith /etc/mamori/)", "exec, open", "H per kind"),
        rule("file.path glob /proc/*/environ or file.path glob /etc/ssh/ssh_host_*_key",
             "open", "I glob"),
        rule("file.path glob '*.pem'", "open", "J glob from the start - no gate")]))
    gates = {r.name: r.gate(r.events[0]) if r.gate else None for r in rs.rules}
    assert (gates["A exact"].field, gates["A exact"].exact) == ("file.path",
                                                               frozenset({"/etc/shadow"}))
    assert gates["B prefix"].prefixes == ("/var/log/",)
    c = gates["C or same field"]
    assert (c.field, c.exact, c.suffixes) == ("file.path", frozenset({"/root/.netrc"}),
                                              ("_history",))
    assert gates["D contains"].substrings == ("secret",)
    assert gates["E or of two fields - no gate"] is None
    assert gates["F not - no gate"] is None
    assert gates["G numbers"].exact == frozenset({3333, 4444})
    h = rs.rule("H per kind").gate
    assert (h("exec").field, h("exec").exact) == ("proc.name", frozenset({"kill"}))
    assert (h("open").field, h("open").prefixes) == ("file.path", ("/etc/mamori/",))
    assert gates["I glob"].prefixes == ("/proc/", "/etc/ssh/ssh_host_")
    assert gates["J glob from the start - no gate"] is None


@pytest.mark.parametrize("path, expected", [
    ("/etc/shadow", ["A exact", "F not - no gate"]),
    ("/var/log/app.log", ["B prefix", "F not - no gate"]),
    ("/var/log/app.log.gz", ["F not - no gate"]),
    ("/root/.ash_history", ["C or same field", "F not - no gate"]),
    ("/root/.netrc", ["C or same field", "F not - no gate"]),
    ("/srv/secret.txt", ["D contains", "F not - no gate"]),
    ("/a", ["E or of two fields - no gate", "F not - no gate"]),
    ("/etc/hostname", []),
])
def test_gated_evaluation_matches_every_rule_tried_one_by_one(tmp_path, path, expected):
    rs = ruleset(tmp_path, GATED)
    item = open_item(path)
    brute = [r.name for r in rs.by_kind["open"] if r.match(item)]
    assert [r.name for r in rs.evaluate(item)] == brute == expected


def test_default_rules_gated_evaluation_equals_brute_force():
    """Over the default rules, for many paths, ports and programs, skipping by gates
    changes nothing but the time taken."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rs, _ = load([os.path.join(root, "rules")])
    paths = ["/etc/shadow", "/etc/hostname", "/root/.ssh/id_rsa", "/root/.bash_history",
             "/var/log/syslog", "/var/spool/cron/crontabs/root", "/etc/ld.so.preload",
             "/usr/local/bin/x", "/proc/1/environ", "/etc/passwd", "/root/.profile",
             "/run/secrets/kubernetes.io/serviceaccount/token", "/sys/kernel/uevent_helper",
             "/etc/systemd/system/x.service", "/home/app/data/orders.log", "relative"]
    items = [open_item(p, flags) for p in paths
             for flags in (("O_RDONLY",), ("O_WRONLY", "O_TRUNC"), ("O_RDWR", "O_CREAT"))]
    items += [connect_item(port) for port in (443, 3333, 6443, 9050, 169, 80)]
    items += [exec_item(exe, (exe.rsplit("/", 1)[-1],) + args, stdin)
              for exe in ("/bin/sh", "/usr/bin/curl", "/usr/bin/nc", "/tmp/x", "/usr/bin/nmap",
                          "/bin/busybox", "/usr/bin/kubectl", "/usr/bin/xmrig")
              for args in ((), ("-c", "id"), ("-d",)) for stdin in ("pipe", "tty", "socket")]
    matched = 0
    for item in items:
        rules = rs.by_kind.get(item.event.kind, ())
        brute = [r.name for r in rules if not isinstance(r.window, Sequence) and r.match(item)]
        got = rs.matching(item)
        assert [r.name for r in got if not isinstance(r.window, Sequence)] == brute, item.event
        # a sequence is a candidate (its window tests the steps) whenever a step can match
        assert all(r in got for r in rules if isinstance(r.window, Sequence) and
                   r.match(item) and any(s.match(item) for s in r.window.steps)), item.event
        matched += bool(brute)
    assert matched > 30                      # the comparison covered matching events too


def test_a_kind_the_condition_rules_out_is_warned_about(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(rule("event.kind = exec and proc.name = kill", "exec, open", "K"))
    rs, problems = load([str(p)])
    assert rs is not None
    assert [(x.level, x.message) for x in problems] == [
        ("warning", "rule 'K' can never match a open event (its condition asks for another "
                    "event.kind)")]
    assert [r.name for r in rs.evaluate(exec_item("/bin/kill", ("kill", "1")))] == ["K"]


def test_a_folded_condition_keeps_the_spaces_of_its_quoted_values(tmp_path):
    """A `>` condition with more-indented lines longer than YAML's line width: the value
    of its quoted regex is exactly as written (it used to come back with a space turned
    into a line break, so `( |$)` no longer matched the end of an argument)."""
    text = ("- rule: R\n  desc: d\n  events: [exec]\n  condition: >\n"
            "    proc.name = curl and\n"
            "     not proc.cmdline regex '(^| )(-[a-zA-Z]*O|--output-document)( *|=)"
            "(-|/dev/null)( |$)' and\n"
            "     not proc.args = --spider\n"
            "  output: o\n  severity: high\n  tactic: TA0002\n  technique: T1059.004\n")
    rs = ruleset(tmp_path, text)
    assert "(-|/dev/null)( |$)' and\n not proc.args" in rs.rules[0].condition
    assert rs.evaluate(exec_item(args=("curl", "-O", "/dev/null", "http://x"))) == []
    assert rs.evaluate(exec_item(args=("curl", "-O", "/tmp/x", "http://x")))
