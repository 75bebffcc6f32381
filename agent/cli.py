"""`mamori` command line: run (the agent), alerts, status, release, rules check, trace."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from . import config as configmod
from .rules.ruleset import RulesError
from .severity import SEVERITIES
from .text import json_line, printable
from .runtime import Agent
from .sensor import cgroups
from .sensor.layout import FAMILY_OF
from .sensor.probes import SensorError

log = logging.getLogger("mamori")


class PrintableFormatter(logging.Formatter):
    """Log lines carry container-controlled text (paths, argv, pod names): every control
    and bidi character in a message or a traceback line is shown escaped."""

    def formatMessage(self, record):
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei):
        """Stack frames line by line; an exception's message (which may hold a path or
        argv from a container, newlines included) as one escaped line."""
        import traceback
        out = []
        for chunk in traceback.TracebackException(*ei).format():
            if chunk.startswith("  File "):
                out += [printable(x) for x in chunk.rstrip("\n").split("\n")]
            else:
                out.append(printable(chunk.rstrip("\n")))
        return "\n".join(out)

    def formatStack(self, stack_info):
        return "\n".join(printable(x) for x in super().formatStack(stack_info).split("\n"))


def _user_cgroups(paths: list[str]) -> list[str]:
    """--cgroup paths as paths below the cgroup2 root. Named by the user: each must exist."""
    root = cgroups.cgroup2_root()
    out = []
    for p in paths:
        d = cgroups.resolve(p, root)
        if not os.path.isdir(d):
            raise SensorError(f"cgroup {p}: no such cgroup2 directory {d}")
        out.append(d[len(root):] or "/")
    return out


def _stream(pipe, kinds: tuple[str, ...], out, interval_ms: int) -> int:
    """Poll the pipeline every interval, print the chosen kinds (enriched: process, container
    and pod context); report kernel drops."""
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(1))
    wanted = set(kinds) if kinds else None
    last_drops: dict[str, int] = {}
    next_check = time.monotonic() + 1.0
    interval = interval_ms / 1000.0
    while not stop:
        for item in pipe.step():
            if wanted is None or item.event.kind in wanted:
                out.write(json_line(item.fields(), separators=(",", ":")) + "\n")
        out.flush()
        now = time.monotonic()
        if now >= next_check:
            drops = pipe.sensor.drops()
            new = {k: v - last_drops.get(k, 0) for k, v in drops.items()
                   if v != last_drops.get(k, 0)}
            if new:
                log.warning("kernel dropped events (ring full): %s", new)
            last_drops, next_check = drops, now + 1.0
        time.sleep(interval)
    return 0


def cmd_run(args) -> int:
    overrides = {}
    if args.all_processes:
        overrides["sensor.all_processes"] = True
    if args.node_name:
        overrides["node_name"] = args.node_name
    if args.metrics_listen:
        overrides["metrics.listen"] = args.metrics_listen
    cfg = configmod.load(args.config, overrides)
    if args.rules:
        from dataclasses import replace
        cfg = replace(cfg, rules=configmod.RulesConfig(tuple(args.rules)))
    logging.getLogger().setLevel(cfg.log_level.upper())
    os.umask(0o077)         # what the agent writes (alerts, journal, state) is root's alone
    extra = _user_cgroups(args.cgroup) if args.cgroup else []
    out = sys.stdout if cfg.output.path == "-" else open(cfg.output.path, "a")

    def print_alert(rec):
        out.write(rec.to_json() + "\n")
        out.flush()

    agent = Agent(cfg, cfg.rules.paths, outputs=[print_alert], extra_watch=tuple(extra))
    from .response.policy import PolicyError
    try:
        agent.start()
    except (RulesError, PolicyError) as e:
        for p in e.problems:
            print(f"mamori: {p}", file=sys.stderr)
        what = "the rules have" if isinstance(e, RulesError) else "the response policy has"
        print(f"mamori: not starting: {what} errors", file=sys.stderr)
        agent.stop()
        return 2
    log.info("probes attached (%s) in %.2fs; mamori running on node %s",
             ", ".join(agent.pipeline.sensor.families), agent.pipeline.startup_s, agent.node)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: agent.request_reload())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        agent.stop()
    return 0


def cmd_status(args) -> int:
    from .api.client import channel
    from .api.gen.mamori.v1 import alerts_pb2 as pb
    from .api.gen.mamori.v1 import alerts_pb2_grpc as pb_grpc
    import grpc
    try:
        s = pb_grpc.AlertsStub(channel(args.server)).GetStatus(pb.GetStatusRequest(),
                                                              timeout=10)
    except grpc.RpcError as e:
        print(f"mamori: {e.code().name}: {printable(e.details())}", file=sys.stderr)
        return 1

    def out(line: str) -> None:           # every value may come from a container
        print(printable(line))
    out(f"node            {s.node}")
    out(f"uptime          {s.uptime_seconds:.0f} s")
    if s.health:
        out(f"health          {s.health}")
    out(f"rules loaded    {s.rules_loaded}" + (f"  (last reload FAILED: "
                                               f"{s.last_reload_error.splitlines()[0]})"
                                               if s.last_reload_error else ""))
    out(f"last alert      #{s.last_sequence}")
    if s.health and not s.journal_persisting:      # (an older agent sends neither)
        out(f"journal         NOT PERSISTING: {s.journal_error}")
    if s.alerts_not_persisted:
        out(f"not persisted   {s.alerts_not_persisted} alerts since start")
    sev = ", ".join(f"{k} {v}" for k, v in sorted(s.alerts_by_severity.items())) or "none"
    out(f"alerts          {sev}")
    seen = sum(s.events_seen.values())
    out(f"events seen     {seen}  ({', '.join(f'{k} {v}' for k, v in sorted(s.events_seen.items()))})")
    lost = ", ".join(f"{k} {v}" for k, v in sorted(s.events_lost.items())) or "none"
    out(f"events lost     {lost}")
    out(f"subscribers     {len(s.subscribers)}")
    for sub in s.subscribers:
        out(f"  {printable(sub.client or sub.peer):<30} sent {sub.sent}, missed {sub.dropped}, "
            f"queued {sub.queued}/{sub.queue_size} ({sub.queued_bytes}/{sub.queue_bytes} B)")
    return 0


def cmd_release(args) -> int:
    from .api.client import channel
    from .api.gen.mamori.v1 import alerts_pb2 as pb
    from .api.gen.mamori.v1 import alerts_pb2_grpc as pb_grpc
    ns, _, pod = args.pod.partition("/")
    if not ns or not pod:
        print("mamori: give the pod as NAMESPACE/POD", file=sys.stderr)
        return 2
    import grpc
    try:
        ch = channel(args.server, args.ca, args.cert, args.key, args.server_name)
        r = pb_grpc.AlertsStub(ch).Release(
            pb.ReleaseRequest(namespace=ns, pod=pod), timeout=30)
    except grpc.RpcError as e:
        print(f"mamori: {e.code().name}: {printable(e.details())}", file=sys.stderr)
        return 1
    print(printable(f"{r.status}: {r.detail}"))
    return 0 if r.status == "done" else 1


def cmd_rules_import_sigma(args) -> int:
    from .rules.sigma import main_import
    return main_import([*args.paths, *(["--output", args.output] if args.output else [])])


def cmd_inventory(args) -> int:
    """The images on this node and their inventories, from a running agent."""
    from .api.client import channel
    from .api.gen.mamori.v1 import alerts_pb2 as pb
    from .api.gen.mamori.v1 import alerts_pb2_grpc as pb_grpc
    import grpc
    import json
    if args.format == "cyclonedx" and not args.image:
        print("mamori: --format cyclonedx needs --image", file=sys.stderr)
        return 2
    fmt = args.format or ("table" if args.image else "")
    want = "json" if fmt in ("json", "table") else fmt
    try:
        r = pb_grpc.AlertsStub(channel(args.server)).ListInventories(
            pb.ListInventoriesRequest(image=args.image or "",
                                      format=want if args.image else ""), timeout=30)
    except grpc.RpcError as e:
        print(f"mamori: {e.code().name}: {printable(e.details())}", file=sys.stderr)
        return 1
    if args.image and fmt in ("json", "cyclonedx"):
        print(r.document)                  # JSON: what a container wrote is escaped in it
        return 0
    if not args.image:
        if args.format == "json":
            from google.protobuf.json_format import MessageToDict
            print(json.dumps(MessageToDict(r)["images"] if r.images else [], indent=1))
            return 0
        print(f"{'IMAGE':<40}  {'OS':<14}  {'PACKAGES':>8}  {'STATE':<9}  CONTAINERS")
        for i in r.images:
            name = i.image or i.key
            state = i.state + (f" ({i.reason})" if i.reason else "")
            print(printable(f"{name[:40]:<40}  {i.os[:14]:<14}  {i.packages:>8}  "
                            f"{state:<9}  {len(i.containers)}"))
        return 0
    doc = json.loads(r.document)
    print(printable(f"image       {doc['image'] or doc['key']}"))
    print(printable(f"key         {doc['key']}"))
    print(printable(f"os          {doc['os']['pretty_name'] or doc['os']['id'] or '-'}"))
    print(printable(f"state       {doc['state']}" + (f": {doc['reason']}" if doc['reason']
                                                     else "")))
    print(printable(f"containers  {', '.join(doc['containers']) or '-'}"))
    for e in doc["errors"]:
        print(printable(f"error       {e}"))
    print(f"{'TYPE':<7}  {'NAME':<32}  {'VERSION':<24}  {'SOURCE':<24}  LOCATION")
    for p in sorted(doc["packages"], key=lambda p: (p["kind"], p["name"])):
        src = p["source_name"] + (f" {p['source_version']}"
                                  if p["source_version"] != p["version"] else "")
        if p["source_name"] == p["name"] and p["source_version"] == p["version"]:
            src = ""
        print(printable(f"{p['kind']:<7}  {p['name']:<32}  {p['version']:<24}  "
                        f"{src or '-':<24}  {p['location']}"))
    return 0


def cmd_rules_check(args) -> int:
    from .rules.ruleset import load as load_rules
    rs, problems = load_rules(args.paths)
    for p in problems:
        print(printable(p))
    errors = sum(1 for p in problems if p.level == "error")
    warnings = len(problems) - errors
    if rs is not None:
        tactics = len({r.tactic for r in rs.rules})
        print(f"{len(rs.rules)} rules ({sum(r.enabled for r in rs.rules)} enabled) across "
              f"{tactics} tactics; {warnings} warning(s)")
        return 0
    print(f"{errors} error(s), {warnings} warning(s)")
    return 1


def cmd_trace(args) -> int:
    """The pipeline of `mamori run` without the rules, the response and the API: discovery
    (containers and parents that appear later are watched), the process tree, container and
    pod context on every event. Passive: drift prevention is off whatever the config says."""
    from dataclasses import replace
    from .pipeline import Pipeline
    overrides = {}
    if args.all_processes:
        overrides["sensor.all_processes"] = True
    if args.ring_size:
        overrides["sensor.ring_bytes"] = args.ring_size
    cfg = configmod.load(args.config, overrides)
    kinds = configmod.parse_kinds(args.kinds) if args.kinds else cfg.output.kinds
    families = tuple(dict.fromkeys(FAMILY_OF[k] for k in kinds)) or cfg.sensor.families
    sensor = replace(cfg.sensor, families=tuple(f for f in families
                                                if f in configmod.EVENT_FAMILIES))
    if args.cgroup:
        sensor = replace(sensor, watched_cgroups=tuple(_user_cgroups(args.cgroup)))
    cfg = replace(cfg, sensor=sensor, drift=replace(cfg.drift, prevent_all=False,
                                                    prevent_namespaces=(), prevent_images=()))
    pipe = Pipeline(cfg)
    t0 = time.monotonic()
    pipe.start()
    if not cfg.sensor.all_processes and not pipe.sensor.watched():
        log.warning("no watched cgroup exists yet (%s): they are watched when they appear; "
                    "use --all-processes to watch the whole host",
                    ", ".join(cfg.sensor.watched_cgroups))
    log.info("probes attached (%s) in %.2fs", ", ".join(pipe.sensor.families),
             time.monotonic() - t0)
    try:
        return _stream(pipe, kinds, sys.stdout, cfg.sensor.poll_interval_ms)
    finally:
        pipe.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mamori", description="Runtime security for "
                                "Kubernetes nodes, on eBPF.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--config", "-c", help="YAML configuration file "
                        f"(default: {configmod.DEFAULT_PATH} if it exists)")
        sp.add_argument("--all-processes", action="store_true",
                        help="watch every process on the host, not only containers")
        sp.add_argument("--cgroup", action="append", metavar="PATH",
                        help="watch this cgroup2 path and everything below it "
                        "(repeatable; replaces sensor.watched_cgroups)")

    run = sub.add_parser("run", help="run the agent on this node")
    common(run)
    run.add_argument("--node-name", help="this node's name (default: $NODE_NAME, hostname)")
    run.add_argument("--metrics-listen", metavar="HOST:PORT",
                     help="address of /metrics, /healthz and /readyz (replaces "
                     "metrics.listen); in a pod: $(POD_IP):9464")
    run.add_argument("--rules", action="append", metavar="PATH",
                     help="rule file or directory (repeatable; replaces rules.paths)")
    run.set_defaults(func=cmd_run)

    al = sub.add_parser("alerts", help="show alerts from a running agent (gRPC)")
    al.add_argument("--server", default="unix:///run/mamori/mamori.sock",
                    help="unix:///path or host:port (default: %(default)s)")
    al.add_argument("--follow", "-f", action="store_true", help="keep streaming new alerts")
    al.add_argument("--since", type=int, help="replay alerts after this sequence number")
    al.add_argument("--resume", action="store_true",
                    help="start after the last alert this command showed (remembered in "
                         "~/.cache/mamori/alerts.last)")
    al.add_argument("--severity", choices=SEVERITIES,
                    help="minimum severity")
    al.add_argument("--namespace", action="append", help="only these namespaces")
    al.add_argument("--rule", action="append", help="only these rules")
    al.add_argument("--json", action="store_true", help="one JSON object per line")
    al.add_argument("--wait", type=float, default=1.0,
                    help="without --follow: seconds to wait for alerts (default 1)")
    al.add_argument("--ca", default="", help="CA certificate of the server (TLS)")
    al.add_argument("--cert", default="", help="client certificate (mutual TLS)")
    al.add_argument("--key", default="", help="client key (mutual TLS)")
    al.add_argument("--server-name", default="", help="expected server name (TLS)")
    al.set_defaults(func=lambda a: __import__("agent.api.client", fromlist=["run"]).run(a))

    st = sub.add_parser("status", help="a running agent's status, as a readable summary")
    st.add_argument("--server", default="unix:///run/mamori/mamori.sock")
    st.set_defaults(func=cmd_status)

    rel = sub.add_parser("release", help="undo the isolation of a pod (NAMESPACE/POD)")
    rel.add_argument("pod", metavar="NAMESPACE/POD")
    rel.add_argument("--server", default="unix:///run/mamori/mamori.sock",
                     help="a root-only socket (default: %(default)s; with api.socket_group, "
                          "the api.admin_socket) or host:port with an admin certificate")
    rel.add_argument("--ca", default="", help="CA certificate of the server (TLS)")
    rel.add_argument("--cert", default="", help="admin client certificate (mutual TLS)")
    rel.add_argument("--key", default="", help="admin client key (mutual TLS)")
    rel.add_argument("--server-name", default="", help="expected server name (TLS)")
    rel.set_defaults(func=cmd_release)

    inv = sub.add_parser("inventory", help="the images on this node and the software "
                         "each carries (from a running agent)")
    inv.add_argument("--server", default="unix:///run/mamori/mamori.sock")
    inv.add_argument("--image", help="one image: its key, id, name or a key prefix")
    inv.add_argument("--format", choices=("table", "json", "cyclonedx"),
                     help="table (default) or json; with --image also cyclonedx (1.6)")
    inv.set_defaults(func=cmd_inventory)

    rules = sub.add_parser("rules", help="work with rule files")
    rsub = rules.add_subparsers(dest="rules_command", required=True)
    check = rsub.add_parser("check", help="report every error in rule files, as "
                            "file:line:col: message (exit 1 on errors)")
    check.add_argument("paths", nargs="+", metavar="FILE|DIR")
    check.set_defaults(func=cmd_rules_check)
    sig = rsub.add_parser("import-sigma", help="translate Sigma rules into Mamori rules "
                          "(docs/sigma.md); the report of what could not be, and why, on "
                          "stderr")
    sig.add_argument("paths", nargs="+", metavar="FILE_OR_DIR",
                     help="Sigma rule files, or directories searched for *.yml and *.yaml")
    sig.add_argument("-o", "--output", metavar="OUT",
                     help="write the rules file here (default: standard output)")
    sig.set_defaults(func=cmd_rules_import_sigma)

    from .vulndb.cli import register as register_vulndb
    register_vulndb(sub)

    tr = sub.add_parser("trace", help="print one JSON line per kernel event")
    common(tr)
    tr.add_argument("--kinds", help="event kinds or families, comma-separated "
                    "(process, file, net, priv, or exec, open, connect, ...)")
    tr.add_argument("--ring-size", help="ring buffer size, e.g. 16Mi")
    tr.set_defaults(func=cmd_trace)
    return p


def main(argv=None) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    args = build_parser().parse_args(argv)
    if getattr(args, "config", None) is None:
        import os
        args.config = configmod.DEFAULT_PATH if os.path.exists(configmod.DEFAULT_PATH) else None
    try:
        return args.func(args)
    except configmod.ConfigError as e:
        for p in e.problems:
            print(f"mamori: {p}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"mamori: {e}", file=sys.stderr)
        return 2
    except SensorError as e:
        print(f"mamori: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
