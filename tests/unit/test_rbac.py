"""deploy/rbac.yaml grants exactly the verbs the agent's code uses: the Kubernetes client
calls in agent/ are read and turned into (group, resource, verb)."""
import os
import re

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# official client method -> (API group, resource, verb)
CALLS = {
    "list_pod_for_all_namespaces": ("", "pods", "list"),
    "watch": ("", "pods", "watch"),              # Watch().stream(list_pod_for_all_namespaces)
    "delete_namespaced_pod": ("", "pods", "delete"),
    "patch_namespaced_pod": ("", "pods", "patch"),
    "read_namespaced_pod": ("", "pods", "get"),
    "read_namespace": ("", "namespaces", "get"),
    "create_namespaced_event": ("", "events", "create"),
    "read_namespaced_replica_set": ("apps", "replicasets", "get"),
    "create_namespaced_network_policy": ("networking.k8s.io", "networkpolicies", "create"),
    "patch_namespaced_network_policy": ("networking.k8s.io", "networkpolicies", "patch"),
    "read_namespaced_network_policy": ("networking.k8s.io", "networkpolicies", "get"),
}


def _call_args(src: str, at: int) -> str:
    """The argument text of the call whose name ends at `at` (up to its closing paren)."""
    if at >= len(src) or src[at] != "(":
        return ""
    depth = 0
    for i in range(at, len(src)):
        depth += {"(": 1, ")": -1}.get(src[i], 0)
        if depth == 0:
            return src[at + 1:i]
    return src[at + 1:]


def used():
    out = set()
    for dirpath, _, files in os.walk(os.path.join(ROOT, "agent")):
        if "gen" in dirpath.split(os.sep):
            continue
        for f in files:
            if not f.endswith(".py"):
                continue
            src = open(os.path.join(dirpath, f)).read()
            for m in re.finditer(r"self\.(?:core|apps|net)\.(\w+)", src):
                out.add(CALLS[m.group(1)])
                # a list call with watch=True is a watch of that resource
                if m.group(1).startswith("list_") and "watch=True" in _call_args(src, m.end()):
                    group, resource, _ = CALLS[m.group(1)]
                    out.add((group, resource, "watch"))
            if "watch.Watch()" in src:
                out.add(CALLS["watch"])
    return out


def granted():
    out = set()
    for doc in yaml.safe_load_all(open(os.path.join(ROOT, "deploy", "rbac.yaml"))):
        if doc["kind"] == "ClusterRole":
            for r in doc["rules"]:
                for g in r["apiGroups"]:
                    for res in r["resources"]:
                        for v in r["verbs"]:
                            out.add((g, res, v))
    return out


def test_rbac_grants_exactly_what_the_code_uses():
    assert used() == granted()
