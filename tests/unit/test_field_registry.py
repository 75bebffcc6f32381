"""One field registry (agent/fields.py): rules, the alert snapshot, the gRPC message and
docs/fields.md are all derived from it, and these tests check that they agree."""
import os
import struct

import pytest

from agent import fields as R
from agent.alerts.alert import Alert
from agent.api.server import _other_text, to_proto
from agent.context.containers import ContainerInfo
from agent.context.enricher import Enriched
from agent.context.pods import PodContainer, PodInfo
from agent.drift.detector import Drift
from agent.rules.ruleset import load
from agent.sensor import decoder, events, layout

DOC = os.path.join(os.path.dirname(__file__), "../../docs/fields.md")


def _record(kind, sys=None):
    """A record of `kind` as the probes write it (every body byte zero but the syscall)."""
    sname = layout.STRUCT_OF_KIND[kind]
    buf = bytearray(layout.sizeof(sname))
    layout.HEADER_STRUCT.pack_into(buf, 0, 123, 77, layout.KIND_ID[kind], 10, 11, 1, 1000,
                                   1000, 5, 6, 2, 0, b"sh")
    offs = layout.offsets(sname)
    if sys is not None and "sys" in offs:
        struct.pack_into("<I", buf, offs["sys"], layout.SYSCALL_ID[sys])
    return bytes(buf)


def _item(kind, sys=None):
    ev = decoder.decode(_record(kind, sys))
    c = ContainerInfo("c1", "containerd", "/kubepods/c1", pod_uid="u1")
    pod = PodInfo("shop", "web-1", "u1", {"app": "web"}, "Deployment", "web",
                  containers={"c1": PodContainer("nginx", "nginx:1.27", "sha256:ab")})
    drift = Drift("new", "/tmp/x", size=3, sha256="f" * 64) if kind == "exec" else None
    return Enriched(ev, "sh", "/bin/sh", ("sh", "-c", "id"), "/",
                    ((1, "/sbin/init", "b00t:5:1", "init"),), False, c, pod, pod.containers["c1"],
                    drift, "b00t:9:10")


def test_docs_are_written_from_the_registry():
    with open(DOC) as f:
        assert f.read() == R.markdown(), \
            "docs/fields.md is stale: python -m agent.fields > docs/fields.md"


def test_every_field_an_event_carries_is_registered():
    dotted = set()
    for cls in (events.ExecEvent, events.MmapEvent, events.ForkEvent, events.ExitEvent,
                events.FileEvent, events.NetEvent, events.CgroupEvent, events.PrivEvent):
        dotted |= set(cls._DOTTED)
    for kind in layout.KINDS:        # the privilege kinds' own fields, every syscall
        for sys in [s for s in layout.SYSCALL_ID] + [None]:
            try:
                dotted |= set(decoder.decode(_record(kind, sys)).fields())
            except decoder.MalformedEvent:
                pass
    assert dotted - set(R.REGISTRY) == set()
    assert {"cred.fsgid", "module.fd", "net.backlog", "exec.prevented",
            "proc.exe_upper_layer", "proc.exe_lower_layer", "exit.core_dumped"} <= dotted


def _rule(name, kind):
    return (f"- rule: R\n  desc: d\n  events: [{kind}]\n  condition: {name} exists\n"
            f"  output: o\n  severity: high\n  tactic: TA0002\n  technique: T1059.004\n")


@pytest.mark.parametrize("name", sorted(R.REGISTRY))
def test_rules_take_every_rule_field_and_say_why_not_for_the_others(tmp_path, name):
    f = R.REGISTRY[name]
    kind = sorted(f.kinds & R.ALL_KINDS or f.kinds)[0]
    p = tmp_path / "r.yaml"
    p.write_text(_rule(name, kind if kind in R.EVENT_KINDS else "exec"))
    rs, problems = load([str(p)])
    if f.in_rules:
        assert rs is not None, [str(x) for x in problems]
        assert rs.rules[0].fields == {name}
    else:
        assert rs is None
        assert [x.message for x in problems if x.level == "error"] == [
            f"rule 'R': {name} is not for rules: {f.why}"]


@pytest.mark.parametrize("kind", R.EVENT_KINDS)
def test_the_alert_snapshot_carries_every_snapshot_field_of_its_kind(kind):
    item = _item(kind)
    snap = item.fields()
    want = {f.name for f in R.REGISTRY.values() if f.in_snapshot and kind in f.kinds}
    assert set(snap) == want
    assert not any(f.use == R.RULE and f.name in snap for f in R.REGISTRY.values())
    assert (snap["event.kind"], snap["proc.pid"], snap["proc.exec_id"], snap["proc.vpid"],
            snap["proc.name"],
            snap["container.id"], snap["container.image"], snap["container.image_id"],
            snap["k8s.ns"], snap["k8s.pod"], snap["k8s.labels"], snap["k8s.owner_name"],
            snap["proc.ancestors"]) == (
        kind, 10, "b00t:9:10", 2, "sh", "c1", "nginx:1.27", "sha256:ab", "shop", "web-1", {"app": "web"},
        "web", [{"pid": 1, "exe": "/sbin/init", "exec_id": "b00t:5:1", "name": "init"}])
    if kind == "exec":
        assert (snap["drift.kind"], snap["drift.path"], snap["drift.size"]) == (
            "new", "/tmp/x", 3)


def _value(f: R.Field):
    """A value of the field's type that is not proto3's default."""
    return {R.STR: f"v:{f.name}", R.INT: 7, R.BOOL: True, R.STRS: ("a", "b"),
            R.INTS: (3, 4), R.MAP: {"k": "v"},
            R.ANCESTRY: [{"pid": 3, "exe": "/x", "exec_id": "b:4:3", "name": "x"}]}[f.type]


def _read(msg, path):
    *parents, last = path.split(".")
    for p in parents:
        msg = getattr(msg, p)
    v = getattr(msg, last)
    if last == "ancestors":
        return [{"pid": a.pid, "exe": a.exe, "exec_id": a.exec_id, "name": a.name} for a in v]
    if hasattr(v, "items"):
        return dict(v)
    if hasattr(v, "extend"):
        return tuple(v)
    return v


@pytest.mark.parametrize("kind", R.EVENT_KINDS)
def test_every_snapshot_field_is_in_the_grpc_message(kind):
    fields = [f for f in R.SNAPSHOT_FIELDS[kind]]
    snap = {f.name: _value(f) for f in fields}
    snap["event.kind"] = kind
    a = to_proto(Alert.from_dict({"seq": 1, "rule": "R", "severity": "high", "fields": snap}))
    for f in fields:
        path = f.proto_path(kind)
        got = a.event.other.get(f.name) if path == R.OTHER else _read(a, path)
        want = _other_text(snap[f.name]) if path == R.OTHER else snap[f.name]
        assert got == want, (f.name, path)
    typed = {f.name for f in fields if f.proto_path(kind) != R.OTHER}
    assert set(a.event.other) == {f.name for f in fields} - typed


def test_a_host_event_has_no_container_pod_or_drift_in_the_message():
    item = _item("open")
    snap = Enriched(*item[:7], None, None, None, None).fields()
    a = to_proto(Alert.from_dict({"seq": 1, "fields": snap}))
    assert (a.HasField("container"), a.HasField("pod"), a.HasField("drift")) == (
        False, False, False)
    assert (a.event.kind, a.event.file.path, a.process.pid) == ("open", "", 10)
    assert a.event.other["proc.tid"] == "11" and a.event.other["file.fd"] == "0"


def test_an_agent_alerts_details_go_to_other():
    a = to_proto(Alert.from_dict({"seq": 2, "source": "agent", "fields": {
        "journal.dir": "/var/lib/mamori", "lost.kinds": {"open": 3}, "container.id": None}}))
    assert dict(a.event.other) == {"journal.dir": "/var/lib/mamori",
                                   "lost.kinds": '{"open":3}'}
    assert not a.HasField("container")
