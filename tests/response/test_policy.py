"""The response policy and its guard rails, each saying why it took no action. Protection
comes from what an administrator controls (namespaces, their labels, the policy file),
never from the pod's own labels; a pod that is not known yet is not taken as unprotected."""
import pytest

from agent.alerts.alert import Alert
from agent.response.policy import Guard, Policy, PolicyError, load


def alert(action="terminate", ns="shop", pod="web-1", labels=None, container="c1",
          rule="R"):
    f = {"k8s.ns": ns, "k8s.pod": pod, "k8s.labels": labels or {}, "container.id": container}
    return Alert.from_dict({"rule": rule, "action": action, "fields": f})


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
    d = g.decide(alert(action="log", labels={"app": "web"}))
    assert (d.action, d.status, d.detail) == ("isolate", "pending", "isolate shop/web-1")
    assert g.decide(alert(ns="dev")).detail == "the policy says log"
    d = g.decide(alert(pod="web-2"))
    assert (d.action, d.status) == ("terminate", "pending")       # the rule's own action


def test_pod_labels_raise_the_action_but_never_lower_it(tmp_path):
    """An override matched through pod labels is the pod author's choice: it may ask for a
    stronger response, never a weaker one (or none)."""
    p = tmp_path / "policy.yaml"
    p.write_text("overrides:\n"
                 "  - labels: {team: legacy}\n    action: log\n"
                 "  - labels: {tier: web}\n    action: isolate\n"
                 "  - labels: {tier: db}\n    action: terminate\n"
                 "  - namespace: dev\n    action: log\n")
    g = Guard(load(str(p)), Clock())
    # the label-free policy says terminate (the rule's action): a label cannot lower it
    assert g.action_for("R", "terminate", "shop", {"team": "legacy"}) == "terminate"
    assert g.action_for("R", "terminate", "shop", {"tier": "web"}) == "terminate"
    # ... but can raise it
    assert g.action_for("R", "log", "shop", {"tier": "web"}) == "isolate"
    assert g.action_for("R", "isolate", "shop", {"tier": "db"}) == "terminate"
    # an administrator's namespace override still lowers it, and a label cannot undo that
    # lowering upwards past what the label asks for
    assert g.action_for("R", "terminate", "dev", {}) == "log"
    assert g.action_for("R", "terminate", "dev", {"team": "legacy"}) == "log"
    assert g.action_for("R", "terminate", "dev", {"tier": "web"}) == "isolate"
    d = g.decide(alert(labels={"team": "legacy"}))
    assert (d.action, d.status) == ("terminate", "pending")


@pytest.mark.parametrize("policy,rec,detail", [
    (Policy(), alert(ns="kube-system"), "namespace kube-system is protected"),
    (Policy(), alert(container=None), "a host process: never acted on"),
    (Policy(mode="audit"), alert(), "audit mode: would terminate shop/web-1"),
    (Policy(mode="audit"), alert(ns=None, pod=None),
     "audit mode: would terminate container c1 (its pod is not known yet: the policy is "
     "applied in full once it is)"),
])
def test_guard_rails_say_why(policy, rec, detail):
    d = Guard(policy, Clock()).decide(rec)
    assert d.detail == detail
    assert d.status in ("skipped", "audit")


def test_a_pod_label_protects_nothing():
    """Before: `mamori.io/protected: "true"` on one's own pod opted it out of the response."""
    d = Guard(Policy(), Clock()).decide(alert(labels={"mamori.io/protected": "true"}))
    assert (d.action, d.status, d.detail) == ("terminate", "pending", "terminate shop/web-1")


def test_protected_labels_is_refused_with_its_line_and_why(tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text("mode: enforce\nprotected_namespaces: [kube-system]\n"
                 "protected_labels: {mamori.io/protected: 'true'}\n")
    with pytest.raises(PolicyError) as e:
        load(str(p))
    assert e.value.problems == [
        f"{p}:3: protected_labels: not supported: pod labels are written by whoever "
        "creates the pod, so a pod could opt itself out of the response with them; protect "
        "namespaces instead (protected_namespaces, or protected_namespace_labels for "
        "namespaces an administrator labels)"]


def test_namespace_labels_protect_once_known():
    clock = Clock()
    g = Guard(Policy(protected_namespace_labels={"mamori.io/protected": "true"},
                     incident_window_seconds=0), clock)
    d = g.decide(alert(ns="payments"))
    assert (d.status, d.local_now) == ("deferred", False)       # nothing done before it is known
    assert d.detail == "terminate payments/web-1: the labels of namespace payments are not " \
                       "known yet"
    assert g.needs_namespace_labels("payments")
    g.set_namespace_labels("payments", {"mamori.io/protected": "true"})
    g.set_namespace_labels("shop", {"team": "shop"})
    assert not g.needs_namespace_labels("payments")
    assert (g.decide(alert(ns="payments")).status, g.decide(alert(ns="payments")).detail) == (
        "skipped", "namespace payments is protected by its label mamori.io/protected=true")
    assert g.recheck(alert(ns="payments")).status == "skipped"
    assert g.decide(alert(ns="shop")).status == "pending"
    clock.t += 61                                                 # cached for a minute
    assert g.needs_namespace_labels("payments")
    # without the API the labels cannot be read: such namespaces count as protected
    g2 = Guard(Policy(protected_namespace_labels={"mamori.io/protected": "true"}), Clock(),
               labels_readable=False)
    d = g2.decide(alert(ns="shop"))
    assert (d.status, d.detail) == ("skipped", "namespace shop: its labels cannot be read "
                                    "without the Kubernetes API, so it is treated as protected")


def test_an_unknown_pod_is_not_unprotected():
    """Before: no pod context meant no labels and no namespace, and the checks passed."""
    rec = alert(ns=None, pod=None)
    d = Guard(Policy(unknown_pod="act"), Clock()).decide(rec)
    assert (d.action, d.status, d.local_now) == ("terminate", "deferred", True)
    assert d.detail == "terminate container c1: its pod is not known yet"
    d = Guard(Policy(unknown_pod="wait"), Clock()).decide(rec)
    assert (d.status, d.local_now) == ("deferred", False)
    # once known, the full policy decides
    g = Guard(Policy(overrides=load_overrides("  - namespace: dev\n    action: log\n")), Clock())
    assert g.recheck(alert(ns="kube-system")).detail == "namespace kube-system is protected"
    assert g.recheck(alert(ns="dev")).detail == "the policy says log for dev/web-1"
    assert (g.recheck(alert(ns="shop")).status, g.recheck(alert(ns="shop")).detail) == (
        "pending", "terminate shop/web-1")


def load_overrides(text):
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write("overrides:\n" + text)
    return load(f.name).overrides


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
                 "  - rule: R\n    action: kill\nunknown_pod: guess\n"
                 "protected_namespace_labels: [a]\n")
    with pytest.raises(PolicyError) as e:
        load(str(p))
    assert e.value.problems == [
        f"{p}:1: mode: must be enforce or audit, not 'enforcing'",
        f"{p}:6: unknown_pod: must be act or wait, not 'guess'",
        f"{p}:2: rate_limit_per_minute: must be a whole number, 0 or more",
        f"{p}:7: protected_namespace_labels: must map label keys to values (strings)",
        f"{p}:4: overrides.0: action must be one of log, isolate, terminate, not 'kill'"]
