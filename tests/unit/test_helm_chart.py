"""deploy/helm/mamori: `helm template` (the real helm, scripts/fetch_helm.sh) renders the same
objects as the plain manifests with the default values; every value a user tunes lands
where the agent reads it, renders objects that validate strictly against the Kubernetes
schemas, and a configuration and policy the agent itself accepts; bad values are refused
by the chart's schema with a message naming the value."""
import os
import subprocess

import kubernetes_validate
import pytest
import yaml

from agent import config
from agent.response.policy import load as load_policy
from agent.rules.ruleset import load as load_rules

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "deploy", "helm", "mamori")
HELM = os.path.join(ROOT, ".tools", "bin", "helm")
HASH = "mamori.io/config-hash"


def helm(*args, check=True):
    assert os.access(HELM, os.X_OK), "helm missing: run scripts/fetch_helm.sh (make test does)"
    p = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def render(*sets, namespace="mamori"):
    args = ["template", "mamori", CHART, "--namespace", namespace]
    for s in sets:
        args += ["--set", s] if not s.startswith("@") else ["--values", s[1:]]
    out = helm(*args).stdout
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(out) if o}


def plain():
    objs = {}
    for name in ("manifests/mamori.yaml", "rbac.yaml"):
        with open(os.path.join(ROOT, "deploy", name)) as f:
            for o in yaml.safe_load_all(f):
                if o:
                    objs[(o["kind"], o["metadata"]["name"])] = o
    return objs


def normalised(o):
    """The object with ConfigMap data parsed (the chart writes the same YAML differently
    laid out) and the chart's own roll-on-change annotation taken out."""
    o = yaml.safe_load(yaml.safe_dump(o))
    if o["kind"] == "ConfigMap":
        o["data"] = {k: yaml.safe_load(v) for k, v in o["data"].items()}
    if o["kind"] == "DaemonSet":
        ann = o["spec"]["template"]["metadata"].pop("annotations", {})
        ann.pop(HASH, None)
        if ann:
            o["spec"]["template"]["metadata"]["annotations"] = ann
    return o


def agent_files(objs, tmp_path):
    """Write the rendered ConfigMaps where the agent would see them; return the config."""
    for key in ("mamori-config", "mamori-policy", "mamori-rules"):
        d = tmp_path / key
        d.mkdir()
        for name, text in objs[("ConfigMap", key)]["data"].items():
            (d / name).write_text(text)
    return tmp_path / "mamori-config" / "mamori.yaml"


def container(objs):
    return objs[("DaemonSet", "mamori")]["spec"]["template"]["spec"]["containers"][0]


def test_chart_lints():
    p = helm("lint", CHART, "--strict")
    assert "1 chart(s) linted, 0 chart(s) failed" in p.stdout


def test_default_values_render_exactly_the_plain_manifests():
    chart, manifests = render("namespace.create=true"), plain()
    assert sorted(chart) == sorted(manifests)
    # helm install --create-namespace makes the namespace; by default the chart does not
    assert sorted(render()) == sorted(k for k in manifests if k[0] != "Namespace")
    for key in manifests:
        assert normalised(chart[key]) == normalised(manifests[key]), key
    ann = chart[("DaemonSet", "mamori")]["spec"]["template"]["metadata"]["annotations"]
    assert len(ann[HASH]) == 16


def test_the_release_namespace_is_used_everywhere():
    objs = render("namespace.create=true", namespace="security")
    assert objs[("Namespace", "security")]["metadata"]["name"] == "security"
    namespaced = [o for (kind, _), o in objs.items()
                  if kind not in ("Namespace", "ClusterRole", "ClusterRoleBinding",
                                  "PriorityClass")]
    assert len(namespaced) == 6
    assert {o["metadata"]["namespace"] for o in namespaced} == {"security"}
    assert objs[("ClusterRoleBinding", "mamori")]["subjects"][0]["namespace"] == "security"
    assert ("Namespace", "security") not in render("namespace.create=false",
                                                   namespace="security")


TEAM_RULE = """\
- rule: "Team: zsh in a container"
  desc: zsh is not in any of our images.
  events: [exec]
  condition: container_workload and proc.name = zsh
  output: "zsh in %k8s.ns/%k8s.pod"
  severity: high
  tactic: TA0002
  technique: T1059.004
"""

TUNED = [
    "policy.mode=enforce",
    "policy.protected_namespaces={kube-system,mamori,payments}",
    "policy.overrides[0].namespace=shop",
    "policy.overrides[0].action=terminate",
    "sensor.ringBytes=64Mi",
    "api.port=6000",
    "api.tls.enabled=true",
    "api.tls.secretName=agent-tls",
    "api.tls.mutual=true",
    "metrics.port=9100",
    "resources.limits.memory=1Gi",
    "priorityClass.name=system-node-critical",
    "priorityClass.create=false",
    "agentConfig.drift.prevent_namespaces={payments}",
    "agentConfig.log_level=debug",
    "image.pullPolicy=Always",
]


def test_every_tuned_value_lands_where_the_agent_reads_it(tmp_path):
    extra = tmp_path / "rules.values.yaml"
    extra.write_text(yaml.safe_dump({"rules": {
        "local.yaml": "[]\n",
        "team.yaml": TEAM_RULE}}))
    objs = render(*TUNED, "@" + str(extra))
    for o in objs.values():
        kubernetes_validate.validate(o, kubernetes_validate.latest_version(), strict=True)
    assert ("PriorityClass", "mamori-node-critical") not in objs

    # the agent's own loaders accept what the chart wrote
    cfg_path = agent_files(objs, tmp_path)
    cfg = config.load(str(cfg_path))
    assert cfg.sensor.ring_bytes == 64 << 20
    assert cfg.api.listen == ("unix:///run/mamori/mamori.sock", "0.0.0.0:6000")
    assert (cfg.api.tls_cert, cfg.api.tls_key, cfg.api.tls_client_ca) == (
        "/etc/mamori/tls/tls.crt", "/etc/mamori/tls/tls.key", "/etc/mamori/tls/ca.crt")
    assert cfg.metrics.listen == "0.0.0.0:9100"
    assert cfg.drift.prevent_namespaces == ("payments",)
    assert cfg.log_level == "debug"
    pol = load_policy(str(tmp_path / "mamori-policy" / "policy.yaml"))
    assert pol.mode == "enforce"
    assert pol.protected_namespaces == ("kube-system", "mamori", "payments")
    assert [(o.namespace, o.action) for o in pol.overrides] == [("shop", "terminate")]
    assert sorted(objs[("ConfigMap", "mamori-rules")]["data"]) == ["local.yaml", "team.yaml"]
    rs, problems = load_rules([os.path.join(ROOT, "rules"), str(tmp_path / "mamori-rules")])
    assert [p for p in problems if p.level == "error"] == []
    assert rs.rule("Team: zsh in a container").technique == "T1059.004"

    # and the pod is wired to match
    ds = objs[("DaemonSet", "mamori")]["spec"]["template"]["spec"]
    c = container(objs)
    assert ds["priorityClassName"] == "system-node-critical"
    assert c["imagePullPolicy"] == "Always"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": 6000,
                                                                     "metrics": 9100}
    svc = objs[("Service", "mamori")]["spec"]
    assert {p["name"]: p["port"] for p in svc["ports"]} == {"grpc": 6000, "metrics": 9100}
    assert c["resources"]["limits"]["memory"] == "1Gi"
    assert {"name": "tls", "mountPath": "/etc/mamori/tls", "readOnly": True} \
        in c["volumeMounts"]
    assert {"name": "tls", "secret": {"secretName": "agent-tls"}} in ds["volumes"]
    # a changed configuration restarts the agents; a changed rule file does not need to
    hashes = [render(*s)[("DaemonSet", "mamori")]["spec"]["template"]["metadata"][
        "annotations"][HASH] for s in ([], ["sensor.ringBytes=32Mi"], ["rules.x\\.yaml=[]"])]
    assert hashes[0] != hashes[1] and hashes[0] == hashes[2]


def test_runtime_state_dirs_become_read_only_host_mounts():
    objs = render("runtime.stateDirs={/run/crio,/var/lib/containers}")
    c = container(objs)
    ds = objs[("DaemonSet", "mamori")]["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["run-crio"] == {"name": "run-crio", "mountPath": "/run/crio",
                                  "readOnly": True}
    assert mounts["var-lib-containers"]["mountPath"] == "/var/lib/containers"
    assert "run-containerd" not in mounts
    assert {"name": "run-crio", "hostPath": {"path": "/run/crio"}} in ds["volumes"]


@pytest.mark.parametrize("value, message", [
    ("policy.mode=kill", 'policy.mode must be one of the following: "enforce", "audit"'),
    ("api.port=70000", "api.port: Must be less than or equal to 65535"),
    ("sensor.ringBytes=lots", "sensor.ringBytes: Does not match pattern"),
    ("rules.notes\\.txt=x", 'rules: Property name of "notes.txt" does not match'),
    ("policy.overrides[0].action=explode", "policy.overrides.0.action must be one of"),
    ("ringBytes=16Mi", "Additional property ringBytes is not allowed"),
])
def test_bad_values_are_refused_with_the_value_named(value, message):
    p = helm("template", "mamori", CHART, "--set", value, check=False)
    assert p.returncode == 1
    assert message in p.stderr, p.stderr
