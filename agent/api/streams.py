"""Subscribe streams on the asyncio gRPC server (server.py): what they may take, and when
they end.

  capacity   a stream is a coroutine on the API's event loop, not a thread: idle or stalled
             streams never take what GetStatus, ListRules and the health check answer
             with. At most api.max_streams streams are open in all (the main and the admin
             sockets together) and api.max_streams_per_client per client; one more is
             refused with RESOURCE_EXHAUSTED saying which limit.
  a client   over mutual TLS: its certificate's subject, however many connections it opens;
             over TCP without a client certificate (loopback, development): its address
             without the port; on a unix socket: everyone connected to that server's unix
             sockets — grpc gives the server no peer credentials (grpc/grpc#15511) and the
             same peer string, "unix:", for every connection — so the main socket is one
             client and the admin socket another.
  stalls     a stream whose client has not read for api.stall_timeout_s — a write the
             transport has not taken for that long (the client's flow-control window is
             full; its queue fills meanwhile, bounded by alerts and bytes, agent/alerts/
             hub.py) — is ended with RESOURCE_EXHAUSTED: unsubscribed at once (its queue is
             freed), and told. A notice cannot be written in-stream to a client that does
             not read, so the status details say it, and the trailing metadata
             `mamori-notice-bin` carries it as a StreamNotice (stalled,
             resume_from_sequence): the client gets it after what was already sent, and
             resumes from the journal with since_sequence. grpc sends a status only after
             the data before it, and the asyncio server cannot reset one stream, so until
             the client reads again or disconnects the ended stream keeps its slot (one of
             its client's api.max_streams_per_client) and what the transport holds — never
             a queue. Peers that vanish without closing are found by keepalive pings
             (server.py).
  blocking   journal reads (the replay, first_seq) run in a thread pool, never on the loop.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter

import grpc

try:                                     # what a batch fails with when the peer went away
    from grpc._cython.cygrpc import ExecuteBatchError
except ImportError:                      # pragma: no cover - another grpc layout
    class ExecuteBatchError(Exception):
        pass

from ..alerts.hub import BUSY, Subscriber
from ..text import printable
from .gen.mamori.v1 import alerts_pb2 as pb

log = logging.getLogger("mamori.api")
NOTICE_KEY = "mamori-notice-bin"
REPLAY_BATCH = 256               # journal records read per trip to the thread pool


class StreamSlots:
    """Subscribe streams open, in all and per client (and how many were refused or ended
    for stalling); shared by the servers of one ApiServer, used on its event loop only."""

    def __init__(self, total: int, per_client: int):
        self.total = max(1, total)
        self.per_client = max(1, min(per_client, self.total))
        self.open: Counter = Counter()
        self.count = 0
        self.refused = 0                 # streams refused, since start
        self.stalled = 0                 # streams ended for not reading, since start
        self._logged = 0.0

    def take(self, client: str) -> str:
        """'' and the slot is taken, or why not."""
        if self.open[client] >= self.per_client:
            why = (f"client {client} has {self.open[client]} Subscribe streams open, the most "
                   f"one client may have (api.max_streams_per_client: {self.per_client}); "
                   f"close one first")
        elif self.count >= self.total:
            why = (f"the agent has {self.count} Subscribe streams open, the most it serves "
                   f"(api.max_streams: {self.total}); try again later")
        else:
            self.open[client] += 1
            self.count += 1
            return ""
        self.refused += 1
        now = time.monotonic()
        if now - self._logged >= 10:                 # a refused flood is one line per 10 s
            self._logged = now
            log.warning("Subscribe refused (%d so far): %s", self.refused, printable(why))
        return why

    def give_back(self, client: str) -> None:
        self.open[client] -= 1
        self.count -= 1
        if self.open[client] <= 0:
            del self.open[client]


def client_of(context, local: str) -> str:
    """Who a stream counts against for api.max_streams_per_client (see the module's doc);
    local: what to call a connection on this server's unix sockets."""
    peer = context.peer() or ""
    if peer.startswith("unix:"):
        return local
    auth = context.auth_context() or {}
    if auth.get("transport_security_type") == [b"ssl"]:
        for key in ("x509_subject", "x509_common_name"):
            if auth.get(key):
                return "certificate " + auth[key][0].decode(errors="replace")
    host = peer.rpartition(":")[0]
    return host or peer


class Stalled(Exception):
    """The client did not take a message for api.stall_timeout_s."""


def _take(iterator, n: int) -> list:
    return list(itertools.islice(iterator, n))


class Stream:
    """One Subscribe stream: optional journal replay, then live alerts from the queue.

    position: every alert up to it was sent, refused by the filter or announced as missed;
    a stalled stream tells its client to resume after it."""

    def __init__(self, service, request, context, sub: Subscriber):
        self.svc = service
        self.req = request
        self.ctx = context
        self.sub = sub
        self.position = (request.since_sequence if request.HasField("since_sequence")
                         else sub.live_from - 1)

    async def write(self, msg: pb.Alert, seq: int = 0) -> None:
        try:
            async with asyncio.timeout(self.svc.stall_s):
                await self.ctx.write(msg)
        except TimeoutError:
            raise Stalled() from None
        if seq:
            self.sub.sent += 1
            self.position = seq

    async def run(self) -> None:
        self.svc.streams.add(self)
        try:
            if self.sub.requested > self.sub.maxsize:
                await self.write(self._capped())
            if self.req.HasField("since_sequence"):
                await self.replay(self.req.since_sequence)
            await self.live()
        except Stalled:
            await self.end_stalled()
        finally:
            self.svc.streams.discard(self)
        if self.svc.stopping and not self.ctx.done():      # closed by the server's stop
            await self.ctx.abort(grpc.StatusCode.UNAVAILABLE,
                                 f"the agent is stopping; subscribe again with "
                                 f"since_sequence={self.position} to resume")

    def _capped(self) -> pb.Alert:
        s, hub = self.sub, self.svc.hub
        return pb.Alert(notice=pb.StreamNotice(
            queue_size=s.maxsize, queue_bytes=s.max_bytes,
            message=f"queue_size {s.requested} is more than this agent gives a subscriber "
                    f"(alerts.subscriber_queue: {hub.queue_size}): this stream's queue holds "
                    f"at most {s.maxsize} alerts and {s.max_bytes} bytes of them "
                    f"(alerts.subscriber_queue_bytes)"))

    async def replay(self, since: int) -> None:
        to_proto = self.svc.to_proto
        loop, hub, pool = asyncio.get_running_loop(), self.svc.hub, self.svc.io_pool
        first = await loop.run_in_executor(pool, hub.journal.first_seq)
        if since + 1 < first:
            await self.write(pb.Alert(notice=pb.StreamNotice(
                journal_starts_at=first,
                message=f"alerts {since + 1}..{first - 1} are no longer in the journal; "
                        f"replay starts at {first}")))
        records = hub.replay(self.sub, since, first)
        while batch := await loop.run_in_executor(pool, _take, records, REPLAY_BATCH):
            for what, val in batch:
                if what == "gap":
                    a, b = val
                    await self.write(pb.Alert(notice=pb.StreamNotice(
                        not_persisted_first=a, not_persisted_last=b,
                        message=f"alerts {a}..{b} were delivered live but could not be "
                                f"written to the journal; they cannot be replayed")))
                    self.position = max(self.position, b)
                else:
                    await self.write(to_proto(val), val.seq)
        self.position = max(self.position, self.sub.live_from - 1)

    async def live(self) -> None:
        to_proto = self.svc.to_proto
        loop, sub = asyncio.get_running_loop(), self.sub
        arrived = asyncio.Event()

        def wake():                                  # in the publisher's thread
            try:
                loop.call_soon_threadsafe(arrived.set)
            except RuntimeError:                     # the loop is closed: the API stopped
                pass
        while not sub.closed:
            item = sub.poll()
            self.position = max(self.position, sub.skipped_upto)
            if item is BUSY:
                await asyncio.sleep(0)
            elif item is None:
                arrived.clear()
                if sub.arm(wake):
                    try:
                        await arrived.wait()
                    finally:
                        sub.disarm()
            elif item[0] == "missed":
                count, resume = item[1]
                await self.write(pb.Alert(notice=pb.StreamNotice(
                    missed=count, resume_from_sequence=resume,
                    message=f"{count} alerts were not sent to this subscriber (its queue "
                            f"was full; counted before its filter); subscribe again with "
                            f"since_sequence={resume - 1} to get the matching ones from "
                            f"the journal")))
                self.position = max(self.position, sub.missed_upto)
            else:
                await self.write(to_proto(item[1]), item[1].seq)

    async def end_stalled(self) -> None:
        sub, resume = self.sub, self.position + 1
        self.svc.slots.stalled += 1
        msg = (f"this stream is ended: its client has not read for {self.svc.stall_s:g} s "
               f"(api.stall_timeout_s; {len(sub.queue)} alerts, {sub.bytes} bytes were "
               f"waiting in its queue of {sub.maxsize} alerts and {sub.max_bytes} bytes); "
               f"subscribe again with since_sequence={resume - 1} to get the rest from the "
               f"journal")
        log.warning("Subscribe stream of %s (%s) ended: not read for %g s; it resumes from "
                    "sequence %d", printable(sub.client), printable(sub.peer),
                    self.svc.stall_s, resume)
        notice = pb.StreamNotice(stalled=True, resume_from_sequence=resume,
                                 missed=sub.missed, message=msg)
        # its queue goes now; the status follows what the transport still holds, so it
        # completes only once the client reads again or goes away: until then the stream
        # keeps its slot (its client's own), and nothing else
        self.svc.hub.unsubscribe(sub)
        try:
            await self.ctx.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, msg,
                                 trailing_metadata=((NOTICE_KEY, notice.SerializeToString()),))
        except ExecuteBatchError:        # the connection closed first: nobody to tell
            pass
