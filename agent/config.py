"""The agent's configuration: one YAML file, command-line overrides, checked at start.

Every mistake is reported as `file:line: key: what is wrong`, all of them at once.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace

import yaml

from .sensor.layout import FAMILIES, KINDS
from .yamlfile import YamlFileError, read_mapping

# Probe families a user chooses; the cgroup family (container discovery) is always loaded.
EVENT_FAMILIES = ("process", "file", "net", "priv")

DEFAULT_PATH = "/etc/mamori/mamori.yaml"

# Parents under which container runtimes put their containers' cgroups. Watching one of
# them covers every container below it from its first instruction (cgroup ancestors are
# checked in the kernel).
DEFAULT_WATCHED = ("kubepods", "kubepods.slice", "docker", "system.slice/docker-*.scope",
                   "system.slice/containerd.service", "machine.slice", "libpod_parent",
                   "mamori-test")


class ConfigError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class SensorConfig:
    families: tuple[str, ...] = EVENT_FAMILIES
    ring_bytes: int = 16 << 20
    poll_interval_ms: int = 5
    all_processes: bool = False
    watched_cgroups: tuple[str, ...] = DEFAULT_WATCHED
    # while the agent falls behind: bulk events (read-only opens, connects, accepts) one
    # container may send per 100 ms before the kernel sheds the rest (bpf/common.h)
    container_budget: int = 2000


@dataclass(frozen=True)
class OutputConfig:
    path: str = "-"                 # alerts of `mamori run`: "-" is stdout, else a file
    kinds: tuple[str, ...] = ()     # event kinds `mamori trace` prints (empty: all)


@dataclass(frozen=True)
class ContextConfig:
    ancestors_depth: int = 8            # proc.ancestors: parents kept per event
    process_table_size: int = 65536     # live processes remembered
    exited_ttl_s: float = 5.0           # how long an exited process still resolves
    # cgroups directly below these are containers named by their directory (runc or crun
    # run by hand with cgroupsPath "<parent>/<id>")
    container_parents: tuple[str, ...] = ("mamori-test",)


@dataclass(frozen=True)
class KubernetesConfig:
    mode: str = "auto"      # auto | in-cluster | kubeconfig | off (standalone)
    kubeconfig: str = ""    # default: $KUBECONFIG, then ~/.kube/config


@dataclass(frozen=True)
class DriftConfig:
    # Kill drifted programs before they run (in the kernel, at exec), in these containers:
    prevent_all: bool = False                 # every container
    prevent_namespaces: tuple[str, ...] = ()  # containers of pods in these namespaces
    prevent_images: tuple[str, ...] = ()      # containers of these images (globs)
    # In those containers, programs run and code mapped from any filesystem but the root
    # overlay are killed too, except from mounts at or below these paths (as the container
    # sees them), e.g. ("/opt/plugins",):
    allow_exec_from: tuple[str, ...] = ()
    hash_max_bytes: int = 64 << 20            # sha256 of drifted files up to this size
    # how long the event path waits for a drifted file's sha256 (at most this much in any
    # second, too); past it the alert goes out with drift.hash_error instead
    hash_timeout_ms: int = 200
    hash_workers: int = 2                     # threads that hash, off the event path
    # overlay inodes whose opens for writing the kernel counts, node-wide (one kernel map
    # entry each, ~40 bytes); a write it cannot count makes that container's copied-up
    # image files drift until it is gone (fail closed), with an alert
    write_tracking_entries: int = 65536


@dataclass(frozen=True)
class InventoryConfig:
    # An SBOM of every image that runs on the node (agent/inventory/, docs/inventory.md),
    # read off the event path in a child process under these limits:
    enabled: bool = True
    memory_limit: int = 512 << 20            # the child's address space (RLIMIT_AS)
    time_limit_s: float = 120.0              # past it the child is killed: too_large
    max_file_bytes: int = 64 << 20           # a package database read whole
    max_binary_bytes: int = 256 << 20        # a Go binary or jar looked into
    max_files: int = 500_000                 # directory entries one image's walk looks at
    max_depth: int = 48                      # directories deep
    max_images: int = 512                    # inventories kept (unused ones go first)
    queue_size: int = 1024                   # containers waiting to be looked at


@dataclass(frozen=True)
class AlertsConfig:
    journal_dir: str = "/var/lib/mamori/journal"
    journal_max_bytes: int = 256 << 20       # oldest segments are deleted past this
    segment_bytes: int = 16 << 20
    subscriber_queue: int = 10000            # alerts buffered per gRPC subscriber (at most)
    subscriber_queue_bytes: int = 16 << 20   # and their serialized size


@dataclass(frozen=True)
class ApiConfig:
    # unix:///path and/or host:port. By default the unix socket only: 0600 in a 0700
    # directory, so that only root connects. TCP is refused without mutual TLS.
    listen: tuple[str, ...] = ("unix:///run/mamori/mamori.sock",)
    tls_cert: str = ""        # server certificate and key (PEM): TLS on TCP listeners
    tls_key: str = ""
    tls_client_ca: str = ""   # CA of client certificates: mutual TLS, others refused
    # client certificate names (common name, subject or a SAN) that may call Release
    admin_identities: tuple[str, ...] = ()
    allow_insecure_tcp: bool = False    # TCP without mutual TLS, loopback only (development)
    socket_group: str = ""    # this group may use the unix sockets too (0660, dir 0750);
                              # then Release only on admin_socket
    admin_socket: str = ""    # unix:///path: a root-only socket (0600) for Release
    # Subscribe streams open at once, in all and per client (a certificate subject; every
    # connection to one server's unix sockets is one client); more: RESOURCE_EXHAUSTED
    max_streams: int = 64
    max_streams_per_client: int = 8
    stall_timeout_s: float = 30.0       # a stream whose client has not read this long ends
    keepalive_time_s: float = 60.0      # ping each connection this often, and close it
    keepalive_timeout_s: float = 20.0   # when the answer has not come in this long


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = "127.0.0.1:9464"      # /metrics, /healthz, /readyz; "" turns it off
    drop_alert_threshold: int = 1       # kernel drops in one check (1 s) that raise an alert
    stall_after_s: float = 10.0         # /healthz fails when a stage makes no progress this long


@dataclass(frozen=True)
class ResponseConfig:
    policy: str = ""            # policy file (docs/response.md); empty: the rules' actions,
                                # kube-system and mamori protected, enforce mode
    queue_size: int = 1000      # alerts waiting for their API part


DEFAULT_RULES = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "rules"))


@dataclass(frozen=True)
class RulesConfig:
    # rule files and directories, loaded in order: the defaults first, then your own files
    # (which extend them with override:)
    paths: tuple[str, ...] = (DEFAULT_RULES,)


@dataclass(frozen=True)
class VulnDBConfig:
    path: str = "/var/lib/mamori/vulndb/osv.sqlite3"   # the vulnerability database (SQLite)
    max_age_hours: float = 48.0     # older: a warning and mamori_vulndb_stale 1; still used
    # OSV ecosystems `vulndb update` downloads (osv.dev's <ecosystem>/all.zip) when no
    # sources are given
    ecosystems: tuple[str, ...] = ("Debian", "Ubuntu", "Alpine", "PyPI", "npm", "Go", "Maven")
    sources: tuple[str, ...] = ()   # URLs of OSV zips; replace the ecosystems' default URLs
    download_timeout_s: float = 60.0


@dataclass(frozen=True)
class Config:
    node_name: str = ""
    log_level: str = "info"
    sensor: SensorConfig = field(default_factory=SensorConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    inventory: InventoryConfig = field(default_factory=InventoryConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    response: ResponseConfig = field(default_factory=ResponseConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    vulndb: VulnDBConfig = field(default_factory=VulnDBConfig)

    def resolved_node_name(self) -> str:
        return self.node_name or os.environ.get("NODE_NAME") or socket.gethostname()


_SIZE_SUFFIX = {"k": 1 << 10, "ki": 1 << 10, "m": 1 << 20, "mi": 1 << 20, "g": 1 << 30,
                "gi": 1 << 30}


def parse_size(value) -> int:
    """16777216, "16Mi", "16M", "512k" -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 16Mi")
    if isinstance(value, int):
        return value
    s = str(value).strip().lower().rstrip("b")
    for suffix in sorted(_SIZE_SUFFIX, key=len, reverse=True):
        if s.endswith(suffix):
            return int(float(s[: -len(suffix)]) * _SIZE_SUFFIX[suffix])
    return int(s)


def _lines(node, prefix="", out=None) -> dict[str, int]:
    """dotted key -> 1-based line, from a composed YAML node tree."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = f"{prefix}{k.value}"
            out[key] = k.start_mark.line + 1
            _lines(v, key + ".", out)
    return out


def load(path: str | None, overrides: dict | None = None) -> Config:
    """Read the file (if any), apply dotted overrides ({'sensor.all_processes': True}),
    validate. Raises ConfigError listing every problem."""
    raw, lines, where = {}, {}, "<defaults>"
    if path:
        where = path
        try:
            raw, node = read_mapping(path, "the configuration must be a mapping of keys")
        except YamlFileError as e:
            raise ConfigError(e.problems) from None
        lines = _lines(node)
    for dotted, value in (overrides or {}).items():
        d = raw
        *parents, last = dotted.split(".")
        for p in parents:
            d = d.setdefault(p, {})
        d[last] = value
        lines.setdefault(dotted, 0)
    return _validate(raw, lines, where)


def _validate(raw: dict, lines: dict[str, int], where: str) -> Config:
    problems: list[str] = []

    def err(key: str, msg: str) -> None:
        line = lines.get(key) or lines.get(key.rsplit(".", 1)[0])
        loc = f"{where}:{line}" if line else ("command line" if key in lines else where)
        problems.append(f"{loc}: {key}: {msg}")

    def section(name: str, allowed: set[str]) -> dict:
        val = raw.get(name, {}) or {}
        if not isinstance(val, dict):
            err(name, "must be a mapping")
            return {}
        for k in val:
            if k not in allowed:
                err(f"{name}.{k}", f"unknown key (known: {', '.join(sorted(allowed))})")
        return val

    top = ("alerts", "api", "context", "drift", "inventory", "kubernetes", "log_level",
           "metrics", "node_name", "output", "response", "rules", "sensor", "vulndb")
    for k in raw:
        if k not in top:
            err(k, f"unknown key (known: {', '.join(top)})")
    cfg = Config()

    node = raw.get("node_name", "")
    if not isinstance(node, str):
        err("node_name", "must be a string")
    level = raw.get("log_level", "info")
    if level not in ("debug", "info", "warning", "error"):
        err("log_level", f"must be one of debug, info, warning, error, not {level!r}")

    s = section("sensor", {f for f in SensorConfig.__dataclass_fields__})
    sensor = SensorConfig()
    if "families" in s:
        fams = s["families"]
        if not isinstance(fams, list) or not all(isinstance(f, str) for f in fams):
            err("sensor.families", "must be a list of probe families")
        else:
            bad = [f for f in fams if f not in EVENT_FAMILIES]
            if bad:
                err("sensor.families",
                    f"unknown {', '.join(bad)} (known: {', '.join(EVENT_FAMILIES)})")
            elif not fams:
                err("sensor.families", "must name at least one family")
            else:
                sensor = replace(sensor, families=tuple(fams))
    if "ring_bytes" in s:
        try:
            n = parse_size(s["ring_bytes"])
            if n < 4096 or n > 1 << 30:
                err("sensor.ring_bytes", "must be between 4Ki and 1Gi")
            else:
                sensor = replace(sensor, ring_bytes=n)
        except (ValueError, TypeError):
            err("sensor.ring_bytes", f"expected a size such as 16Mi, not {s['ring_bytes']!r}")
    if "poll_interval_ms" in s:
        v = s["poll_interval_ms"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1000:
            err("sensor.poll_interval_ms", "must be an integer from 1 to 1000")
        else:
            sensor = replace(sensor, poll_interval_ms=v)
    if "all_processes" in s:
        if not isinstance(s["all_processes"], bool):
            err("sensor.all_processes", "must be true or false")
        else:
            sensor = replace(sensor, all_processes=s["all_processes"])
    if "container_budget" in s:
        v = s["container_budget"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 10_000_000:
            err("sensor.container_budget", "must be an integer from 1 to 10000000 "
                "(bulk events per container per 100 ms while the agent falls behind)")
        else:
            sensor = replace(sensor, container_budget=v)
    if "watched_cgroups" in s:
        w = s["watched_cgroups"]
        if not isinstance(w, list) or not all(isinstance(p, str) and p for p in w):
            err("sensor.watched_cgroups", "must be a list of cgroup paths")
        else:
            sensor = replace(sensor, watched_cgroups=tuple(w))

    o = section("output", {"path", "kinds"})
    output = OutputConfig()
    if "path" in o:
        if not isinstance(o["path"], str) or not o["path"]:
            err("output.path", "must be a file path or - for stdout")
        else:
            output = replace(output, path=o["path"])
    if "kinds" in o:
        try:
            output = replace(output, kinds=parse_kinds(o["kinds"]))
        except ValueError as e:
            err("output.kinds", str(e))

    c = section("context", set(ContextConfig.__dataclass_fields__))
    context = ContextConfig()
    for key, lo, hi in (("ancestors_depth", 0, 64), ("process_table_size", 1024, 1 << 22)):
        if key in c:
            v = c[key]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                err(f"context.{key}", f"must be an integer from {lo} to {hi}")
            else:
                context = replace(context, **{key: v})
    if "exited_ttl_s" in c:
        v = c["exited_ttl_s"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 600:
            err("context.exited_ttl_s", "must be a number of seconds from 0 to 600")
        else:
            context = replace(context, exited_ttl_s=float(v))
    if "container_parents" in c:
        v = c["container_parents"]
        if not isinstance(v, list) or not all(isinstance(p, str) and p for p in v):
            err("context.container_parents", "must be a list of cgroup paths")
        else:
            context = replace(context, container_parents=tuple(v))

    k = section("kubernetes", set(KubernetesConfig.__dataclass_fields__))
    kube = KubernetesConfig()
    if "mode" in k:
        if k["mode"] not in ("auto", "in-cluster", "kubeconfig", "off"):
            err("kubernetes.mode", f"must be one of auto, in-cluster, kubeconfig, off, not "
                                   f"{k['mode']!r}")
        else:
            kube = replace(kube, mode=k["mode"])
    if "kubeconfig" in k:
        if not isinstance(k["kubeconfig"], str):
            err("kubernetes.kubeconfig", "must be a file path")
        else:
            kube = replace(kube, kubeconfig=k["kubeconfig"])

    r = section("rules", {"paths"})
    rules = RulesConfig()
    if "paths" in r:
        v = r["paths"]
        if not isinstance(v, list) or not v or not all(isinstance(p, str) and p for p in v):
            err("rules.paths", "must be a list of rule files or directories")
        else:
            base = os.path.dirname(os.path.abspath(where)) if where != "<defaults>" else ""
            rules = RulesConfig(tuple(p if os.path.isabs(p) or not base
                                      else os.path.normpath(os.path.join(base, p))
                                      for p in v))

    d = section("drift", set(DriftConfig.__dataclass_fields__))
    drift = DriftConfig()
    if "prevent_all" in d:
        if not isinstance(d["prevent_all"], bool):
            err("drift.prevent_all", "must be true or false")
        else:
            drift = replace(drift, prevent_all=d["prevent_all"])
    for key in ("prevent_namespaces", "prevent_images"):
        if key in d:
            v = d[key]
            if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                err(f"drift.{key}", "must be a list of strings")
            else:
                drift = replace(drift, **{key: tuple(v)})
    if "allow_exec_from" in d:
        v = d["allow_exec_from"]
        if not isinstance(v, list) or not all(isinstance(x, str) and x.startswith("/")
                                              for x in v):
            err("drift.allow_exec_from", "must be a list of absolute paths (as the container "
                                         "sees them)")
        else:
            drift = replace(drift, allow_exec_from=tuple(
                "/" + x.strip("/") if x.strip("/") else "/" for x in v))
    if "hash_max_bytes" in d:
        try:
            drift = replace(drift, hash_max_bytes=parse_size(d["hash_max_bytes"]))
        except (ValueError, TypeError):
            err("drift.hash_max_bytes", "expected a size such as 64Mi")
    for key, low, high in (("hash_timeout_ms", 1, 10_000), ("hash_workers", 1, 16),
                           ("write_tracking_entries", 64, 1 << 24)):
        if key in d:
            v = d[key]
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                err(f"drift.{key}", f"must be an integer from {low} to {high}")
            else:
                drift = replace(drift, **{key: v})

    inventory = _inventory(section("inventory", set(InventoryConfig.__dataclass_fields__)),
                           err)

    a = section("alerts", set(AlertsConfig.__dataclass_fields__))
    alerts = AlertsConfig()
    if "journal_dir" in a:
        if not isinstance(a["journal_dir"], str) or not a["journal_dir"]:
            err("alerts.journal_dir", "must be a directory path")
        else:
            alerts = replace(alerts, journal_dir=a["journal_dir"])
    for key in ("journal_max_bytes", "segment_bytes"):
        if key in a:
            try:
                alerts = replace(alerts, **{key: parse_size(a[key])})
            except (ValueError, TypeError):
                err(f"alerts.{key}", "expected a size such as 256Mi")
    if "subscriber_queue" in a:
        v = a["subscriber_queue"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 10_000_000:
            err("alerts.subscriber_queue", "must be an integer from 1 to 10000000")
        else:
            alerts = replace(alerts, subscriber_queue=v)
    if "subscriber_queue_bytes" in a:
        try:
            v = parse_size(a["subscriber_queue_bytes"])
            if not 1 << 10 <= v <= 1 << 30:
                raise ValueError
            alerts = replace(alerts, subscriber_queue_bytes=v)
        except (ValueError, TypeError):
            err("alerts.subscriber_queue_bytes", "expected a size from 1Ki to 1Gi, such as 16Mi")

    ap = section("api", set(ApiConfig.__dataclass_fields__))
    api = ApiConfig()
    if "listen" in ap:
        v = ap["listen"]
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            err("api.listen", "must be a list of unix:///path or host:port")
        else:
            api = replace(api, listen=tuple(v))
    for key in ("tls_cert", "tls_key", "tls_client_ca"):
        if key in ap:
            if not isinstance(ap[key], str):
                err(f"api.{key}", "must be a file path")
            else:
                api = replace(api, **{key: ap[key]})
    if bool(api.tls_cert) != bool(api.tls_key):
        err("api.tls_cert", "tls_cert and tls_key go together")
    if api.tls_client_ca and not api.tls_cert:
        err("api.tls_client_ca", "mutual TLS needs tls_cert and tls_key too")
    if "allow_insecure_tcp" in ap:
        if not isinstance(ap["allow_insecure_tcp"], bool):
            err("api.allow_insecure_tcp", "must be true or false")
        else:
            api = replace(api, allow_insecure_tcp=ap["allow_insecure_tcp"])
    if "admin_identities" in ap:
        v = ap["admin_identities"]
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            err("api.admin_identities", "must be a list of client certificate names")
        elif v and not api.tls_client_ca:
            err("api.admin_identities", "needs mutual TLS (api.tls_client_ca)")
        else:
            api = replace(api, admin_identities=tuple(v))
    if "socket_group" in ap:
        v = ap["socket_group"]
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            err("api.socket_group", "must be a group name or gid")
        elif v != "":
            import grp
            try:
                grp.getgrgid(v) if isinstance(v, int) or v.isdigit() else grp.getgrnam(v)
                api = replace(api, socket_group=str(v))
            except (KeyError, OverflowError):
                err("api.socket_group", f"no group {v!r} on this host")
    if "admin_socket" in ap:
        v = ap["admin_socket"]
        if not isinstance(v, str) or (v and not v.startswith("unix:///")):
            err("api.admin_socket", "must be unix:///path, or empty")
        else:
            api = replace(api, admin_socket=v)
    for key, low, high in (("max_streams", 1, 100_000), ("max_streams_per_client", 1, 100_000)):
        if key in ap:
            v = ap[key]
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                err(f"api.{key}", f"must be an integer from {low} to {high}")
            else:
                api = replace(api, **{key: v})
    for key, low, high in (("stall_timeout_s", 1, 3600), ("keepalive_time_s", 1, 86400),
                           ("keepalive_timeout_s", 1, 3600)):
        if key in ap:
            v = ap[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
                err(f"api.{key}", f"must be a number of seconds from {low} to {high}")
            else:
                api = replace(api, **{key: float(v)})
    from .api import listener_problem
    mtls = bool(api.tls_cert and api.tls_key and api.tls_client_ca)
    for addr in api.listen:
        why = listener_problem(addr, mtls, api.allow_insecure_tcp)
        if why:
            err("api.listen", why)

    rp = section("response", set(ResponseConfig.__dataclass_fields__))
    response = ResponseConfig()
    if "policy" in rp:
        v = rp["policy"]
        if not isinstance(v, str):
            err("response.policy", "must be a file path")
        elif v:
            base = os.path.dirname(os.path.abspath(where)) if where != "<defaults>" else ""
            response = replace(response, policy=v if os.path.isabs(v) or not base
                               else os.path.normpath(os.path.join(base, v)))
    if "queue_size" in rp:
        v = rp["queue_size"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1_000_000:
            err("response.queue_size", "must be an integer from 1 to 1000000")
        else:
            response = replace(response, queue_size=v)

    m = section("metrics", set(MetricsConfig.__dataclass_fields__))
    metrics = MetricsConfig()
    if "listen" in m:
        if not isinstance(m["listen"], str) or (m["listen"] and ":" not in m["listen"]):
            err("metrics.listen", "must be host:port, or empty to turn metrics off")
        else:
            metrics = replace(metrics, listen=m["listen"])
    if "drop_alert_threshold" in m:
        v = m["drop_alert_threshold"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            err("metrics.drop_alert_threshold", "must be a whole number, 1 or more")
        else:
            metrics = replace(metrics, drop_alert_threshold=v)
    if "stall_after_s" in m:
        v = m["stall_after_s"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.5 <= v <= 3600:
            err("metrics.stall_after_s", "must be a number of seconds from 0.5 to 3600")
        else:
            metrics = replace(metrics, stall_after_s=float(v))

    vulndb = _vulndb(section("vulndb", set(VulnDBConfig.__dataclass_fields__)), err)

    if problems:
        raise ConfigError(problems)
    cfg = replace(cfg, vulndb=vulndb)
    return replace(cfg, node_name=node if isinstance(node, str) else "", log_level=level,
                   sensor=sensor, output=output, context=context, kubernetes=kube,
                   rules=rules, drift=drift, inventory=inventory, alerts=alerts, api=api,
                   response=response,
                   metrics=metrics)


def _inventory(d: dict, err) -> InventoryConfig:
    inv = InventoryConfig()
    if "enabled" in d:
        if not isinstance(d["enabled"], bool):
            err("inventory.enabled", "must be true or false")
        else:
            inv = replace(inv, enabled=d["enabled"])
    for key, low in (("memory_limit", 64 << 20), ("max_file_bytes", 1 << 10),
                     ("max_binary_bytes", 1 << 10)):
        if key in d:
            try:
                v = parse_size(d[key])
            except (ValueError, TypeError):
                err(f"inventory.{key}", "expected a size such as 512Mi")
                continue
            if v < low:
                err(f"inventory.{key}", f"must be at least {low >> 10} KiB")
            else:
                inv = replace(inv, **{key: v})
    if "time_limit_s" in d:
        v = d["time_limit_s"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= 86400:
            err("inventory.time_limit_s", "must be a number of seconds from 1 to 86400")
        else:
            inv = replace(inv, time_limit_s=float(v))
    for key, low, high in (("max_files", 100, 1 << 26), ("max_depth", 4, 1024),
                           ("max_images", 1, 1 << 16), ("queue_size", 1, 1 << 20)):
        if key in d:
            v = d[key]
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                err(f"inventory.{key}", f"must be an integer from {low} to {high}")
            else:
                inv = replace(inv, **{key: v})
    return inv


def _vulndb(v: dict, err) -> VulnDBConfig:
    from .vulndb.ecosystems import ECOSYSTEMS
    out = VulnDBConfig()
    if "path" in v:
        if not isinstance(v["path"], str) or not v["path"]:
            err("vulndb.path", "must be a file path")
        else:
            out = replace(out, path=v["path"])
    if "max_age_hours" in v:
        x = v["max_age_hours"]
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not 1 <= x <= 8760:
            err("vulndb.max_age_hours", "must be a number of hours from 1 to 8760")
        else:
            out = replace(out, max_age_hours=float(x))
    if "ecosystems" in v:
        x = v["ecosystems"]
        if not isinstance(x, list) or not all(isinstance(e, str) and e for e in x):
            err("vulndb.ecosystems", "must be a list of OSV ecosystems")
        else:
            bad = [e for e in x if e.split(":", 1)[0] not in ECOSYSTEMS]
            if bad:
                err("vulndb.ecosystems", f"unknown {', '.join(bad)} (known: "
                    f"{', '.join(ECOSYSTEMS)})")
            else:
                out = replace(out, ecosystems=tuple(x))
    if "sources" in v:
        x = v["sources"]
        if not isinstance(x, list) or not all(
                isinstance(u, str) and u.split("://", 1)[0] in ("http", "https", "file")
                for u in x):
            err("vulndb.sources", "must be a list of http://, https:// or file:// URLs")
        else:
            out = replace(out, sources=tuple(x))
    if "download_timeout_s" in v:
        x = v["download_timeout_s"]
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not 1 <= x <= 3600:
            err("vulndb.download_timeout_s", "must be a number of seconds from 1 to 3600")
        else:
            out = replace(out, download_timeout_s=float(x))
    return out


def parse_kinds(value) -> tuple[str, ...]:
    """Kinds and family names ('exec,file' or ['net', 'open']) -> event kinds."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError("must be a list of event kinds or families")
    out: list[str] = []
    for item in items:
        item = str(item).strip()
        if item in FAMILIES:
            out += FAMILIES[item]
        elif item in KINDS:
            out.append(item)
        elif item:
            raise ValueError(f"unknown kind {item!r} (kinds: {', '.join(KINDS)}; "
                             f"families: {', '.join(FAMILIES)})")
    return tuple(dict.fromkeys(out))
