"""Rules over time on events built field by field: thresholds (count, distinct), sequences
(in order, keyed, within the window), one alert per burst, bounded state, and the load-time
errors with file:line."""
import pytest

from agent.alerts.alert import from_match
from agent.context.containers import ContainerInfo
from agent.context.enricher import Enriched
from agent.rules import window as W
from agent.rules.attack import load as load_catalog
from agent.rules.ruleset import load
from agent.sensor.events import ExecEvent, FileEvent, NetEvent

S = 1_000_000_000


def _hdr(kind, ts, pid=100):
    return (kind, ts, pid, pid, 99, 7, 1000, 1000, "nc", 5, 1, 1)


def _container(cid):
    return ContainerInfo(cid, "containerd", f"/k/{cid}") if cid else None


def connect(ts, dport, daddr="10.0.0.1", cid="abc", pid=100):
    ev = tuple.__new__(NetEvent, _hdr("connect", ts, pid) + (
        "connect", -111, "ECONNREFUSED", "inet", "tcp", "stream", "10.1.1.1", 5555, daddr,
        dport, "", 3, 0))
    return Enriched(ev, "nc", "/bin/nc", ("nc", daddr, str(dport)), "/", (), False,
                    _container(cid), None, None, exec_id=f"b:1:{pid}")


def opened(ts, path, flags=("O_RDONLY",), cid="abc", pid=100):
    ev = tuple.__new__(FileEvent, _hdr("open", ts, pid) + ("openat", 3, None, path, None,
                                                           flags, 0, -100, False))
    return Enriched(ev, "cat", "/bin/cat", ("cat", path), "/", (), False, _container(cid),
                    None, None, exec_id=f"b:1:{pid}")


def execd(ts, exe, cid="abc", pid=200):
    ev = tuple.__new__(ExecEvent, _hdr("exec", ts, pid) + (
        exe, 1, 1, "overlay", 1, False, False, False, True, False, exe, (exe,), False,
        "pipe", "pipe", "pipe", "", None, 0, 1000, 1000))
    return Enriched(ev, exe.rsplit("/", 1)[-1], exe, (exe,), "/", (), False, _container(cid),
                    None, None, exec_id=f"b:2:{pid}")


def ruleset(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    rs, problems = load([str(p)])
    assert rs is not None, [str(x) for x in problems]
    return rs


def problems_of(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    rs, problems = load([str(p)])
    assert rs is None
    return [str(x).replace(str(p), "r.yaml") for x in problems if x.level == "error"]


SCAN = """
- rule: Scan
  desc: d
  events: [connect]
  condition: container.id exists and net.dport > 0
  within: 2s
  group_by: [container.id]
  threshold: {count: 5, distinct: net.dport}
  output: "%match.count ports in %match.within by %proc.exe: %match.values"
  severity: high
  tactic: TA0007
  technique: T1046
"""


def fire(rs, items):
    out = []
    for it in items:
        out += [(it, r) for r in rs.evaluate(it)]
    return out


def test_distinct_threshold_fires_once_per_burst_with_what_it_counted(tmp_path):
    rs = ruleset(tmp_path, SCAN)
    items = [connect(i * S // 10, 20 + i) for i in range(12)]     # 12 ports in 1.2 s
    hits = fire(rs, items)
    assert len(hits) == 1
    item, r = hits[0]
    assert item is items[4]                      # the fifth distinct port completes it
    a = from_match(r, item, load_catalog(), "n1")
    assert a.output == "5 ports in 2s by /bin/nc: 20 21 22 23 24"
    assert (a.fields["match.count"], a.fields["match.field"], a.fields["match.values"],
            a.fields["match.first_ts"], a.fields["match.within"], a.fields["match.group"]) == (
        5, "net.dport", ["20", "21", "22", "23", "24"], 0, "2s", {"container.id": "abc"})
    assert a.fields["net.dport"] == 24 and a.fields["event.kind"] == "connect"
    # the rule object in the ruleset is not changed by firing
    assert rs.rules[0].extra is None


def test_after_a_quiet_window_a_new_burst_fires_again(tmp_path):
    rs = ruleset(tmp_path, SCAN)
    first = [connect(i * S // 10, 20 + i) for i in range(8)]
    later = [connect(5 * S + i * S // 10, 100 + i) for i in range(5)]
    assert len(fire(rs, first + later)) == 2


def test_repeats_of_one_value_and_a_slow_scan_do_not_fire(tmp_path):
    rs = ruleset(tmp_path, SCAN)
    same = [connect(i * S // 100, 443) for i in range(50)]          # 50 connects, one port
    slow = [connect(10 * S + i * S, 1000 + i) for i in range(10)]   # 10 ports, 1 s apart
    assert fire(rs, same + slow) == []


def test_groups_are_apart(tmp_path):
    rs = ruleset(tmp_path, SCAN)
    items = []
    for i in range(4):                      # 4 ports each in two containers: 8 in all
        items += [connect(i * S // 10, 20 + i, cid="a"), connect(i * S // 10, 20 + i, cid="b")]
    assert fire(rs, items) == []
    assert fire(rs, [connect(S // 2, 99, cid="b")])[0][0].container.id == "b"


def test_count_threshold_slides(tmp_path):
    rs = ruleset(tmp_path, SCAN.replace("{count: 5, distinct: net.dport}", "4")
                 .replace("%match.values", "%net.dport"))
    # 3 in the first second, 3 more two seconds later: never 4 within 2 s
    items = [connect(t, 22) for t in (0, S // 3, 2 * S // 3, 3 * S, 3 * S + 1, 3 * S + 2)]
    assert fire(rs, items) == []
    hits = fire(rs, [connect(3 * S + 3, 22)])
    assert len(hits) == 1
    assert (hits[0][1].extra["match.count"], hits[0][1].extra["match.first_ts"]) == (4, 3 * S)


def test_state_is_bounded_and_expires(tmp_path):
    rs = ruleset(tmp_path, SCAN)
    th = rs.rules[0].window
    assert isinstance(th, W.Threshold) and th.groups.max == W.MAX_GROUPS
    for i in range(W.MAX_GROUPS + 500):      # a flood of containers: oldest groups dropped
        rs.evaluate(connect(i, 80, cid=f"c{i}"))
    assert len(th) == W.MAX_GROUPS and th.stats.evicted == 500
    for i in range(3 * W.VALUES_SHOWN):      # one group, many values: at most `count` kept
        rs.evaluate(connect(10 * S + i * 3 * S, 1000 + i, cid="one"))
    st = th.groups.table["one"]
    assert len(st.seen) <= 5
    rs.evaluate(connect(1000 * S, 1, cid="last"))   # everything else is long expired
    assert len(th) == 1


def test_budget_caps_groups_of_a_large_threshold(tmp_path):
    rs = ruleset(tmp_path, SCAN.replace("count: 5", "count: 1000"))
    assert rs.rules[0].window.groups.max == W.STATE_BUDGET // 1000


DROP_EXEC = """
- rule: Written then run
  desc: d
  events: [open, exec]
  condition: container.id exists
  within: 30s
  sequence:
    - condition: event.kind = open and file.writable and file.path startswith /tmp/
      key: file.path
    - condition: event.kind = exec
      key: proc.exe
  output: "%proc.exe run after %match.count steps"
  severity: high
  tactic: TA0011
  technique: T1105
"""


def test_keyed_sequence_joins_on_the_key(tmp_path):
    rs = ruleset(tmp_path, DROP_EXEC)
    w = ("O_WRONLY", "O_CREAT")
    assert fire(rs, [opened(0, "/tmp/a", w), execd(S, "/tmp/b")]) == []   # other file
    hits = fire(rs, [opened(2 * S, "/tmp/c", w), execd(3 * S, "/tmp/c")])
    assert len(hits) == 1
    item, r = hits[0]
    steps = r.extra["match.steps"]
    assert [s["event.kind"] for s in steps] == ["open"]
    assert (steps[0]["file.path"], steps[0]["proc.pid"], steps[0]["event.ts"],
            r.extra["match.first_ts"], r.extra["match.count"]) == ("/tmp/c", 100, 2 * S,
                                                                    2 * S, 2)
    assert r.render(item, r.extra) == "/tmp/c run after 2 steps"
    # completed: a second exec of the same file is not a second match
    assert fire(rs, [execd(4 * S, "/tmp/c")]) == []


def test_sequence_order_and_window(tmp_path):
    rs = ruleset(tmp_path, DROP_EXEC)
    w = ("O_WRONLY", "O_CREAT")
    assert fire(rs, [execd(0, "/tmp/x"), opened(S, "/tmp/x", w)]) == []        # wrong order
    assert fire(rs, [opened(2 * S, "/tmp/y", w), execd(40 * S, "/tmp/y")]) == []  # too late
    assert fire(rs, [opened(50 * S, "/tmp/z", ("O_RDONLY",)), execd(51 * S, "/tmp/z")]) == []
    assert fire(rs, [opened(60 * S, "/tmp/z", w), execd(61 * S, "/tmp/z", cid="other")]) == []


THREE = """
- rule: Read then connect
  desc: d
  events: [open, connect]
  condition: container.id exists
  within: 10s
  group_by: [container.id]
  sequence:
    - condition: event.kind = open and file.path = /etc/shadow
    - condition: event.kind = open and file.path = /etc/passwd
    - condition: event.kind = connect and net.dport = 4444
  output: "sent after %match.count steps"
  severity: critical
  tactic: TA0010
  technique: T1041
"""


def test_three_steps_unkeyed_in_the_group(tmp_path):
    rs = ruleset(tmp_path, THREE)
    items = [opened(0, "/etc/shadow", pid=1), connect(S, 4444, pid=2),     # skipped step 2
             opened(2 * S, "/etc/passwd", pid=3), connect(3 * S, 4444, pid=4)]
    hits = fire(rs, items)
    assert [h[0] for h in hits] == [items[3]]
    assert [s["proc.pid"] for s in hits[0][1].extra["match.steps"]] == [1, 3]


@pytest.mark.parametrize("extra,message", [
    ("  within: 2s\n  threshold: 1\n", "threshold count must be a whole number from 2 to 1000, not 1"),
    ("  within: 2s\n  threshold: {count: 5, distinct: nope.x}\n", "distinct: unknown field 'nope.x'"),
    ("  within: 2s\n  threshold: {count: 5, over: 3}\n", "threshold is a number of events"),
    ("  within: 2 days\n  threshold: 5\n", "a duration is like 500ms, 2s, 5m or 1h"),
    ("  within: 2h\n  threshold: 5\n", "within must be between 1ms and 1h, not '2h'"),
    ("  threshold: 5\n", "threshold: and sequence: need within:"),
    ("  within: 2s\n", "within: is for rules over time: add threshold: or sequence:"),
    ("  within: 2s\n  threshold: 5\n  group_by: [match.count]\n",
     "group_by: match.count is not for rules"),
    ("  within: 2s\n  threshold: 5\n  sequence: []\n", "threshold: or sequence:, not both"),
    ("  within: 2s\n  sequence:\n    - condition: proc.exe = /a\n",
     "sequence is a list of 2 to 8 steps"),
    ("  within: 2s\n  sequence:\n    - condition: proc.exe = /a\n      key: proc.exe\n"
     "    - condition: proc.exe = /b\n", "give key: on every step or on none"),
    ("  within: 2s\n  sequence:\n    - condition: proc.exe = /a\n"
     "    - condition: proc.nope = /b\n", "r.yaml:12:7: rule 'R': step 2: unknown field"),
])
def test_load_time_errors_say_where(tmp_path, extra, message):
    text = ("- rule: R\n  desc: d\n  events: [exec]\n  condition: proc.exe exists\n"
            "  output: 'x'\n  severity: high\n  tactic: TA0002\n  technique: T1059.004\n"
            + extra)
    errs = problems_of(tmp_path, text)
    assert any(message in e for e in errs), errs
    assert all(e.startswith("r.yaml:") for e in errs)


def test_match_fields_only_in_outputs_of_windowed_rules(tmp_path):
    errs = problems_of(tmp_path, "- rule: R\n  desc: d\n  events: [exec]\n"
                                 "  condition: proc.exe exists\n  output: '%match.count'\n"
                                 "  severity: high\n  tactic: TA0002\n  technique: T1059.004\n")
    assert errs == ["r.yaml:5:11: rule 'R': %match.count is set by threshold and sequence "
                    "rules only"]
    errs = problems_of(tmp_path, "- rule: R\n  desc: d\n  events: [exec]\n"
                                 "  condition: match.count > 2\n  output: 'x'\n"
                                 "  severity: high\n  tactic: TA0002\n  technique: T1059.004\n")
    assert len(errs) == 1 and "match.count" in errs[0] and "not a property of the event" in errs[0]
