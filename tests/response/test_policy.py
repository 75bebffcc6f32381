"""The response policy and its guard rails, each saying why it took no action."""
import pytest

from agent.response.policy import Guard, Policy, PolicyError, load


def alert(action="terminate", ns="shop", pod="web-1", labels=None, container="c1",
          rule="R"):
    f = {"k8s.ns": ns, "k8s.pod": pod, "k8s.labels": labels or {}, "container.id": container}
    return {"rule": rule, "action": action, "fields": f}


class Clock:
    t = 100.0

    def __call__(self):
        return self.t


def test_actions_and_overrides(tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text("overrides:\n"
                 "  - rule: R\n    namespace: shop\n    labels: {app: web}\n"
                 "    action: isolate\n"
                 "  - namespace: dev\n    action: log\n")
    g = Guard(load(str(p)), Clock())
    d = g.decide(alert(labels={"app": "web"}))
    assert (d.action, d.status, d.detail) == ("isolate", "pending", "isolate shop/web-1")
    assert g.decide(alert(ns="dev")).detail == "the policy says log"
    d = g.decide(alert(pod="web-2"))
    assert (d.action, d.status) == ("terminate", "pending")       # the rule's own action


@pytest.mark.parametrize("policy,rec,detail", [
    (Policy(), alert(ns="kube-system"), "namespace kube-system is protected"),
    (Policy(), alert(labels={"mamori.io/protected": "true"}),
     "the pod has the protected label mamori.io/protected=true"),
    (Policy(), alert(container=None), "a host process: never acted on"),
    (Policy(mode="audit"), alert(), "audit mode: would terminate shop/web-1"),
])
def test_guard_rails_say_why(policy, rec, detail):
    d = Guard(policy, Clock()).decide(rec)
    assert d.detail == detail
    assert d.status in ("skipped", "audit")


def test_same_incident_once_and_rate_limit():
    clock = Clock()
    g = Guard(Policy(rate_limit_per_minute=2, incident_window_seconds=300), clock)
    assert g.decide(alert(pod="a")).status == "pending"
    assert g.decide(alert(pod="a")).detail == "shop/a was already acted on for this incident"
    assert g.decide(alert(pod="b")).status == "pending"
    assert g.decide(alert(pod="c")).detail == "rate limit: 2 actions per minute reached"
    clock.t += 61
    assert g.decide(alert(pod="c")).status == "pending"
    clock.t += 300
    assert g.decide(alert(pod="a")).status == "pending"


def test_policy_errors_name_their_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("mode: enforcing\nrate_limit_per_minute: -1\noverrides:\n"
                 "  - rule: R\n    action: kill\n")
    with pytest.raises(PolicyError) as e:
        load(str(p))
    assert e.value.problems == [
        f"{p}:1: mode: must be enforce or audit, not 'enforcing'",
        f"{p}:2: rate_limit_per_minute: must be a whole number, 0 or more",
        f"{p}:4: overrides.0: action must be one of log, isolate, terminate, not 'kill'"]
