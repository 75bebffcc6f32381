"""deploy/helm/mamori: `helm template` (the real helm, scripts/fetch_helm.sh) renders the same
objects as the plain manifests with the default values (and the image digest the plain
manifests name); every value a user tunes lands where the agent reads it, renders objects
that validate strictly against the Kubernetes schemas, and a configuration and policy the
agent itself accepts; bad values are refused by the chart's schema with a message naming
the value."""
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
DIGEST = "sha256:" + "0" * 64          # the placeholder of the plain manifests


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
    for name in ("manifests/mamori.yaml", "rbac.yaml", "admission-policy.yaml"):
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
    chart, manifests = render("namespace.create=true", f"image.digest={DIGEST}"), plain()
    assert sorted(chart) == sorted(manifests)
    # helm install --create-namespace makes the namespace; by default the chart does not
    assert sorted(render()) == sorted(k for k in manifests if k[0] != "Namespace")
    for key in manifests:
        assert normalised(chart[key]) == normalised(manifests[key]), key
    ann = chart[("DaemonSet", "mamori")]["spec"]["template"]["metadata"]["annotations"]
    assert len(ann[HASH]) == 16
    # without a digest, by tag
    assert container(render())["image"] == "ghcr.io/mamori/mamori:0.1.0"
    assert container(chart)["image"] == f"ghcr.io/mamori/mamori:0.1.0@{DIGEST}"


def test_the_release_namespace_is_used_everywhere():
    objs = render("namespace.create=true", namespace="security")
    assert objs[("Namespace", "security")]["metadata"]["name"] == "security"
    namespaced = [o for (kind, _), o in objs.items()
                  if kind not in ("Namespace", "ClusterRole", "ClusterRoleBinding",
                                  "PriorityClass", "ValidatingAdmissionPolicy",
                                  "ValidatingAdmissionPolicyBinding")]
    assert len(namespaced) == 7
    assert {o["metadata"]["namespace"] for o in namespaced} == {"security"}
    assert objs[("ClusterRoleBinding", "mamori")]["subjects"][0]["namespace"] == "security"
    # the admission policies name the agent's service account in the release namespace
    for name in ("mamori-agent-pods", "mamori-agent-creates"):
        [cond] = objs[("ValidatingAdmissionPolicy", name)]["spec"]["matchConditions"]
        assert cond["expression"] == \
            "request.userInfo.username == 'system:serviceaccount:security:mamori'"
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
    "api.adminIdentities={ops-admin}",
    "networkPolicy.apiServer.cidrs={10.0.0.10/32}",
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
    assert cfg.api.admin_identities == ("ops-admin",)
    assert cfg.metrics.listen == "127.0.0.1:9100"       # the file; the pod IP comes from:
    [agent] = objs[("DaemonSet", "mamori")]["spec"]["template"]["spec"]["containers"]
    assert agent["args"][-2:] == ["--metrics-listen", "$(POD_IP):9100"]
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP",
                                                          "apiVersion": "v1"}}} in agent["env"] \
        or {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} \
        in agent["env"]
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
    # the TCP listener is on: its port may be reached from the clients NetworkPolicy names
    np = objs[("NetworkPolicy", "mamori")]["spec"]
    assert np["ingress"][1] == {
        "from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {
            "mamori.io/client": "true"}}}],
        "ports": [{"port": "grpc", "protocol": "TCP"}]}
    assert np["egress"][1]["to"] == [{"ipBlock": {"cidr": "10.0.0.10/32"}}]
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


def test_grpc_is_off_tcp_unless_mutual_tls_is_on():
    objs = render()
    c = container(objs)
    assert [p["name"] for p in c["ports"]] == ["metrics"]
    assert [p["name"] for p in objs[("Service", "mamori")]["spec"]["ports"]] == ["metrics"]
    assert [r["ports"] for r in objs[("NetworkPolicy", "mamori")]["spec"]["ingress"]] == [
        [{"port": "metrics", "protocol": "TCP"}]]
    cfg = yaml.safe_load(objs[("ConfigMap", "mamori-config")]["data"]["mamori.yaml"])
    assert cfg["api"] == {"listen": ["unix:///run/mamori/mamori.sock"]}


def test_the_security_context_and_what_can_be_turned_off():
    c = container(render())
    assert c["securityContext"] == {
        "privileged": False, "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True, "seccompProfile": {"type": "RuntimeDefault"},
        "capabilities": {"drop": ["ALL"], "add": [
            "BPF", "PERFMON", "SYS_ADMIN", "SYS_RESOURCE", "SYS_PTRACE", "NET_ADMIN", "KILL",
            "DAC_READ_SEARCH"]}}
    local = render("seccompProfile.type=Localhost",
                   "seccompProfile.localhostProfile=profiles/mamori.json")
    assert container(local)["securityContext"]["seccompProfile"] == {
        "type": "Localhost", "localhostProfile": "profiles/mamori.json"}
    off = render("admissionPolicy.enabled=false", "networkPolicy.enabled=false")
    assert not [k for k in off if k[0] in ("ValidatingAdmissionPolicy",
                                           "ValidatingAdmissionPolicyBinding",
                                           "NetworkPolicy")]


@pytest.mark.parametrize("value, message", [
    ("api.tls.mutual=true", "Additional property mutual is not allowed"),
    ("image.digest=latest", "image.digest: Does not match pattern"),
    ("policy.protected_labels.x=y", "Additional property protected_labels is not allowed"),
    ("policy.unknown_pod=maybe", 'policy.unknown_pod must be one of the following: "act", '
                                 '"wait"'),
    ("seccompProfile.type=Localhost", "localhostProfile is required"),
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
