"""Fan-out: every alert gets the next sequence number, goes into the journal, then to each
subscriber's bounded queue. A slow subscriber never slows the pipeline: when its queue is
full the alert is counted as missed for it, and its stream tells it how many and from which
sequence to resume — the journal still has them.

Subscribing registers the queue and notes the sequence live delivery starts at under the
same lock that publishing takes, so that replaying the journal up to that point and then
draining the queue has no gap and no duplicate at the seam.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from .journal import Journal

SEVERITY_RANK = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}


@dataclass
class Matcher:
    min_severity: int = 0          # SEVERITY_RANK value
    tactics: frozenset = frozenset()
    techniques: frozenset = frozenset()
    rules: frozenset = frozenset()
    namespaces: frozenset = frozenset()
    pod_regex: object = None       # compiled re or None
    nodes: frozenset = frozenset()

    def empty(self) -> bool:
        return not (self.min_severity or self.tactics or self.techniques or self.rules or
                    self.namespaces or self.pod_regex or self.nodes)

    def matches(self, rec: dict) -> bool:
        """Every field that is set must match."""
        if self.min_severity and SEVERITY_RANK.get(rec.get("severity"), 0) < self.min_severity:
            return False
        if self.tactics and (rec.get("tactic") or {}).get("id") not in self.tactics:
            return False
        if self.techniques:
            tech = (rec.get("technique") or {}).get("id") or ""
            if tech not in self.techniques and tech.split(".")[0] not in self.techniques:
                return False
        if self.rules and rec.get("rule") not in self.rules:
            return False
        f = rec.get("fields") or {}
        if self.namespaces and f.get("k8s.ns") not in self.namespaces:
            return False
        if self.pod_regex is not None and not self.pod_regex.search(f.get("k8s.pod") or ""):
            return False
        if self.nodes and rec.get("node") not in self.nodes:
            return False
        return True


@dataclass
class Filter:
    allow: Matcher = field(default_factory=Matcher)
    deny: Matcher | None = None

    def __call__(self, rec: dict) -> bool:
        if not self.allow.matches(rec):
            return False
        return not (self.deny is not None and not self.deny.empty() and self.deny.matches(rec))


class Subscriber:
    def __init__(self, flt: Filter, maxsize: int, peer: str = ""):
        self.filter = flt
        self.maxsize = maxsize
        self.peer = peer
        self.queue: deque = deque()
        self.cond = threading.Condition()
        self.live_from = 0
        self.missed = 0
        self.first_missed = 0
        self.sent = 0
        self.dropped = 0
        self.closed = False

    def offer(self, rec: dict) -> None:
        if not self.filter(rec):
            return
        with self.cond:
            if len(self.queue) >= self.maxsize:
                if not self.missed:
                    self.first_missed = rec["seq"]
                self.missed += 1
                self.dropped += 1
                return
            self.queue.append(rec)
            self.cond.notify()

    def take(self, timeout: float):
        """('alert', rec) | ('missed', (count, resume_from)) | None on timeout."""
        with self.cond:
            if not self.queue and not self.missed and not self.closed:
                self.cond.wait(timeout)
            if self.missed and (not self.queue or self.queue[0]["seq"] > self.first_missed):
                out = ("missed", (self.missed, self.first_missed))
                self.missed = 0
                return out
            if self.queue:
                return ("alert", self.queue.popleft())
            return None

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class AlertHub:
    def __init__(self, journal: Journal, queue_size: int = 10000):
        self.journal = journal
        self.queue_size = queue_size
        self.subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self.published = 0
        self.by_severity: dict[str, int] = {}

    def publish(self, record: dict) -> int:
        """Journal the alert (record: Alert.to_dict()), then hand it to every subscriber.
        Returns its sequence number (also set as record["seq"])."""
        with self._lock:
            seq = self.journal.append(record)
            subs = list(self.subscribers)
            self.published += 1
            sev = record.get("severity", "")
            self.by_severity[sev] = self.by_severity.get(sev, 0) + 1
            for s in subs:
                s.offer(record)
        return seq

    def subscribe(self, flt: Filter, peer: str = "", queue_size: int = 0) -> Subscriber:
        sub = Subscriber(flt, min(queue_size, 1_000_000) or self.queue_size, peer)
        with self._lock:
            sub.live_from = self.journal.last_seq + 1
            self.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.close()
        with self._lock:
            if sub in self.subscribers:
                self.subscribers.remove(sub)

    def replay(self, sub: Subscriber, since: int):
        """The journal's matching records after `since`, up to where live delivery starts."""
        for rec in self.journal.read_after(since, until=sub.live_from):
            if sub.filter(rec):
                yield rec
