"""The alert record: immutable, updated by replacement, one dict shape out and back."""
import dataclasses
import json

import pytest

from agent.alerts.alert import Alert, Response, agent_alert


def _alert(**kw):
    base = dict(rule="Shadow read", severity="high", tactic_id="TA0006",
                tactic_name="Credential Access", technique_id="T1003.008",
                technique_name="/etc/passwd and /etc/shadow", output="shadow read by cat",
                action="terminate", node="n1",
                fields={"proc.pid": 7, "k8s.ns": None, "proc.args": ("cat", "/etc/shadow")},
                time="2026-12-01T20:00:00.000000+00:00", id="a1")
    return Alert(**{**base, **kw})


def test_an_alert_cannot_be_changed_in_place():
    a = _alert()
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.severity = "low"
    with pytest.raises(TypeError):
        a.fields["proc.pid"] = 8          # the snapshot too is read-only


def test_updates_are_new_records_and_leave_the_old_one_as_it_was():
    a = _alert()
    b = a.with_response(Response("terminate", "pending", "nothing done yet"))
    c = b.with_response(b.response.added("deleted pod shop/web-1", status="done"),
                        "response")
    d = c.with_fields({"k8s.ns": "shop", "k8s.pod": "web-1"})
    assert (a.response, a.source) == (None, "rule")
    assert (b.response.status, b.source) == ("pending", "rule")
    assert (c.response.status, c.response.detail, c.source) == (
        "done", "nothing done yet; deleted pod shop/web-1", "response")
    assert (c.fields["k8s.ns"], d.fields["k8s.ns"], d.fields["k8s.pod"]) == (
        None, "shop", "web-1")
    assert d.id == a.id


def test_the_dict_shape_and_back():
    a = dataclasses.replace(_alert().with_response(Response("terminate", "done", "killed")),
                            seq=42)
    d = a.to_dict()
    assert d == {"id": "a1", "time": "2026-12-01T20:00:00.000000+00:00", "node": "n1",
                 "rule": "Shadow read", "severity": "high", "source": "rule",
                 "tactic": {"id": "TA0006", "name": "Credential Access"},
                 "technique": {"id": "T1003.008", "name": "/etc/passwd and /etc/shadow"},
                 "output": "shadow read by cat", "action": "terminate",
                 "fields": {"proc.pid": 7, "k8s.ns": None, "proc.args": ("cat", "/etc/shadow")},
                 "response": {"action": "terminate", "status": "done", "detail": "killed"},
                 "seq": 42}
    back = Alert.from_dict(json.loads(a.to_json()))
    assert back == dataclasses.replace(a, fields={**a.fields, "proc.args": ["cat", "/etc/shadow"]})
    assert "seq" not in _alert().to_dict() and "response" not in _alert().to_dict()


def test_an_agent_alert():
    a = agent_alert("Mamori lost kernel events", "high", "lost 3", "n1", {"lost.total": 3})
    assert (a.source, a.action, a.tactic_id, dict(a.fields)) == (
        "agent", "log", "", {"lost.total": 3})


@pytest.mark.parametrize("record, error", [
    ([1, 2], "an alert record is a map, not list"),
    ({"rule": 3}, "alert record: rule is int, not str"),
    ({"fields": ["proc.pid"]}, "alert record: fields is list, not dict"),
    ({"seq": "7"}, "alert record: seq is str, not int"),
    ({"response": "done"}, "alert record: response is str, not dict"),
])
def test_a_record_of_the_wrong_shape_is_a_clear_error(record, error):
    with pytest.raises(ValueError) as e:
        Alert.from_dict(record)
    assert str(e.value) == error
