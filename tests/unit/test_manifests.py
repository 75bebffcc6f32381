"""deploy/: every object validates against the Kubernetes schemas (offline, strict), the
config shipped in the ConfigMap is a valid agent configuration, the DaemonSet runs on every
node with the node name from the downward API, and the ServiceAccount it uses is the one
the RBAC binds."""
import os

import kubernetes_validate
import yaml

from agent import config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")


def _objects():
    out = []
    for name in ("manifests/mamori.yaml", "rbac.yaml"):
        with open(os.path.join(DEPLOY, name)) as f:
            out += [d for d in yaml.safe_load_all(f) if d]
    return out


def test_every_object_validates_strictly():
    version = kubernetes_validate.latest_version()
    objs = _objects()
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "ConfigMap",
                     "ConfigMap", "DaemonSet", "Namespace", "PriorityClass", "Service",
                     "ServiceAccount"]
    for o in objs:
        kubernetes_validate.validate(o, version, strict=True)


def test_the_shipped_configuration_and_policy_load(tmp_path):
    objs = {(o["kind"], o["metadata"]["name"]): o for o in _objects()}
    cfg_text = objs[("ConfigMap", "mamori-config")]["data"]["mamori.yaml"]
    p = tmp_path / "mamori.yaml"
    p.write_text(cfg_text)
    cfg = config.load(str(p))
    assert cfg.kubernetes.mode == "in-cluster"
    assert cfg.metrics.listen == "0.0.0.0:9464"
    from agent.response.policy import load as load_policy
    pol = tmp_path / "policy.yaml"
    pol.write_text(objs[("ConfigMap", "mamori-policy")]["data"]["policy.yaml"])
    assert load_policy(str(pol)).mode == "audit"
    rules = yaml.safe_load(objs[("ConfigMap", "mamori-rules")]["data"]["local.yaml"])
    assert rules == []


def test_daemonset_shape():
    objs = {(o["kind"], o["metadata"]["name"]): o for o in _objects()}
    ds = objs[("DaemonSet", "mamori")]["spec"]["template"]["spec"]
    assert ds["hostPID"] is True
    assert ds["tolerations"] == [{"operator": "Exists"}]
    c = ds["containers"][0]
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} \
        in c["env"]
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/sys/kernel/btf", "/lib/modules", "/usr/src", "/sys/fs/cgroup"} <= mounts
    assert ds["serviceAccountName"] == objs[("ClusterRoleBinding", "mamori")]["subjects"][0][
        "name"]
    assert objs[("Service", "mamori")]["spec"]["clusterIP"] == "None"    # every node's agent
