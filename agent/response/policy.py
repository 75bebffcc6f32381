"""Response policy: which action a matched rule leads to, and the guard rails that stop an
action from ever harming what it must not touch.

    mode: enforce                       # enforce | audit (say what would be done, do nothing)
    grace_period_seconds: 0             # for pod deletion
    protected_namespaces: [kube-system, mamori]
    protected_namespace_labels: {mamori.io/protected: "true"}   # any of these on a namespace
    unknown_pod: act                    # act | wait: a container whose pod is not known yet
    unknown_pod_wait_seconds: 60        # how long to wait for it
    rate_limit_per_minute: 10           # actions per node
    incident_window_seconds: 300        # the same pod is acted on once per window
    overrides:                          # first match wins; every set field must match
      - rule: Shell spawned by a web server
        namespace: shop
        labels: {app: checkout}
        action: terminate

Protection comes only from what an administrator controls: namespace names and namespace
labels (changing them takes rights over the namespace object, which pod authors do not
have) and this file. Pod labels are written by whoever creates the pod, so they never
protect: `protected_labels` is refused, and an override that matches on pod labels may
raise the action (log -> isolate -> terminate), never lower it.

A container whose pod (namespace) is not known yet is not taken as unprotected:
`unknown_pod: act` acts on the node at once with what can be decided without the pod (the
rule's action, overrides naming neither namespace nor labels) and decides the API part —
and whether the node-local isolation stays — once the pod is known; `unknown_pod: wait`
does nothing until then. Namespaces whose labels are not known yet wait for them (one API
read, cached).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import yaml

from ..yamlfile import YamlFileError, read_mapping

ACTIONS = ("log", "isolate", "terminate")
STRENGTH = {a: i for i, a in enumerate(ACTIONS)}
MODES = ("enforce", "audit")
UNKNOWN_POD = ("act", "wait")
LABELS_TTL_S = 60.0


class PolicyError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Override:
    action: str
    rule: str | None = None
    namespace: str | None = None
    labels: dict = field(default_factory=dict)

    def matches(self, rule: str, namespace: str | None, labels: dict) -> bool:
        if self.rule is not None and self.rule != rule:
            return False
        if self.namespace is not None and self.namespace != namespace:
            return False
        return all(labels.get(k) == v for k, v in self.labels.items())


@dataclass(frozen=True)
class Policy:
    mode: str = "enforce"
    grace_period_seconds: int = 0
    protected_namespaces: tuple[str, ...] = ("kube-system", "mamori")
    protected_namespace_labels: dict = field(default_factory=dict)
    unknown_pod: str = "act"
    unknown_pod_wait_seconds: int = 60
    rate_limit_per_minute: int = 10
    incident_window_seconds: int = 300
    overrides: tuple[Override, ...] = ()


@dataclass(frozen=True)
class Decision:
    action: str            # log | isolate | terminate
    status: str            # pending | deferred | skipped | audit
    detail: str
    local_now: bool = True  # deferred: act on the node now (True) or wait too (False)


_KEYS = {"mode", "grace_period_seconds", "protected_namespaces", "protected_namespace_labels",
         "unknown_pod", "unknown_pod_wait_seconds", "rate_limit_per_minute",
         "incident_window_seconds", "overrides"}
_REFUSED = {
    "protected_labels": "pod labels are written by whoever creates the pod, so a pod could "
                        "opt itself out of the response with them; protect namespaces "
                        "instead (protected_namespaces, or protected_namespace_labels for "
                        "namespaces an administrator labels)",
}


def load(path: str) -> Policy:
    """Read and check a policy file; every problem as `file:line: message`."""
    try:
        raw, node = read_mapping(path, "a policy is a mapping of keys")
    except YamlFileError as e:
        raise PolicyError(e.problems) from None
    lines = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            lines[k.value] = k.start_mark.line + 1
            if k.value == "overrides" and isinstance(v, yaml.SequenceNode):
                for i, item in enumerate(v.value):
                    lines[f"overrides.{i}"] = item.start_mark.line + 1
    problems: list[str] = []

    def err(key, msg):
        problems.append(f"{path}:{lines.get(key, 1)}: {key}: {msg}")

    for k in raw:
        if k in _REFUSED:
            err(k, f"not supported: {_REFUSED[k]}")
        elif k not in _KEYS:
            err(k, f"unknown key (known: {', '.join(sorted(_KEYS))})")
    p = Policy()
    kw = {}
    if "mode" in raw:
        if raw["mode"] not in MODES:
            err("mode", f"must be enforce or audit, not {raw['mode']!r}")
        else:
            kw["mode"] = raw["mode"]
    if "unknown_pod" in raw:
        if raw["unknown_pod"] not in UNKNOWN_POD:
            err("unknown_pod", f"must be act or wait, not {raw['unknown_pod']!r}")
        else:
            kw["unknown_pod"] = raw["unknown_pod"]
    for key in ("grace_period_seconds", "rate_limit_per_minute", "incident_window_seconds",
                "unknown_pod_wait_seconds"):
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                err(key, "must be a whole number, 0 or more")
            else:
                kw[key] = v
    if "protected_namespaces" in raw:
        v = raw["protected_namespaces"]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            err("protected_namespaces", "must be a list of namespaces")
        else:
            kw["protected_namespaces"] = tuple(v)
    if "protected_namespace_labels" in raw:
        v = raw["protected_namespace_labels"]
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            err("protected_namespace_labels", "must map label keys to values (strings)")
        else:
            kw["protected_namespace_labels"] = {str(k): x for k, x in v.items()}
    overrides = []
    for i, o in enumerate(raw.get("overrides") or []):
        key = f"overrides.{i}"
        if not isinstance(o, dict):
            err(key, "each override is a mapping")
            continue
        unknown = set(o) - {"rule", "namespace", "labels", "action"}
        if unknown:
            err(key, f"unknown key {sorted(unknown)[0]!r} (known: action, labels, "
                     "namespace, rule)")
            continue
        if o.get("action") not in ACTIONS:
            err(key, f"action must be one of log, isolate, terminate, not {o.get('action')!r}")
            continue
        labels = o.get("labels") or {}
        if not isinstance(labels, dict):
            err(key, "labels must map label keys to values")
            continue
        overrides.append(Override(o["action"], o.get("rule"), o.get("namespace"),
                                  {str(k): str(v) for k, v in labels.items()}))
    if problems:
        raise PolicyError(problems)
    return Policy(**{**p.__dict__, **kw, "overrides": tuple(overrides)})


class Guard:
    """Applies the policy to one alert at a time: the action, then the guard rails.

    decide() runs in the evaluator and never waits: what it cannot know yet (the pod, a
    namespace's labels) makes the decision `deferred`. recheck() runs once they are known
    (on the response thread) and says what the full policy wants, without counting the
    action again against the rate limit or the incident window."""

    def __init__(self, policy: Policy, clock=time.monotonic, labels_readable: bool = True):
        self.policy = policy
        self.clock = clock
        # without the Kubernetes API a namespace's labels cannot be read: such namespaces
        # are then treated as protected when protected_namespace_labels is set
        self.labels_readable = labels_readable
        self._recent: deque = deque()            # times of actions taken (rate limit)
        self._incidents: dict[str, float] = {}   # pod or container -> time acted on
        self._ns_labels: dict[str, tuple[dict, float]] = {}   # namespace -> (labels, when)

    # -- what is known about namespaces (any thread) ------------------------------------
    def set_namespace_labels(self, namespace: str, labels: dict) -> None:
        self._ns_labels[namespace] = (dict(labels or {}), self.clock())

    def namespace_labels(self, namespace: str) -> dict | None:
        got = self._ns_labels.get(namespace)
        if got is None or self.clock() - got[1] > LABELS_TTL_S:
            return None
        return got[0]

    def needs_namespace_labels(self, namespace: str | None) -> bool:
        return bool(namespace and self.policy.protected_namespace_labels and
                    self.labels_readable and self.namespace_labels(namespace) is None)

    # -- the decision -------------------------------------------------------------------
    def action_for(self, rule: str, base: str, ns: str | None, labels: dict) -> str:
        """The policy's action. An override matched through pod labels (the pod author's
        data) may only make the action stronger than what applies without such overrides."""
        for o in self.policy.overrides:
            if o.matches(rule, ns, labels):
                if not o.labels:
                    return o.action
                admin = self.action_for(rule, base, ns, {})     # label-free overrides
                return o.action if STRENGTH[o.action] >= STRENGTH[admin] else admin
        return base

    def protection(self, ns: str | None) -> tuple[str, str]:
        """(protected | unprotected | unknown, why)."""
        if ns is None:
            return "unknown", "its pod is not known yet"
        if ns in self.policy.protected_namespaces:
            return "protected", f"namespace {ns} is protected"
        want = self.policy.protected_namespace_labels
        if want:
            if not self.labels_readable:
                return "protected", (f"namespace {ns}: its labels cannot be read without "
                                     "the Kubernetes API, so it is treated as protected")
            have = self.namespace_labels(ns)
            if have is None:
                return "unknown", f"the labels of namespace {ns} are not known yet"
            for k, v in want.items():
                if have.get(k) == v:
                    return "protected", f"namespace {ns} is protected by its label {k}={v}"
        return "unprotected", ""

    def decide(self, rec) -> Decision:
        """rec: the Alert (agent/alerts/alert.py)."""
        f = rec.fields
        ns, pod = f.get("k8s.ns"), f.get("k8s.pod")
        labels = f.get("k8s.labels") or {}
        action = self.action_for(rec.rule, rec.action or "log", ns, labels)
        if action == "log":
            return Decision("log", "skipped", "the policy says log")
        if not f.get("container.id"):
            return Decision(action, "skipped", "a host process: never acted on")
        state, why = self.protection(ns)
        if state == "protected":
            return Decision(action, "skipped", why)
        target = f"{ns}/{pod}" if pod else f"container {f.get('container.id')}"
        now = self.clock()
        seen = self._incidents.get(target)
        if seen is not None and now - seen < self.policy.incident_window_seconds:
            return Decision(action, "skipped", f"{target} was already acted on for this "
                                               "incident")
        if self.policy.mode == "audit":
            self._incidents[target] = now
            later = f" ({why}: the policy is applied in full once it is)" if why else ""
            return Decision(action, "audit", f"audit mode: would {action} {target}{later}")
        while self._recent and now - self._recent[0] >= 60:
            self._recent.popleft()
        if len(self._recent) >= self.policy.rate_limit_per_minute:
            return Decision(action, "skipped", f"rate limit: {self.policy.rate_limit_per_minute}"
                                               " actions per minute reached")
        self._recent.append(now)
        self._incidents[target] = now
        if state == "unknown":
            local_now = ns is None and self.policy.unknown_pod == "act"
            return Decision(action, "deferred", f"{action} {target}: {why}", local_now)
        return Decision(action, "pending", f"{action} {target}")

    def recheck(self, rec) -> Decision:
        """The full policy for an alert whose pod and namespace are known now: pending
        (act) or skipped (and why); deferred if something is still unknown."""
        f = rec.fields
        ns, pod = f.get("k8s.ns"), f.get("k8s.pod")
        action = self.action_for(rec.rule, rec.action or "log", ns, f.get("k8s.labels") or {})
        if action == "log":
            return Decision("log", "skipped", f"the policy says log for {ns}/{pod}")
        state, why = self.protection(ns)
        if state == "protected":
            return Decision(action, "skipped", why)
        if state == "unknown":
            return Decision(action, "deferred", why, False)
        return Decision(action, "pending", f"{action} {ns}/{pod}")
