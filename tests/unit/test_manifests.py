"""deploy/: every object validates against the Kubernetes schemas (offline, strict), the
config shipped in the ConfigMap is a valid agent configuration, the DaemonSet runs on every
node with the node name from the downward API, and the ServiceAccount it uses is the one
the RBAC binds. Hardened (issue 20, findings 10 and 15): gRPC on the unix socket only, a
NetworkPolicy, the image by digest, no privilege escalation, a read-only root with writable
mounts only where the agent writes, the runtime's seccomp profile."""
import os
import re

import kubernetes_validate
import yaml

from agent import config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")


def _objects():
    out = []
    for name in ("manifests/mamori.yaml", "rbac.yaml", "admission-policy.yaml"):
        with open(os.path.join(DEPLOY, name)) as f:
            out += [d for d in yaml.safe_load_all(f) if d]
    return out


def test_every_object_validates_strictly():
    version = kubernetes_validate.latest_version()
    objs = _objects()
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "ConfigMap",
                     "ConfigMap", "DaemonSet", "Namespace", "NetworkPolicy", "PriorityClass",
                     "Service", "ServiceAccount", "ValidatingAdmissionPolicy",
                     "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
                     "ValidatingAdmissionPolicyBinding"]
    for o in objs:
        kubernetes_validate.validate(o, version, strict=True)


def test_the_shipped_configuration_and_policy_load(tmp_path):
    objs = {(o["kind"], o["metadata"]["name"]): o for o in _objects()}
    cfg_text = objs[("ConfigMap", "mamori-config")]["data"]["mamori.yaml"]
    p = tmp_path / "mamori.yaml"
    p.write_text(cfg_text)
    cfg = config.load(str(p))
    assert cfg.kubernetes.mode == "in-cluster"
    # the file says loopback; the DaemonSet's --metrics-listen puts it on the pod IP only
    assert cfg.metrics.listen == "127.0.0.1:9464"
    assert cfg.api.listen == ("unix:///run/mamori/mamori.sock",)   # no TCP without mTLS
    assert (cfg.api.tls_cert, cfg.api.tls_key, cfg.api.tls_client_ca) == ("", "", "")
    assert cfg.alerts.journal_dir == "/var/lib/mamori/journal"
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
    assert c["env"] == [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/sys/kernel/btf", "/lib/modules", "/usr/src", "/sys/fs/cgroup"} <= mounts
    assert ds["serviceAccountName"] == objs[("ClusterRoleBinding", "mamori")]["subjects"][0][
        "name"]
    assert objs[("Service", "mamori")]["spec"]["clusterIP"] == "None"    # every node's agent


CAPS = ["BPF", "PERFMON", "SYS_ADMIN", "SYS_RESOURCE", "SYS_PTRACE", "NET_ADMIN", "KILL",
        "DAC_READ_SEARCH"]


def test_the_agent_container_is_hardened():
    objs = {(o["kind"], o["metadata"]["name"]): o for o in _objects()}
    ds = objs[("DaemonSet", "mamori")]["spec"]["template"]["spec"]
    [c] = ds["containers"]
    assert c["securityContext"] == {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "capabilities": {"drop": ["ALL"], "add": CAPS}}
    # "SYS_ADMIN", as Kubernetes spells capabilities: the API refuses the literal
    # "CAP_SYS_ADMIN" together with allowPrivilegeEscalation: false
    assert "CAP_SYS_ADMIN" not in c["securityContext"]["capabilities"]["add"]
    assert "hostNetwork" not in ds and ds["hostPID"] is True
    # by digest; the user puts the real one in
    assert re.fullmatch(r"ghcr\.io/mamori/mamori:0\.1\.0@sha256:[0-9a-f]{64}", c["image"])
    # writable: only the journal and state, the socket's directory, and the cgroup tree
    # (cgroup.kill, isolation); everything else the agent sees is read-only
    volumes = {v["name"]: v for v in ds["volumes"]}
    writable = sorted(m["mountPath"] for m in c["volumeMounts"]
                      if not m.get("readOnly") and "hostPath" in volumes[m["name"]])
    assert writable == ["/run/mamori", "/sys/fs/cgroup", "/var/lib/mamori"]
    assert {m["mountPath"] for m in c["volumeMounts"] if "configMap" in volumes[m["name"]]} \
        == {"/etc/mamori/mamori.yaml", "/etc/mamori/rules.d", "/etc/mamori/policy"}
    # gRPC is not on TCP: no port for it, in the pod or the Service
    assert c["ports"] == [{"name": "metrics", "containerPort": 9464}]
    assert objs[("Service", "mamori")]["spec"]["ports"] == [
        {"name": "metrics", "port": 9464, "targetPort": "metrics"}]


def test_the_network_policy_lets_in_only_metrics_and_out_only_dns_and_the_api():
    objs = {(o["kind"], o["metadata"]["name"]): o for o in _objects()}
    np = objs[("NetworkPolicy", "mamori")]
    assert np["metadata"]["namespace"] == "mamori"
    assert np["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "mamori"}}
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert np["spec"]["ingress"] == [{
        "from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"port": "metrics", "protocol": "TCP"}]}]
    assert np["spec"]["egress"] == [
        {"to": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": "kube-system"}},
                 "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
         "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
         "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}]
    # the named port exists on the agent's container
    ds = objs[("DaemonSet", "mamori")]["spec"]["template"]["spec"]
    assert "metrics" in {p["name"] for p in ds["containers"][0]["ports"]}


def _lock():
    """name -> (version, hashes) from deploy/requirements.lock."""
    pins, current = {}, None
    with open(os.path.join(DEPLOY, "requirements.lock")) as f:
        for line in f:
            m = re.match(r"^([A-Za-z0-9._-]+)==(\S+) \\$", line)
            if m:
                current = re.sub(r"[-_.]+", "-", m.group(1)).lower()
                pins[current] = (m.group(2), [])
                continue
            m = re.match(r"^\s+--hash=sha256:([0-9a-f]{64})", line)
            if m:
                pins[current][1].append(m.group(1))
    return pins


def test_the_image_installs_only_pinned_hash_checked_packages():
    import configparser
    import tomllib

    from packaging.requirements import Requirement
    pins = _lock()
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    wanted = [Requirement(r) for r in cfg["options"]["install_requires"].split("\n") if r]
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        wanted += [Requirement(r) for r in tomllib.load(f)["build-system"]["requires"]]
    for req in wanted:
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is not in deploy/requirements.lock: " \
                             "run deploy/update-lock.sh"
        assert req.specifier.contains(pins[name][0], prereleases=True), \
            f"{req.name}=={pins[name][0]} is outside setup.cfg's {req.specifier}"
    assert len(pins) >= len(wanted)
    assert all(hashes for _, hashes in pins.values()), "a pin without --hash"
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        docker = " ".join(f.read().replace("\\\n", " ").split())
    assert ("pip install --no-cache-dir --require-hashes --no-deps --ignore-installed "
            "--only-binary :all: -r /tmp/requirements.lock") in docker
    # the package itself: nothing downloaded, built with the pinned setuptools and wheel
    assert "pip install --no-cache-dir --no-deps --no-build-isolation --no-index ." in docker
    assert docker.count("pip install") == 2
