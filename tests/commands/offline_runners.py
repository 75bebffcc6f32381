"""Runners for the commands that need no agent: `mamori rules check`, `helm` (rendered with
`helm template`, no cluster), `kubectl apply -f` (offline), `make gen` / `make proto` (in a
scratch copy of the tree), and the check of what the test's CANNOT_RUN lists."""
from __future__ import annotations

import filecmp
import os
import re
import shutil
import time

import kubernetes_validate
import yaml

from agent import config as configmod
from agent.response.policy import load as load_policy
from agent.rules.ruleset import load as load_rules
from doc_commands import ROOT, DocCommand, fill
from readme_bed import HELM, Bed, flag_values, ok, program, rules_summary, run

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass",
                  "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
                  "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding",
                  "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
                  "CustomResourceDefinition", "StorageClass", "PersistentVolume",
                  "RuntimeClass", "IngressClass", "APIService", "CSIDriver"}
NAMESPACED = {"ServiceAccount", "ConfigMap", "Secret", "Service", "DaemonSet", "Deployment",
              "StatefulSet", "ReplicaSet", "Pod", "Job", "CronJob", "Role", "RoleBinding",
              "NetworkPolicy", "PodDisruptionBudget", "Ingress", "ResourceQuota",
              "LimitRange", "PersistentVolumeClaim", "Lease", "Endpoints"}
BUILTIN_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}


def check_what_cannot_run(cmd: DocCommand, bed: Bed) -> None:
    """A command CANNOT_RUN lists, checked as far as it goes: a make target exists and has
    its recipe (`make -n`); a script exists, runs (`--help`) and has the options shown."""
    words = fill(cmd, bed.values())
    if words[0] == "make":
        argv = program(["make", "-n"] + words[1:], cmd)
        out = "\n".join(ok(run(argv), argv))
        assert out.strip(), f"`{' '.join(argv)}` has no recipe"
        if words[1] == "test":
            assert "pytest" in out, out
        return
    script = os.path.join(ROOT, words[1])
    assert os.path.isfile(script), f"{cmd.id}: no {words[1]}"
    argv = program([words[0], words[1], "--help"], cmd)
    help_text = "\n".join(ok(run(argv), argv))
    for w in words[2:]:
        if w.startswith("-"):
            assert re.search(rf"(^|\s){re.escape(w.split('=')[0])}\b", help_text), (
                f"{cmd.id}: {w} is not an option of {words[1]}:\n{help_text}")


def run_rules_check(cmd: DocCommand, bed: Bed) -> None:
    words = fill(cmd, bed.values())
    paths = words[3:]
    if not paths:                    # named without files (`mamori rules check`): the defaults
        paths = ["rules/"]
    argv = program(words[:3] + paths, cmd)
    p = run(argv)
    n, problems, summary = rules_summary(paths)
    assert ok(p, argv) == problems + [summary]
    if bed.my_rules in paths:
        assert n == rules_summary(["rules/"])[0] + 1          # the team's rule came in


def run_helm(cmd: DocCommand, bed: Bed) -> None:
    words = fill(cmd, bed.values())
    assert words[1] in ("install", "template"), words
    assert os.access(HELM, os.X_OK), "helm missing: `make helm` (make test runs it)"
    argv = [HELM, "template"] + words[2:]        # no cluster here: render what it installs
    out = "\n".join(ok(run(argv, timeout=60), argv))
    objs = [o for o in yaml.safe_load_all(out) if o]
    assert objs, out
    version = kubernetes_validate.latest_version()
    for o in objs:
        kubernetes_validate.validate(o, version, strict=True)
    ns = (flag_values(words, "--namespace", "-n") or ["default"])[-1]
    created = set(BUILTIN_NAMESPACES)
    if words[1] == "install" and "--create-namespace" in words:
        rendered = [o for o in objs if o["kind"] == "Namespace"
                    and o["metadata"]["name"] == ns]
        assert not rendered, (f"{cmd.id}: helm install --create-namespace makes namespace "
                              f"{ns} and the chart renders it too: the install fails")
        created.add(ns)
    problems = apply_order_problems([(o, "the chart") for o in objs], created, ns,
                                    helm_sorted=True)
    assert not problems, f"{cmd.id}:\n" + "\n".join(problems)

    by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    work = bed.dir("helm")
    for key in ("mamori-config", "mamori-policy", "mamori-rules"):
        d = os.path.join(work, key)
        os.makedirs(d)
        for name, text in by[("ConfigMap", key)]["data"].items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
    configmod.load(os.path.join(work, "mamori-config", "mamori.yaml"))
    policy = load_policy(os.path.join(work, "mamori-policy", "policy.yaml"))
    sets = dict(s.partition("=")[::2] for s in flag_values(words, "--set"))
    if "policy.mode" in sets:
        assert policy.mode == sets["policy.mode"]
    if "image.digest" in sets:
        image = by[("DaemonSet", "mamori")]["spec"]["template"]["spec"]["containers"][0][
            "image"]
        assert image.endswith("@" + sets["image.digest"]), image
    rules_data = by[("ConfigMap", "mamori-rules")]["data"]
    for s in flag_values(words, "--set-file"):
        key, _, path = s.partition("=")
        if key.startswith("rules."):
            name = key[len("rules."):].replace("\\.", ".")
            with open(path) as f:
                assert rules_data[name] == f.read(), name
    rs, problems = load_rules([os.path.join(ROOT, "rules"),
                               os.path.join(work, "mamori-rules")])
    assert rs is not None, [str(p) for p in problems]


def apply_order_problems(objs: list[tuple[dict, str]], created: set[str],
                         default_ns: str = "default", helm_sorted: bool = False) -> list[str]:
    """What a fresh cluster refuses: a namespaced object before its namespace exists.
    kubectl applies in the order given (file by file, object by object); helm installs
    namespaces first."""
    problems = []
    created = set(created)
    order = sorted(objs, key=lambda x: x[0]["kind"] != "Namespace") if helm_sorted else objs
    for o, source in order:
        kind, meta = o["kind"], o["metadata"]
        assert kind in CLUSTER_SCOPED | NAMESPACED, (
            f"{kind}: add it to CLUSTER_SCOPED or NAMESPACED in this test")
        if kind == "Namespace":
            created.add(meta["name"])
        elif kind in NAMESPACED:
            ns = meta.get("namespace", default_ns)
            if ns not in created:
                problems.append(f"{source}: {kind} {ns}/{meta['name']}: namespace {ns} "
                                "does not exist yet when it is applied (NotFound)")
    return problems


def run_kubectl_apply(cmd: DocCommand, bed: Bed) -> None:
    words = fill(cmd, bed.values())
    files, recursive, ns, i = [], False, "default", 2
    while i < len(words):
        w = words[i]
        if w in ("-f", "--filename"):
            files.append(words[i + 1])
            i += 2
            continue
        if w in ("-R", "--recursive"):
            recursive = True
        elif w in ("-n", "--namespace"):
            ns = words[i + 1]
            i += 1
        else:
            raise AssertionError(f"{cmd.id}: kubectl apply {w}: not understood offline "
                                 "(teach run_kubectl_apply)")
        i += 1
    assert files, cmd.id
    paths = []
    for f in files:
        p = os.path.join(ROOT, f)
        if os.path.isdir(p):
            walk = os.walk(p) if recursive else [(p, [], os.listdir(p))]
            paths += sorted(os.path.join(d, n) for d, _, names in walk for n in names
                            if n.endswith((".yaml", ".yml", ".json")))
        else:
            assert os.path.isfile(p), f"{cmd.id}: no such file {f}"
            paths.append(p)
    version = kubernetes_validate.latest_version()
    objs = []
    for p in paths:
        with open(p) as fh:
            for o in yaml.safe_load_all(fh):
                if o:
                    kubernetes_validate.validate(o, version, strict=True)
                    objs.append((o, os.path.relpath(p, ROOT)))
    assert objs, cmd.id
    problems = apply_order_problems(objs, BUILTIN_NAMESPACES, ns)
    assert not problems, (f"{cmd.id}: on a fresh cluster kubectl would fail:\n"
                          + "\n".join(problems))


def run_generator(cmd: DocCommand, bed: Bed) -> None:
    """`make gen`, `make proto`, the coverage matrix: run in a scratch copy of the tree (they
    write into it); every file they write must equal the committed one."""
    work = bed.dir("tree")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("Makefile", "setup.cfg", "pyproject.toml"):
        shutil.copy2(os.path.join(ROOT, name), work)
    for name in ("agent", "bpf", "proto", "scripts", "rules", "config", "tests", "docs"):
        shutil.copytree(os.path.join(ROOT, name), os.path.join(work, name), ignore=ignore)
    for name in (".venv", ".tools"):
        if os.path.exists(os.path.join(ROOT, name)):
            os.symlink(os.path.join(ROOT, name), os.path.join(work, name))

    def snapshot():
        out = {}
        for d, dirs, names in os.walk(work):
            dirs[:] = [x for x in dirs if x not in (".venv", ".tools", "__pycache__")]
            for n in names:
                p = os.path.join(d, n)
                out[os.path.relpath(p, work)] = os.stat(p).st_mtime_ns
        return out
    before = snapshot()
    time.sleep(0.01)
    words = fill(cmd, bed.values())
    argv = program(words, cmd)
    ok(run(argv, cwd=work), argv)
    written = sorted(p for p, m in snapshot().items() if before.get(p) != m)
    assert written, f"{cmd.id}: wrote nothing"
    for rel in written:
        committed = os.path.join(ROOT, rel)
        assert os.path.exists(committed), f"{cmd.id}: wrote {rel}, which the tree lacks"
        assert filecmp.cmp(os.path.join(work, rel), committed, shallow=False), (
            f"{cmd.id}: {rel} differs from the committed one (stale: run it and commit)")
