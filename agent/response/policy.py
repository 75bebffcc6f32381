"""Response policy: which action a matched rule leads to, and the guard rails that stop an
action from ever harming what it must not touch.

    mode: enforce                       # enforce | audit (say what would be done, do nothing)
    grace_period_seconds: 0             # for pod deletion
    protected_namespaces: [kube-system, mamori]
    protected_labels: {mamori.io/protected: "true"}
    rate_limit_per_minute: 10           # actions per node
    incident_window_seconds: 300        # the same pod is acted on once per window
    overrides:                          # first match wins; every set field must match
      - rule: Shell spawned by a web server
        namespace: shop
        labels: {app: checkout}
        action: terminate
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import yaml

from ..yamlfile import YamlFileError, read_mapping

ACTIONS = ("log", "isolate", "terminate")
MODES = ("enforce", "audit")


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
    protected_labels: dict = field(default_factory=lambda: {"mamori.io/protected": "true"})
    rate_limit_per_minute: int = 10
    incident_window_seconds: int = 300
    overrides: tuple[Override, ...] = ()


@dataclass(frozen=True)
class Decision:
    action: str            # log | isolate | terminate
    status: str            # pending | skipped | audit
    detail: str


_KEYS = {"mode", "grace_period_seconds", "protected_namespaces", "protected_labels",
         "rate_limit_per_minute", "incident_window_seconds", "overrides"}


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
        if k not in _KEYS:
            err(k, f"unknown key (known: {', '.join(sorted(_KEYS))})")
    p = Policy()
    kw = {}
    if "mode" in raw:
        if raw["mode"] not in MODES:
            err("mode", f"must be enforce or audit, not {raw['mode']!r}")
        else:
            kw["mode"] = raw["mode"]
    for key in ("grace_period_seconds", "rate_limit_per_minute", "incident_window_seconds"):
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
    if "protected_labels" in raw:
        v = raw["protected_labels"]
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            err("protected_labels", "must map label keys to values (strings)")
        else:
            kw["protected_labels"] = dict(v)
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
    """Applies the policy to one alert at a time: the action, then the guard rails."""

    def __init__(self, policy: Policy, clock=time.monotonic):
        self.policy = policy
        self.clock = clock
        self._recent: deque = deque()            # times of actions taken (rate limit)
        self._incidents: dict[str, float] = {}   # pod or container -> time acted on

    def decide(self, rec: dict) -> Decision:
        f = rec.get("fields") or {}
        ns, pod = f.get("k8s.ns"), f.get("k8s.pod")
        labels = f.get("k8s.labels") or {}
        action = rec.get("action", "log")
        for o in self.policy.overrides:
            if o.matches(rec.get("rule", ""), ns, labels):
                action = o.action
                break
        if action == "log":
            return Decision("log", "skipped", "the policy says log")
        if not f.get("container.id"):
            return Decision(action, "skipped", "a host process: never acted on")
        if ns in self.policy.protected_namespaces:
            return Decision(action, "skipped", f"namespace {ns} is protected")
        for k, v in self.policy.protected_labels.items():
            if labels.get(k) == v:
                return Decision(action, "skipped", f"the pod has the protected label {k}={v}")
        target = f"{ns}/{pod}" if pod else f"container {f.get('container.id')}"
        now = self.clock()
        seen = self._incidents.get(target)
        if seen is not None and now - seen < self.policy.incident_window_seconds:
            return Decision(action, "skipped", f"{target} was already acted on for this "
                                               "incident")
        if self.policy.mode == "audit":
            self._incidents[target] = now
            return Decision(action, "audit", f"audit mode: would {action} {target}")
        while self._recent and now - self._recent[0] >= 60:
            self._recent.popleft()
        if len(self._recent) >= self.policy.rate_limit_per_minute:
            return Decision(action, "skipped", f"rate limit: {self.policy.rate_limit_per_minute}"
                                               " actions per minute reached")
        self._recent.append(now)
        self._incidents[target] = now
        return Decision(action, "pending", f"{action} {target}")
