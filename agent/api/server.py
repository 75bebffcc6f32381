"""The gRPC API (proto/mamori/v1/alerts.proto): Subscribe, ListRules, GetStatus, Release,
plus gRPC health checking and server reflection (grpcurl works).

Who may connect, and who may do what:
  unix sockets   made 0600 (0660 and the group's with api.socket_group) without a window:
                 bound in a private 0700 directory, given their mode, then renamed into
                 place. A directory the agent makes for them is 0700 (0750 with a group).
  TCP            only with mutual TLS (api.tls_client_ca); plaintext or server-only TLS only
                 on loopback with api.allow_insecure_tcp (development).
  Release        needs an admin identity: a client on a unix socket only root can open (no
                 socket_group, or api.admin_socket, always root-only), or a client
                 certificate whose common name, subject or a subject alternative name is in
                 api.admin_identities. PERMISSION_DENIED otherwise. grpc does not give a
                 server the peer's SO_PEERCRED (grpc/grpc#15511), so "root" is decided by
                 the socket's permissions: nobody else can connect to it.

What a client may take (issue 21, findings 9 and 10; streams.py): the servers run on grpc's
asyncio server in one thread of their own, so that a Subscribe stream costs a coroutine, not
a thread, and GetStatus, ListRules and the health check answer however many streams are
open; streams are capped in all and per client (api.max_streams, max_streams_per_client);
a stream whose client stops reading is ended after api.stall_timeout_s; keepalive pings
close connections to peers that vanished.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..alerts.alert import Alert
from ..alerts.hub import AlertHub, Filter, Matcher, compile_pod_regex
from ..fields import OTHER, REGISTRY
from ..severity import SEVERITIES
from ..text import printable
from ..vulndb.ecosystems import of_inventory
from . import ApiError, listener_problem
from .sockets import bind_unix, resolve_group
from .streams import Stream, StreamSlots, client_of
from .gen.mamori.v1 import alerts_pb2 as pb
from .gen.mamori.v1 import alerts_pb2_grpc as pb_grpc

log = logging.getLogger("mamori.api")
SEVERITY_PB = {s: pb.Severity.Value(f"SEVERITY_{s.upper()}") for s in SEVERITIES}
SEVERITY_NAME = {v: k for k, v in SEVERITY_PB.items()}
# Kubernetes object names: DNS subdomain (pods) and label (namespaces)
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _s(v) -> str:
    return "" if v is None else str(v)


def _other_text(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), default=list)


def _put(a: pb.Alert, path: str, v) -> None:
    """One field's value at its place in the message (agent/fields.py: Field.proto)."""
    *parents, last = path.split(".")
    msg = a
    for p in parents:
        msg = getattr(msg, p)
    if last == "ancestors":
        for anc in v:
            msg.ancestors.add(pid=int(anc.get("pid", 0)), exe=_s(anc.get("exe")),
                              exec_id=_s(anc.get("exec_id")), name=_s(anc.get("name")))
        return
    slot = getattr(msg, last)
    if isinstance(v, dict):
        slot.update({k: _s(x) for k, x in v.items()})
    elif isinstance(v, (list, tuple)):
        slot.extend(_s(x) for x in v)
    elif isinstance(v, bool) or isinstance(slot, bool):
        setattr(msg, last, bool(v))
    elif isinstance(slot, int):
        setattr(msg, last, int(v))
    else:
        setattr(msg, last, _s(v))


def to_proto(rec: Alert) -> pb.Alert:
    """An alert as the protobuf message. Each field goes where the field registry says
    (agent/fields.py), those without a typed place into event.other by dotted name as text
    (JSON for numbers, booleans, lists and maps); an agent's own alert's details go there
    too. Empty values are left unset, so a host event has no container, and one without
    drift no drift."""
    f = rec.fields
    a = pb.Alert(sequence=rec.seq, id=rec.id, time=rec.time, node=rec.node, rule=rec.rule,
                 severity=SEVERITY_PB.get(rec.severity, 0), output=rec.output,
                 source=rec.source)
    a.tactic.id, a.tactic.name = rec.tactic_id, rec.tactic_name
    a.technique.id, a.technique.name = rec.technique_id, rec.technique_name
    kind = f.get("event.kind") or ""
    other = {}
    for name, v in f.items():
        if v is None:
            continue
        fld = REGISTRY.get(name)
        path = fld.proto_path(kind) if fld is not None else OTHER
        if path == OTHER:
            other[name] = _other_text(v)
        elif v:                      # proto3: an empty value is the unset one
            _put(a, path, v)
    if other:
        a.event.other.update(other)
    r = rec.response
    if r is not None:
        a.response.action, a.response.status, a.response.detail = r.action, r.status, r.detail
    return a


def matcher_of(m: pb.Matcher) -> Matcher:
    """ValueError (INVALID_ARGUMENT for the caller) for a pattern that is not RE2 or too
    long."""
    return Matcher(
        min_severity=int(m.min_severity), tactics=frozenset(m.tactics),
        techniques=frozenset(m.techniques), rules=frozenset(m.rules),
        namespaces=frozenset(m.namespaces),
        pod_regex=compile_pod_regex(m.pod_regex) if m.pod_regex else None,
        nodes=frozenset(m.nodes))


def _identities(auth: dict) -> list[str]:
    """The verified client certificate's names: common name, subject, alternative names."""
    out = []
    for key in ("x509_common_name", "x509_subject", "x509_subject_alternative_name"):
        out += [v.decode(errors="replace") for v in auth.get(key, ())]
    return out


class Access:
    """Who may call the admin RPC (Release) on one gRPC server."""

    def __init__(self, unix_admin: bool, unix_why: str = "", mutual_tls: bool = False,
                 admin_identities=()):
        self.unix_admin = unix_admin      # only root can connect to this server's sockets
        self.unix_why = unix_why
        self.mutual_tls = mutual_tls
        self.admin_identities = frozenset(admin_identities)

    def admin(self, context) -> tuple[bool, str]:
        """(allowed, who the caller is or why not)."""
        peer = context.peer() or ""
        if peer.startswith("unix:"):
            if self.unix_admin:
                return True, "root (root-only unix socket)"
            return False, self.unix_why
        auth = context.auth_context() or {}
        if not self.mutual_tls or auth.get("transport_security_type") != [b"ssl"]:
            return False, f"{peer}: no verified client certificate"
        names = _identities(auth)
        for n in names:
            if n in self.admin_identities:
                return True, f"certificate {n!r}"
        return False, (f"{peer}: client certificate {names[0] if names else '?'!r} is not in "
                       f"api.admin_identities")


class AlertsService(pb_grpc.AlertsServicer):
    """The Alerts RPCs, as coroutines on the API's event loop: what blocks (Release: the
    Kubernetes API; the journal) runs in thread pools."""
    to_proto = staticmethod(to_proto)

    def __init__(self, hub: AlertHub, rules_fn, status_fn, release_fn=None,
                 access: Access | None = None, slots: StreamSlots | None = None,
                 local: str = "unix:", stall_s: float = 30.0, queue_bytes: int = 0,
                 io_pool=None, admin_pool=None, inventory_fn=None):
        self.inventory_fn = inventory_fn  # -> InventoryWorker (None: inventory is off)
        self.release_fn = release_fn      # (namespace, pod, by) -> (status, detail)
        self.hub = hub
        self.rules_fn = rules_fn          # -> (ruleset or None, catalog)
        self.status_fn = status_fn        # -> dict for GetStatusResponse
        self.access = access or Access(False, "no admin identity on this server")
        self.slots = slots or StreamSlots(64, 8)
        self.local = local                # the client every unix-socket connection is
        self.stall_s = stall_s            # api.stall_timeout_s
        self.queue_bytes = queue_bytes    # alerts.subscriber_queue_bytes (0: the hub's)
        self.io_pool = io_pool            # journal reads
        self.admin_pool = admin_pool      # Release
        self.streams: set = set()          # the Subscribe streams being served (Stream)
        self.stopping = False

    async def Subscribe(self, request, context):
        try:
            flt = Filter(matcher_of(request.allow), matcher_of(request.deny))
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        client = client_of(context, self.local)
        why = self.slots.take(client)
        if why:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, why)
        try:
            sub = self.hub.subscribe(flt, context.peer(), request.queue_size,
                                     self.queue_bytes, client)
            try:
                await Stream(self, request, context, sub).run()
            finally:
                self.hub.unsubscribe(sub)
        finally:
            self.slots.give_back(client)

    async def ListRules(self, request, context):
        rs, catalog = self.rules_fn()
        out = pb.ListRulesResponse()
        for r in (rs.rules if rs else ()):
            out.rules.add(name=r.name, desc=r.desc, events=list(r.events),
                          severity=SEVERITY_PB.get(r.severity, 0),
                          tactic=pb.Tactic(id=r.tactic, name=catalog.tactic_name(r.tactic)),
                          technique=pb.Technique(id=r.technique,
                                                 name=catalog.technique_name(r.technique)),
                          action=r.action, enabled=r.enabled, tags=list(r.tags),
                          defined_at=r.defined_at)
        return out

    async def Release(self, request, context):
        ns, pod = request.namespace, request.pod
        target = printable(f"{ns}/{pod}")
        ok, who = self.access.admin(context)
        if not ok:
            log.warning("Release of %s refused: %s", target, printable(who))
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"Release needs an admin identity (root on a root-only unix "
                                f"socket, or a client certificate named in "
                                f"api.admin_identities): {who}")
        if not (_NAME.fullmatch(ns) and len(ns) <= 63 and _NAME.fullmatch(pod)):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"not a Kubernetes namespace and pod name: {target}")
        if self.release_fn is None:
            return pb.ReleaseResponse(status="failed", detail="this agent has no response "
                                                              "stage")
        status, detail = await asyncio.get_running_loop().run_in_executor(
            self.admin_pool, self.release_fn, ns, pod, who)
        log.warning("Release of %s by %s: %s: %s", target, printable(who), status,
                    printable(detail))
        if status == "not-isolated":
            await context.abort(grpc.StatusCode.NOT_FOUND, detail)
        return pb.ReleaseResponse(status=status, detail=detail)

    async def GetStatus(self, request, context):
        s = self.status_fn()
        out = pb.GetStatusResponse(node=s.get("node", ""), uptime_seconds=s.get("uptime", 0.0),
                                   rules_loaded=s.get("rules_loaded", 0),
                                   last_reload_error=s.get("last_reload_error", ""),
                                   last_sequence=self.hub.journal.last_seq,
                                   journal_persisting=self.hub.journal.persisting,
                                   journal_error=("" if self.hub.journal.persisting
                                                  else self.hub.journal.last_error),
                                   alerts_not_persisted=self.hub.journal.unpersisted_total,
                                   health=s.get("health", ""),
                                   max_streams=self.slots.total,
                                   max_streams_per_client=self.slots.per_client,
                                   streams_stalled=self.slots.stalled,
                                   streams_open=self.slots.count)
        out.events_seen.update(s.get("events_seen", {}))
        out.events_lost.update(s.get("events_lost", {}))
        out.alerts_by_severity.update(self.hub.by_severity)
        for sub in list(self.hub.subscribers):
            out.subscribers.add(peer=sub.peer, sent=sub.sent, dropped=sub.dropped,
                                client=sub.client, queue_size=sub.maxsize,
                                queue_bytes=sub.max_bytes, queued=len(sub.queue),
                                queued_bytes=max(0, sub.bytes))
        return out


    async def ListInventories(self, request, context):
        worker = self.inventory_fn() if self.inventory_fn is not None else None
        if worker is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "the inventory is off on this agent (inventory.enabled)")
        from ..inventory.view import document, os_name
        store = worker.store
        if request.image:
            inv = store.find(request.image)
            if inv is None:
                await context.abort(grpc.StatusCode.NOT_FOUND,
                                    f"no image {printable(request.image)} on this node")
            invs = [inv]
        else:
            invs = sorted(store.all(), key=lambda i: (i.image or i.key))
        out = pb.ListInventoriesResponse()
        for inv in invs:
            out.images.add(key=inv.key, image=inv.image, image_id=inv.image_id,
                           os=os_name(inv), packages=len(inv.packages), state=inv.state,
                           reason=inv.reason, containers=sorted(inv.containers),
                           errors=list(inv.errors), memory_limit_bytes=inv.memory_limit,
                           seconds=inv.seconds, files_seen=inv.files_seen,
                           layers=list(inv.layers),
                           ecosystems=of_inventory(inv.os.id, {p.kind for p in inv.packages}))
        if request.image and request.format:
            try:
                out.document = await asyncio.get_running_loop().run_in_executor(
                    self.io_pool, document, invs[0], request.format)
            except ValueError as e:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return out


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class ApiServer:
    """The gRPC servers — the main one on api.listen, and the root-only admin socket — on
    grpc's asyncio server, in an event loop on a thread of their own ("mamori-api").
    Sockets are bound when it is made (ApiError then), served from start()."""

    def __init__(self, hub: AlertHub, rules_fn, status_fn,
                 listen=("unix:///run/mamori/mamori.sock",),
                 tls_cert: str = "", tls_key: str = "", tls_client_ca: str = "",
                 workers: int = 16, release_fn=None, admin_identities=(),
                 allow_insecure_tcp: bool = False, socket_group="", admin_socket: str = "",
                 max_streams: int = 64, max_streams_per_client: int = 8,
                 stall_timeout_s: float = 30.0, keepalive_time_s: float = 60.0,
                 keepalive_timeout_s: float = 20.0, queue_bytes: int = 0, inventory_fn=None):
        self.inventory_fn = inventory_fn
        mtls = bool(tls_cert and tls_key and tls_client_ca)
        for addr in listen:
            why = listener_problem(addr, mtls, allow_insecure_tcp)
            if why:
                raise ApiError(f"api.listen: {why}")
        if admin_socket and not admin_socket.startswith("unix:///"):
            raise ApiError(f"api.admin_socket: {admin_socket}: must be unix:///path")
        gid = resolve_group(socket_group)
        unix_why = (f"the unix socket is open to group {socket_group}: Release needs the "
                    f"root-only socket {admin_socket or '(api.admin_socket, not set)'}")
        creds = None
        if tls_cert:
            creds = grpc.ssl_server_credentials(
                [(_read(tls_key), _read(tls_cert))],
                root_certificates=_read(tls_client_ca) if tls_client_ca else None,
                require_client_auth=bool(tls_client_ca))
        ms = lambda s: max(1, int(s * 1000))          # noqa: E731
        self.options = (
            # dead peers (gone without closing): a ping every keepalive_time_s, the
            # connection and its streams closed when none is answered in keepalive_timeout_s
            ("grpc.keepalive_time_ms", ms(keepalive_time_s)),
            ("grpc.keepalive_timeout_ms", ms(keepalive_timeout_s)),
            ("grpc.http2.ping_timeout_ms", ms(keepalive_timeout_s)),
            ("grpc.http2.max_pings_without_data", 0),  # idle streams send no data
            # clients may ping every 10 s (their own keepalive) without a GOAWAY
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        )
        self.slots = StreamSlots(max_streams, max_streams_per_client)
        self.stall_s = float(stall_timeout_s)
        self.queue_bytes = queue_bytes
        self.io_pool = futures.ThreadPoolExecutor(max(1, workers),
                                                  thread_name_prefix="mamori-api-io")
        self.admin_pool = futures.ThreadPoolExecutor(2, thread_name_prefix="mamori-api-admin")
        self._sockets: list[tuple[str, int]] = []      # (path, inode) to remove at stop
        self.server = self.admin_server = self.service = self.admin_service = None
        self.health = self.admin_health = None
        self._stopped = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mamori-api",
                                        daemon=True)
        self._thread.start()
        try:
            self._call(self._build(hub, rules_fn, status_fn, listen, creds, gid, release_fn,
                                   Access(gid is None, unix_why, mtls, admin_identities),
                                   admin_socket))
        except BaseException:
            self._close()
            raise
        self.started = time.monotonic()

    def _call(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _build(self, hub, rules_fn, status_fn, listen, creds, gid, release_fn, access,
                     admin_socket):
        unix = [a[len("unix://"):] for a in listen if a.startswith("unix://")]
        self.server, self.service, self.health = self._server(
            hub, rules_fn, status_fn, release_fn, access, "unix:" + ",".join(unix))
        self.ports = []
        for addr in listen:
            if addr.startswith("unix://"):
                port, ino = bind_unix(self.server, addr[len("unix://"):], gid)
                self._sockets.append((addr[len("unix://"):], ino))
                self.ports.append(port)
            elif creds is not None:
                self.ports.append(self.server.add_secure_port(addr, creds))
            else:
                self.ports.append(self.server.add_insecure_port(addr))
        if admin_socket:
            path = admin_socket[len("unix://"):]
            self.admin_server, self.admin_service, self.admin_health = self._server(
                hub, rules_fn, status_fn, release_fn, Access(True), "unix:" + path)
            shared = any(os.path.dirname(p) == os.path.dirname(path) for p, _ in self._sockets)
            _, ino = bind_unix(self.admin_server, path, None, tighten_dir=not shared)
            self._sockets.append((path, ino))

    def _server(self, hub, rules_fn, status_fn, release_fn, access, local):
        server = grpc.aio.server(migration_thread_pool=self.io_pool, options=self.options)
        service = AlertsService(hub, rules_fn, status_fn, release_fn=release_fn,
                                access=access, slots=self.slots, local=local,
                                stall_s=self.stall_s, queue_bytes=self.queue_bytes,
                                io_pool=self.io_pool, admin_pool=self.admin_pool,
                                inventory_fn=self.inventory_fn)
        pb_grpc.add_AlertsServicer_to_server(service, server)
        hs = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(hs, server)
        names = (pb.DESCRIPTOR.services_by_name["Alerts"].full_name,
                 health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
        return server, service, hs

    async def _start(self) -> None:
        for server, hs in ((self.server, self.health), (self.admin_server, self.admin_health)):
            if server is None:
                continue
            await server.start()
            await hs.set("", health_pb2.HealthCheckResponse.SERVING)
            await hs.set("mamori.v1.Alerts", health_pb2.HealthCheckResponse.SERVING)

    def start(self) -> None:
        self._call(self._start(), 30)

    async def _stop(self, grace: float) -> None:
        servers = [(server, hs, svc) for server, hs, svc in (
            (self.server, self.health, self.service),
            (self.admin_server, self.admin_health, self.admin_service)) if server is not None]
        for _, hs, svc in servers:
            await hs.enter_graceful_shutdown()
            svc.stopping = True                # streams end now, saying where to resume
            for stream in list(svc.streams):
                stream.sub.close()
        await asyncio.gather(*(server.stop(grace) for server, _, _ in servers))

    def stop(self, grace: float = 1.0, remove_sockets: bool = True) -> None:
        """Stop serving (streams are cancelled after `grace` seconds), and remove the sockets
        unless told not to (as a crash would leave them)."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._call(self._stop(grace), grace + 30)
        finally:
            self._close()
        if not remove_sockets:
            return
        for path, ino in self._sockets:          # ours still: not one a newer agent made
            try:
                if os.lstat(path).st_ino == ino:
                    os.unlink(path)
            except OSError:
                pass

    def _close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()
        self.io_pool.shutdown(wait=False, cancel_futures=True)
        self.admin_pool.shutdown(wait=False, cancel_futures=True)
