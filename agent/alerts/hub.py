"""Fan-out: every alert gets the next sequence number, goes into the journal, then to each
subscriber's bounded queue. A slow subscriber never slows the pipeline: publishing only
appends to each queue (no filter runs there); each subscriber's own stream (a coroutine
of the API, agent/api/streams.py) takes from its queue and applies its filter. When a queue is full the alert is counted as missed
for that subscriber, and its stream tells it how many and from which sequence to resume —
the journal still has them.

Subscribing registers the queue and notes the sequence live delivery starts at under the
same lock that publishing takes, so that replaying the journal up to that point and then
draining the queue has no gap and no duplicate at the seam.

A journal that cannot be written does not stop publishing (agent/alerts/journal.py): the
alert is delivered all the same, and `on_journal_change` is told when persisting stops and
when it resumes.

Pod name patterns are RE2 (linear time: no backtracking, no backreferences or lookaround)
of at most MAX_POD_REGEX characters: a subscriber's pattern cannot stall its own stream,
let alone the agent.

Each queue is bounded twice: by alerts (alerts.subscriber_queue; a subscriber may ask for
fewer, never more) and by bytes (alerts.subscriber_queue_bytes), counting each record's
serialized size (msgpack, as the journal writes it; the protobuf a stream sends is about as
long), computed once per alert in publish, only when someone subscribes. A record larger
than the whole byte budget still goes into an empty queue. The records are shared: a
queue holds references, so what subscribers pin is at most the union of their queues.
A subscriber whose stream does not drain its queue is ended by its stream
(agent/api/server.py: api.stall_timeout_s); its queue goes with it.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace

import msgpack
import re2

from ..severity import RANK
from .alert import Alert
from .journal import Journal

MAX_POD_REGEX = 256
DEFAULT_QUEUE_BYTES = 16 << 20
BUSY = ("busy", None)      # poll(): its budget went on records the filter refused
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 1 << 20


def record_size(rec: dict) -> int:
    """A record's serialized size in bytes (rec: Alert.to_dict()): what the queues' byte
    bounds count."""
    try:
        return len(msgpack.packb(rec, use_bin_type=True, default=str))
    except Exception:  # noqa: BLE001 - an estimate; the journal says what cannot be packed
        return 4096


def compile_pod_regex(pattern: str):
    """An RE2 pattern, compiled; ValueError saying what is wrong with it."""
    if len(pattern) > MAX_POD_REGEX:
        raise ValueError(f"pod_regex is {len(pattern)} characters long; at most "
                         f"{MAX_POD_REGEX} are allowed")
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as e:
        why = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) \
            else str(e)
        raise ValueError(f"pod_regex is not a valid RE2 pattern: {why}") from None


@dataclass
class Matcher:
    min_severity: int = 0          # severity.RANK value
    tactics: frozenset = frozenset()
    techniques: frozenset = frozenset()
    rules: frozenset = frozenset()
    namespaces: frozenset = frozenset()
    pod_regex: object = None       # compiled RE2 pattern (compile_pod_regex) or None
    nodes: frozenset = frozenset()

    def empty(self) -> bool:
        return not (self.min_severity or self.tactics or self.techniques or self.rules or
                    self.namespaces or self.pod_regex or self.nodes)

    def matches(self, a: Alert) -> bool:
        """Every field that is set must match."""
        if self.min_severity and RANK.get(a.severity, 0) < self.min_severity:
            return False
        if self.tactics and a.tactic_id not in self.tactics:
            return False
        if self.techniques:
            tech = a.technique_id
            if tech not in self.techniques and tech.split(".")[0] not in self.techniques:
                return False
        if self.rules and a.rule not in self.rules:
            return False
        f = a.fields
        if self.namespaces and f.get("k8s.ns") not in self.namespaces:
            return False
        if self.pod_regex is not None and not self.pod_regex.search(str(f.get("k8s.pod") or "")):
            return False
        if self.nodes and a.node not in self.nodes:
            return False
        return True


@dataclass
class Filter:
    allow: Matcher = field(default_factory=Matcher)
    deny: Matcher | None = None

    def __call__(self, rec: Alert) -> bool:
        if not self.allow.matches(rec):
            return False
        return not (self.deny is not None and not self.deny.empty() and self.deny.matches(rec))


class Subscriber:
    def __init__(self, flt: Filter, maxsize: int, peer: str = "",
                 max_bytes: int = DEFAULT_QUEUE_BYTES, client: str = "", requested: int = 0):
        self.filter = flt
        self.maxsize = maxsize          # alerts its queue may hold
        self.max_bytes = max_bytes      # and their serialized size
        self.requested = requested      # the queue_size it asked for (0: the default)
        self.peer = peer
        self.client = client or peer    # what api.max_streams_per_client counts
        self.queue: deque = deque()     # (Alert, size)
        self.bytes = 0
        self.cond = threading.Condition()
        self.live_from = 0
        self.missed = 0
        self.first_missed = 0
        self.last_missed = 0
        # with the last ('missed', …) poll()ed: every record up to it was taken before or is
        # counted in that notice (the queue is in order, so all before its head were)
        self.missed_upto = 0
        self.sent = 0
        self.dropped = 0
        self.skipped_upto = 0           # the last record its filter refused (poll)
        self.closed = False
        self._waker = None              # arm(): called once when something arrives

    def offer(self, rec: Alert, size: int = 0) -> None:
        """In the publisher: enqueue or count, nothing else (no filter runs here)."""
        with self.cond:
            if len(self.queue) >= self.maxsize or (self.queue and
                                                   self.bytes + size > self.max_bytes):
                if not self.missed:
                    self.first_missed = rec.seq
                self.missed += 1
                self.last_missed = rec.seq
                self.dropped += 1
                return
            self.queue.append((rec, size))
            self.bytes += size
            self.cond.notify()
            waker, self._waker = self._waker, None
        if waker is not None:
            waker()

    def _pop(self):
        """Under the lock: ('missed', …), ('rec', record), or None when nothing is queued."""
        if self.missed and (not self.queue or self.queue[0][0].seq > self.first_missed):
            out = ("missed", (self.missed, self.first_missed))
            self.missed_upto = (self.queue[0][0].seq - 1 if self.queue
                                else self.last_missed)
            self.missed = 0
            return out
        if not self.queue:
            return None
        rec, size = self.queue.popleft()
        self.bytes -= size
        return ("rec", rec)

    def take(self, timeout: float):
        """In a thread: ('alert', rec) for the next alert that passes the filter |
        ('missed', (count, resume_from)) | None on timeout. The filter runs outside the
        queue's lock, so that publishing never waits for it."""
        deadline = time.monotonic() + timeout
        while True:
            with self.cond:
                if not self.queue and not self.missed and not self.closed:
                    self.cond.wait(max(0.0, deadline - time.monotonic()))
                item = self._pop()
            if item is None:
                return None
            if item[0] == "missed":
                return item
            if self.filter(item[1]):
                return ("alert", item[1])
            self.skipped_upto = item[1].seq
            if time.monotonic() >= deadline:
                return None

    def poll(self, budget: int = 256):
        """Without waiting (the API's event loop): like take(), or None when the queue is
        empty, or BUSY when `budget` records in a row did not pass the filter (so that one
        stream does not keep the loop to itself)."""
        for _ in range(budget):
            with self.cond:
                item = self._pop()
            if item is None or item[0] == "missed":
                return item
            if self.filter(item[1]):
                return ("alert", item[1])
            self.skipped_upto = item[1].seq
        return BUSY

    def arm(self, waker) -> bool:
        """Have waker() called (once, from the publisher's thread) when the next alert
        arrives or the subscriber is closed; False, and nothing armed, if there is something
        to take already."""
        with self.cond:
            if self.queue or self.missed or self.closed:
                return False
            self._waker = waker
            return True

    def disarm(self) -> None:
        with self.cond:
            self._waker = None

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
            waker, self._waker = self._waker, None
        if waker is not None:
            waker()


class AlertHub:
    def __init__(self, journal: Journal, queue_size: int = 10000,
                 queue_bytes: int = DEFAULT_QUEUE_BYTES):
        self.journal = journal
        self.queue_size = queue_size          # alerts.subscriber_queue: the most anyone gets
        self.queue_bytes = queue_bytes        # alerts.subscriber_queue_bytes
        self.subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self.published = 0
        self.by_severity: dict[str, int] = {}
        # called (outside the lock) with ("failed" | "recovered", info) when the journal
        # stops or starts persisting again
        self.on_journal_change = None

    def publish(self, alert: Alert) -> Alert:
        """Journal the alert, then hand it to every subscriber. Returns it with its sequence
        number. Never raises for the journal: an alert it cannot write is delivered all the
        same."""
        record = alert.to_dict()
        with self._lock:
            seq = self.journal.append(record)
            alert = replace(alert, seq=seq)
            changes = self.journal.take_change()
            self.published += 1
            sev = alert.severity
            self.by_severity[sev] = self.by_severity.get(sev, 0) + 1
            if self.subscribers:
                size = record_size(record)
                for s in self.subscribers:
                    s.offer(alert, size)
        if changes and self.on_journal_change is not None:
            for what, info in changes:
                self.on_journal_change(what, info)
        return alert

    def subscribe(self, flt: Filter, peer: str = "", queue_size: int = 0,
                  queue_bytes: int = 0, client: str = "") -> Subscriber:
        """queue_size: what the subscriber asked for (0: the default), given up to the
        configured queue_size; queue_bytes: its byte bound (0: the hub's)."""
        granted = min(queue_size, self.queue_size) if queue_size > 0 else self.queue_size
        sub = Subscriber(flt, granted, peer, queue_bytes or self.queue_bytes, client,
                         queue_size)
        with self._lock:
            sub.live_from = self.journal.last_seq + 1
            self.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.close()
        with self._lock:
            if sub in self.subscribers:
                self.subscribers.remove(sub)

    def replay(self, sub: Subscriber, since: int, journal_start: int | None = None):
        """The journal's matching records after `since`, up to where live delivery starts:
        ('alert', Alert), and ('gap', (first, last)) for alerts it lacks because it could not
        write them. journal_start: its oldest sequence (first_seq()) if the caller knows it;
        what rotation deleted before it is not a gap (the caller says so itself)."""
        prev = since if journal_start is not None and since + 1 >= journal_start else None
        for d in self.journal.read_after(since, until=sub.live_from):
            try:
                rec = Alert.from_dict(d)
            except ValueError:         # not one this agent wrote: a gap, said as one
                continue
            seq = rec.seq
            if prev is not None and seq > prev + 1:
                yield ("gap", (prev + 1, seq - 1))
            prev = seq
            if sub.filter(rec):
                yield ("alert", rec)
        if prev is not None and sub.live_from > prev + 1:
            yield ("gap", (prev + 1, sub.live_from - 1))
