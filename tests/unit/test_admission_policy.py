"""deploy/admission-policy.yaml (issue 20, finding 13): the ValidatingAdmissionPolicies that
narrow what one node's agent token may do. There is no API server here, so the policies are
applied the way kube-apiserver applies them — match rules, matchConditions, variables in
order, validations, failurePolicy Fail on an evaluation error — with a CEL implementation
(cel-python), to requests of the shapes the API server builds: the pods before and after the
agent's own patches (made by KubeActions against the API double), the NetworkPolicy and the
Event the agent creates, and what an attacker holding a node's token would send instead.

What this cannot show: the API server's CEL type checking of these expressions against the
Pod schema (cel-python is untyped) and the token's node claim as a real API server fills it
in; the claim's key is the one Kubernetes documents (a TokenReview of a pod-bound token
shows `authentication.kubernetes.io/node-name` in `user.extra`)."""
import copy
import os

import celpy
import kubernetes_validate
import pytest
import yaml

from agent.context.pods import api_client
from agent.response.kube_actions import NETPOL_NAME, QUARANTINE_LABEL, KubeActions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POLICY_FILE = os.path.join(ROOT, "deploy", "admission-policy.yaml")
AGENT = "system:serviceaccount:mamori:mamori"
NODE_KEY = "authentication.kubernetes.io/node-name"


def objects():
    with open(POLICY_FILE) as f:
        return [o for o in yaml.safe_load_all(f) if o]


# -- the API server's part, as documented for ValidatingAdmissionPolicy -------------------
class Policy:
    def __init__(self, obj: dict):
        self.obj = obj
        self.env = celpy.Environment()
        self.spec = obj["spec"]

    def _eval(self, expr: str, activation: dict):
        prog = self.env.program(self.env.compile(expr))
        out = prog.evaluate(activation)
        if isinstance(out, celpy.CELEvalError):
            raise out
        return out

    def matches(self, request: dict) -> bool:
        res = request["resource"]
        for r in self.spec["matchConstraints"]["resourceRules"]:
            if (res["group"] in r["apiGroups"] and res["version"] in r["apiVersions"] and
                    request["operation"] in r["operations"] and
                    (res["resource"] + ("/" + request["subResource"]
                                        if request.get("subResource") else "")) in
                    r["resources"]):
                return True
        return False

    def admit(self, request: dict, obj, old) -> tuple[bool, str]:
        """(allowed, message). Not matched: allowed with message 'not matched'."""
        if not self.matches(request):
            return True, "not matched"
        act = {"request": celpy.json_to_cel(request), "object": celpy.json_to_cel(obj),
               "oldObject": celpy.json_to_cel(old)}
        try:
            for c in self.spec.get("matchConditions", ()):
                if not self._eval(c["expression"], act):
                    return True, "not matched"
            variables = celpy.celtypes.MapType({})
            for v in self.spec.get("variables", ()):         # in order, each sees the last
                variables[celpy.celtypes.StringType(v["name"])] = self._eval(
                    v["expression"], {**act, "variables": variables})
            act["variables"] = variables
            for v in self.spec["validations"]:
                if not self._eval(v["expression"], act):
                    if "messageExpression" in v:
                        return False, str(self._eval(v["messageExpression"], act))
                    return False, " ".join(v["message"].split())
        except Exception as e:  # noqa: BLE001 - failurePolicy: Fail
            assert self.spec["failurePolicy"] == "Fail"
            return False, f"evaluation error: {e}"
        return True, "allowed"


def policy(name: str) -> Policy:
    [p] = [o for o in objects() if o["kind"] == "ValidatingAdmissionPolicy" and
           o["metadata"]["name"] == name]
    return Policy(p)


def request(operation, resource, obj, old, user=AGENT, node="node-1", group="",
            extra=None):
    md = (obj or old)["metadata"]
    if extra is None:
        extra = {"authentication.kubernetes.io/credential-id": ["JTI=4d0e"],
                 "authentication.kubernetes.io/pod-name": ["mamori-x2k9"],
                 "authentication.kubernetes.io/pod-uid": ["6f1c"]}
        if node is not None:
            extra[NODE_KEY] = [node] if isinstance(node, str) else node
    req = {"uid": "705ab4f5", "operation": operation, "namespace": md.get("namespace", ""),
           "name": md.get("name", ""),
           "kind": {"group": group, "version": "v1", "kind": (obj or old)["kind"]},
           "resource": {"group": group, "version": "v1", "resource": resource},
           "userInfo": {"username": user, "uid": "1f2e", "groups": [
               "system:serviceaccounts", "system:serviceaccounts:mamori",
               "system:authenticated"]}}
    if extra:
        req["userInfo"]["extra"] = extra
    return req


# -- the objects, made by the agent's own code against the API double --------------------
@pytest.fixture
def made(kube):
    """Pods before and after the agent's quarantine and release patches, and the
    NetworkPolicy and Event it creates, as the API double stores them."""
    for node, name in (("node-1", "web-1"), ("node-2", "web-2")):
        kube.put_pod(kube.make_pod("shop", name, node, {"app": {"id": "containerd://c"}},
                                   labels={"app": "web"}, owner=("ReplicaSet", "web-7d9")))
    k = KubeActions(api_client("kubeconfig", kube.kubeconfig), backoff=(0.01,))
    before = copy.deepcopy(kube.pods[("shop", "web-1")])
    assert k.quarantine("shop", "web-1")[0] == "done"
    quarantined = copy.deepcopy(kube.pods[("shop", "web-1")])
    assert k.release("shop", "web-1")[0] == "done"
    released = copy.deepcopy(kube.pods[("shop", "web-1")])
    assert k.record_event("shop", "web-1", "u1", "MamoriTerminated", "rule R")[0] == "done"
    return {"before": before, "quarantined": quarantined, "released": released,
            "other_node": copy.deepcopy(kube.pods[("shop", "web-2")]),
            "netpol": copy.deepcopy(kube.networkpolicies[("shop", NETPOL_NAME)]),
            "event": copy.deepcopy(kube.events[0])}


def pods_admit(obj, old, op="UPDATE", **kw):
    return policy("mamori-agent-pods").admit(request(op, "pods", obj, old, **kw), obj, old)


def test_every_object_validates_strictly_and_names_the_code_s_label():
    objs = objects()
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("ValidatingAdmissionPolicy", "mamori-agent-pods"),
        ("ValidatingAdmissionPolicyBinding", "mamori-agent-pods"),
        ("ValidatingAdmissionPolicy", "mamori-agent-creates"),
        ("ValidatingAdmissionPolicyBinding", "mamori-agent-creates")]
    for o in objs:
        assert o["apiVersion"] == "admissionregistration.k8s.io/v1"
        kubernetes_validate.validate(o, kubernetes_validate.latest_version(), strict=True)
    for b in objs[1::2]:
        assert b["spec"]["validationActions"] == ["Deny"]
    text = open(POLICY_FILE).read()
    assert QUARANTINE_LABEL == "mamori.io/quarantine" and f"'{QUARANTINE_LABEL}'" in text
    assert f"'{NETPOL_NAME}'" in text
    assert f"'{NODE_KEY}'" in text


def test_every_expression_compiles():
    env = celpy.Environment()
    n = 0
    for o in objects():
        spec = o.get("spec", {})
        for section in ("matchConditions", "variables", "validations"):
            for item in spec.get(section, ()):
                for key in ("expression", "messageExpression"):
                    if key in item:
                        env.compile(item[key])
                        n += 1
    assert n == 11


def test_the_agent_may_quarantine_and_release_a_pod_on_its_own_node(made):
    assert made["quarantined"]["metadata"]["labels"] == {"app": "web", QUARANTINE_LABEL: "true"}
    assert pods_admit(made["quarantined"], made["before"]) == (True, "allowed")
    assert pods_admit(made["released"], made["quarantined"]) == (True, "allowed")


def test_the_agent_may_delete_only_pods_on_its_own_node(made):
    assert pods_admit(None, made["before"], op="DELETE") == (True, "allowed")
    assert pods_admit(None, made["other_node"], op="DELETE") == (
        False, "the Mamori agent on node node-1 may only change pods on its own node")


def test_a_pod_on_another_node_is_refused(made):
    other = made["other_node"]
    new = copy.deepcopy(other)
    new["metadata"]["labels"][QUARANTINE_LABEL] = "true"
    assert pods_admit(new, other) == (
        False, "the Mamori agent on node node-1 may only change pods on its own node")
    unscheduled = copy.deepcopy(made["before"])
    del unscheduled["spec"]["nodeName"]
    assert pods_admit(unscheduled, unscheduled, op="DELETE")[0] is False


@pytest.mark.parametrize("extra,node", [
    ({}, None),                                  # no extra at all
    (None, None),                                # extras, but no node name
    (None, ["node-1", "node-2"]),                # two node names
    (None, ""),                                  # an empty one
])
def test_a_token_without_one_node_name_may_change_no_pod(made, extra, node):
    assert pods_admit(made["quarantined"], made["before"], extra=extra, node=node) == (
        False, "the Mamori agent's token names no node (authentication.kubernetes.io/"
               "node-name): it may change no pod")


def _changed(pod, fn):
    new = copy.deepcopy(pod)
    fn(new)
    return new


ONLY_LABEL = "the Mamori agent may only set the label mamori.io/quarantine=true on a pod, " \
             "or remove it"


@pytest.mark.parametrize("what,change", [
    ("another label changed", lambda p: p["metadata"]["labels"].update(app="evil")),
    ("another label added", lambda p: p["metadata"]["labels"].update(team="x")),
    ("another label removed", lambda p: p["metadata"]["labels"].pop("app")),
    ("the quarantine label with another value",
     lambda p: p["metadata"]["labels"].update({QUARANTINE_LABEL: "false"})),
    ("an annotation added", lambda p: p["metadata"].setdefault("annotations", {}).update(
        {"x": "y"})),
    ("the image changed", lambda p: p["spec"]["containers"][0].update(image="evil:1")),
    ("a toleration added", lambda p: p["spec"].setdefault("tolerations", []).append(
        {"operator": "Exists"})),
    ("the owner removed", lambda p: p["metadata"].pop("ownerReferences")),
    ("a finalizer added", lambda p: p["metadata"].setdefault("finalizers", []).append("x")),
])
def test_any_other_change_to_a_pod_is_refused(made, what, change):
    old = made["before"]
    assert pods_admit(_changed(old, change), old) == (False, ONLY_LABEL), what


def test_other_users_are_not_concerned(made):
    new = _changed(made["other_node"], lambda p: p["metadata"]["labels"].update(app="v2"))
    assert pods_admit(new, made["other_node"],
                      user="system:serviceaccount:kube-system:replicaset-controller") == (
        True, "not matched")
    # another namespace's service account named mamori is not the agent either
    assert pods_admit(new, made["other_node"],
                      user="system:serviceaccount:shop:mamori") == (True, "not matched")
    # a subresource (pods/status) is not what the policy (or the RBAC) covers
    req = request("UPDATE", "pods", new, made["other_node"])
    req["subResource"] = "status"
    assert policy("mamori-agent-pods").admit(req, new, made["other_node"]) == (
        True, "not matched")


def creates_admit(obj, resource, group=""):
    return policy("mamori-agent-creates").admit(
        request("CREATE", resource, obj, None, group=group), obj, None)


def test_the_agent_may_create_only_its_quarantine_policy_and_events(made):
    np = made["netpol"]
    assert creates_admit(np, "networkpolicies", "networking.k8s.io") == (True, "allowed")
    assert creates_admit(made["event"], "events") == (True, "allowed")
    np_msg = ("the Mamori agent may only create the NetworkPolicy mamori-quarantine that "
              "denies all traffic of pods labelled mamori.io/quarantine=true")
    for bad in (
            _changed(np, lambda o: o["metadata"].update(name="deny-everything")),
            _changed(np, lambda o: o["spec"].update(podSelector={})),   # every pod
            _changed(np, lambda o: o["spec"]["podSelector"].update(
                matchExpressions=[{"key": "app", "operator": "Exists"}])),
            _changed(np, lambda o: o["spec"].update(egress=[{}])),     # allow all egress
            _changed(np, lambda o: o["spec"].update(policyTypes=["Ingress"]))):
        assert creates_admit(bad, "networkpolicies", "networking.k8s.io") == (False, np_msg)
    ev_msg = "the Mamori agent may only record its own Events (source mamori) on pods"
    for bad in (
            _changed(made["event"], lambda o: o["source"].update(component="kubelet")),
            _changed(made["event"], lambda o: o.pop("source")),
            _changed(made["event"], lambda o: o.update(reason="BackOff")),
            _changed(made["event"], lambda o: o["involvedObject"].update(kind="Node"))):
        assert creates_admit(bad, "events") == (False, ev_msg)
