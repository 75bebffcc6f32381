"""The gRPC API (proto/mamori/v1/alerts.proto): Subscribe, ListRules, GetStatus, plus gRPC
health checking and server reflection (grpcurl works). Listens on a unix socket and/or TCP
(loopback by default), with TLS or mutual TLS when configured."""
from __future__ import annotations

import logging
import os
import re
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..alerts.hub import AlertHub, Filter, Matcher
from .gen.mamori.v1 import alerts_pb2 as pb
from .gen.mamori.v1 import alerts_pb2_grpc as pb_grpc

log = logging.getLogger("mamori.api")
SEVERITY_PB = {"info": pb.SEVERITY_INFO, "low": pb.SEVERITY_LOW, "medium": pb.SEVERITY_MEDIUM,
               "high": pb.SEVERITY_HIGH, "critical": pb.SEVERITY_CRITICAL}
SEVERITY_NAME = {v: k for k, v in SEVERITY_PB.items()}


def _s(v) -> str:
    return "" if v is None else str(v)


def to_proto(rec: dict) -> pb.Alert:
    """An alert record (Alert.to_dict() plus seq) as the protobuf message."""
    f = rec.get("fields") or {}
    a = pb.Alert(sequence=rec.get("seq", 0), id=rec.get("id", ""), time=rec.get("time", ""),
                 node=rec.get("node", ""), rule=rec.get("rule", ""),
                 severity=SEVERITY_PB.get(rec.get("severity"), 0),
                 output=rec.get("output", ""), source=rec.get("source", ""))
    t, q = rec.get("tactic") or {}, rec.get("technique") or {}
    a.tactic.id, a.tactic.name = _s(t.get("id")), _s(t.get("name"))
    a.technique.id, a.technique.name = _s(q.get("id")), _s(q.get("name"))
    p = a.process
    p.pid, p.ppid = int(f.get("proc.pid") or 0), int(f.get("proc.ppid") or 0)
    p.exe, p.cwd, p.name = _s(f.get("proc.exe")), _s(f.get("proc.cwd")), _s(f.get("proc.name"))
    p.uid = int(f.get("proc.uid") or 0)
    p.args.extend(_s(x) for x in f.get("proc.args") or ())
    for anc in f.get("proc.ancestors") or ():
        p.ancestors.add(pid=int(anc.get("pid", 0)), exe=_s(anc.get("exe")))
    if f.get("container.id"):
        c = a.container
        c.id, c.name = _s(f.get("container.id")), _s(f.get("container.name"))
        c.image, c.image_digest = _s(f.get("container.image")), _s(f.get("container.image_id"))
        c.runtime = _s(f.get("container.runtime"))
    if f.get("k8s.pod"):
        pod = a.pod
        pod.namespace, pod.name, pod.uid = _s(f.get("k8s.ns")), _s(f.get("k8s.pod")), \
            _s(f.get("k8s.pod_uid"))
        pod.labels.update({k: _s(v) for k, v in (f.get("k8s.labels") or {}).items()})
        pod.owner_kind, pod.owner_name = _s(f.get("k8s.owner_kind")), _s(f.get("k8s.owner_name"))
    kind = f.get("event.kind")
    if kind:
        e = a.event
        e.kind, e.syscall, e.ts = kind, _s(f.get("event.syscall")), int(f.get("event.ts") or 0)
        if kind == "exec":
            e.exec.filename, e.exec.exe_fs = _s(f.get("exec.filename")), _s(f.get("proc.exe_fs"))
            e.exec.stdin, e.exec.stdout = _s(f.get("proc.stdin")), _s(f.get("proc.stdout"))
            e.exec.stderr, e.exec.prevented = _s(f.get("proc.stderr")), \
                bool(f.get("exec.prevented"))
        elif kind in ("open", "unlink", "rename", "chmod"):
            e.file.path, e.file.new_path = _s(f.get("file.path")), _s(f.get("file.new_path"))
            e.file.flags.extend(f.get("file.flags") or ())
            e.file.mode, e.file.result = int(f.get("file.mode") or 0), \
                int(f.get("event.result") or 0)
        elif kind in ("connect", "accept", "bind", "listen"):
            n = e.network
            n.family, n.protocol = _s(f.get("net.family")), _s(f.get("net.protocol"))
            n.saddr, n.sport = _s(f.get("net.saddr")), int(f.get("net.sport") or 0)
            n.daddr, n.dport = _s(f.get("net.daddr")), int(f.get("net.dport") or 0)
            n.path, n.result = _s(f.get("net.path")), int(f.get("event.result") or 0)
        else:
            prefix = {"ptrace": "ptrace.", "mount": "mount.", "umount": "mount.",
                      "unshare": "ns.", "setns": "ns.", "setuid": "cred.", "setgid": "cred.",
                      "memfd": "memfd.", "module": "module."}.get(kind, "")
            e.other.update({k: _s(v) for k, v in f.items()
                            if prefix and k.startswith(prefix) and v is not None})
    if f.get("drift.kind") or f.get("drift.unknown_reason"):
        d = a.drift
        d.kind, d.path, d.script = _s(f.get("drift.kind")), _s(f.get("drift.path")), \
            bool(f.get("drift.script"))
        d.size, d.sha256 = int(f.get("drift.size") or 0), _s(f.get("drift.sha256"))
        d.unknown_reason, d.prevented = _s(f.get("drift.unknown_reason")), \
            bool(f.get("drift.prevented"))
    r = rec.get("response")
    if r:
        a.response.action, a.response.status, a.response.detail = (
            _s(r.get("action")), _s(r.get("status")), _s(r.get("detail")))
    return a


def matcher_of(m: pb.Matcher) -> Matcher:
    return Matcher(
        min_severity=int(m.min_severity), tactics=frozenset(m.tactics),
        techniques=frozenset(m.techniques), rules=frozenset(m.rules),
        namespaces=frozenset(m.namespaces),
        pod_regex=re.compile(m.pod_regex) if m.pod_regex else None,
        nodes=frozenset(m.nodes))


class AlertsService(pb_grpc.AlertsServicer):
    def __init__(self, hub: AlertHub, rules_fn, status_fn, poll_s: float = 0.5,
                 release_fn=None):
        self.release_fn = release_fn      # (namespace, pod) -> (status, detail)
        self.hub = hub
        self.rules_fn = rules_fn          # -> (ruleset or None, catalog)
        self.status_fn = status_fn        # -> dict for GetStatusResponse
        self.poll_s = poll_s

    def Subscribe(self, request, context):
        try:
            flt = Filter(matcher_of(request.allow), matcher_of(request.deny))
        except re.error as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad pod_regex: {e}")
        sub = self.hub.subscribe(flt, context.peer(), request.queue_size)
        try:
            if request.HasField("since_sequence"):
                since = request.since_sequence
                first = self.hub.journal.first_seq()
                if since + 1 < first:
                    yield pb.Alert(notice=pb.StreamNotice(
                        journal_starts_at=first,
                        message=f"alerts {since + 1}..{first - 1} are no longer in the "
                                f"journal; replay starts at {first}"))
                for rec in self.hub.replay(sub, since):
                    sub.sent += 1
                    yield to_proto(rec)
            while context.is_active():
                item = sub.take(self.poll_s)
                if item is None:
                    continue
                what, val = item
                if what == "missed":
                    count, resume = val
                    yield pb.Alert(notice=pb.StreamNotice(
                        missed=count, resume_from_sequence=resume,
                        message=f"{count} alerts were not sent to this subscriber (its queue "
                                f"was full); subscribe again with since_sequence="
                                f"{resume - 1} to get them from the journal"))
                else:
                    sub.sent += 1
                    yield to_proto(val)
        finally:
            self.hub.unsubscribe(sub)

    def ListRules(self, request, context):
        rs, catalog = self.rules_fn()
        out = pb.ListRulesResponse()
        for r in (rs.rules if rs else ()):
            out.rules.add(name=r.name, desc=r.desc, events=list(r.events),
                          severity=SEVERITY_PB.get(r.severity, 0),
                          tactic=pb.Tactic(id=r.tactic, name=catalog.tactic_name(r.tactic)),
                          technique=pb.Technique(id=r.technique,
                                                 name=catalog.technique_name(r.technique)),
                          action=r.action, enabled=r.enabled, tags=list(r.tags),
                          source=r.source)
        return out

    def Release(self, request, context):
        if self.release_fn is None:
            return pb.ReleaseResponse(status="failed", detail="this agent has no response "
                                                              "stage")
        status, detail = self.release_fn(request.namespace, request.pod)
        return pb.ReleaseResponse(status=status, detail=detail)

    def GetStatus(self, request, context):
        s = self.status_fn()
        out = pb.GetStatusResponse(node=s.get("node", ""), uptime_seconds=s.get("uptime", 0.0),
                                   rules_loaded=s.get("rules_loaded", 0),
                                   last_reload_error=s.get("last_reload_error", ""),
                                   last_sequence=self.hub.journal.last_seq)
        out.events_seen.update(s.get("events_seen", {}))
        out.events_lost.update(s.get("events_lost", {}))
        out.alerts_by_severity.update(self.hub.by_severity)
        for sub in list(self.hub.subscribers):
            out.subscribers.add(peer=sub.peer, sent=sub.sent, dropped=sub.dropped)
        return out


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class ApiServer:
    def __init__(self, hub: AlertHub, rules_fn, status_fn, listen=("127.0.0.1:50051",),
                 tls_cert: str = "", tls_key: str = "", tls_client_ca: str = "",
                 workers: int = 16, release_fn=None):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
        self.service = AlertsService(hub, rules_fn, status_fn, release_fn=release_fn)
        pb_grpc.add_AlertsServicer_to_server(self.service, self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = (pb.DESCRIPTOR.services_by_name["Alerts"].full_name,
                 health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, self.server)
        creds = None
        if tls_cert:
            creds = grpc.ssl_server_credentials(
                [(_read(tls_key), _read(tls_cert))],
                root_certificates=_read(tls_client_ca) if tls_client_ca else None,
                require_client_auth=bool(tls_client_ca))
        self.ports = []
        for addr in listen:
            if addr.startswith("unix://"):
                path = addr[len("unix://"):]
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                if os.path.exists(path):
                    os.unlink(path)
                self.ports.append(self.server.add_insecure_port(addr))
            elif creds is not None:
                self.ports.append(self.server.add_secure_port(addr, creds))
            else:
                self.ports.append(self.server.add_insecure_port(addr))
        self.started = time.monotonic()

    def start(self) -> None:
        self.server.start()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.health.set("mamori.v1.Alerts", health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float = 1.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace)
