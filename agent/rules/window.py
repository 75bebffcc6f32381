"""Rules over time: a threshold (so many events, or so many distinct values of a field, in a
sliding window, per group) and a sequence (steps in order, in one group, within a window).

The state lives in the compiled rule and is fed by the evaluator one matching event at a
time, in event time (`event.ts`, the kernel's monotonic clock), so a recording replays the
same way. Every table is bounded: a rule keeps at most `max_groups` groups (the least
recently seen is dropped first, and counted), a threshold group at most `count` values, a
sequence group its steps; what is older than the window is dropped as the window slides.

One alert per burst: a group that fired stays quiet while its events keep coming less than
`within` apart, then starts counting again.
"""
from __future__ import annotations

import re
from collections import OrderedDict, deque
from dataclasses import dataclass

from .fields import FIELDS

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_NS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
MAX_WITHIN_NS = 3_600_000_000_000           # 1h
MAX_COUNT = 1000
MAX_STEPS = 8
# a rule's budget of remembered events (groups x values): a threshold of 10 keeps up to
# 4096 groups; one of 1000, 262.
STATE_BUDGET = 262_144
MAX_GROUPS = 4096
VALUES_SHOWN = 16                           # distinct values an alert lists
VALUE_CHARS = 256


def parse_duration(v) -> int:
    """'500ms', '2s', '5m', '1h' -> nanoseconds. ValueError with the reason."""
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise ValueError(f"a duration is like 500ms, 2s, 5m or 1h, not {v!r}")
    m = _DURATION.match(str(v)) if isinstance(v, str) else None
    if m is None:
        raise ValueError(f"a duration is like 500ms, 2s, 5m or 1h (a number and a unit), "
                         f"not {v!r}")
    ns = int(float(m.group(1)) * _UNIT_NS[m.group(2)])
    if ns < 1_000_000 or ns > MAX_WITHIN_NS:
        raise ValueError(f"within must be between 1ms and 1h, not {v!r}")
    return ns


def _text(v) -> str:
    if isinstance(v, (list, tuple)):
        v = " ".join(str(x) for x in v)
    s = str(v)
    return s if len(s) <= VALUE_CHARS else s[:VALUE_CHARS - 1] + "…"


@dataclass
class Stats:
    fired: int = 0
    evicted: int = 0          # groups dropped because the rule had max_groups


class _Groups:
    """An LRU table of groups, oldest first, each with the event time it was last fed."""
    __slots__ = ("table", "max", "stats")

    def __init__(self, max_groups: int, stats: Stats):
        self.table: OrderedDict = OrderedDict()
        self.max, self.stats = max_groups, stats

    def expire(self, now: int, idle: int) -> None:
        """Drop the groups not fed for `idle` ns (oldest first: stop at the first live one)."""
        t = self.table
        while t:
            state = next(iter(t.values()))
            if now - state.last <= idle:
                return
            t.popitem(last=False)

    def get(self, key, now: int, new):
        t = self.table
        state = t.get(key)
        if state is None:
            if len(t) >= self.max:
                t.popitem(last=False)
                self.stats.evicted += 1
            state = t[key] = new()
        else:
            t.move_to_end(key)
        state.last = now
        return state

    def __len__(self) -> int:
        return len(self.table)


class _Count:
    __slots__ = ("last", "times", "quiet_until")

    def __init__(self, count: int):
        self.last = 0
        self.times: deque = deque(maxlen=count)
        self.quiet_until = 0


class _Distinct:
    __slots__ = ("last", "seen", "shown", "first", "quiet_until")

    def __init__(self):
        self.last = 0
        self.seen: OrderedDict = OrderedDict()   # hash(value) -> event time, oldest first
        self.shown: dict = {}                    # hash(value) -> text, the first few
        self.first = 0
        self.quiet_until = 0


def key_of(getters: tuple):
    """item -> the group's key: the one value itself, or a tuple of them (no generator)."""
    if len(getters) == 1:
        return getters[0]
    if len(getters) == 2:
        a, b = getters
        return lambda item: (a(item), b(item))
    return lambda item: tuple(g(item) for g in getters)


class Threshold:
    """At least `count` matching events (or distinct values of `distinct`) within `within`
    ns, per group of `group_by` values."""

    def __init__(self, within: int, group_by: tuple, count: int, distinct=None,
                 group_names: tuple = (), distinct_name: str = "", spec: str = ""):
        self.within, self.count, self.distinct = within, count, distinct
        self.group_by = group_by              # getters
        self._key = key_of(group_by)
        self._sweep_at = 0                    # event time of the next sweep of idle groups
        self.group_names, self.distinct_name, self.spec = group_names, distinct_name, spec
        self.stats = Stats()
        self.groups = _Groups(min(MAX_GROUPS, max(1, STATE_BUDGET // count)), self.stats)
        self._new = (lambda: _Count(count)) if distinct is None else _Distinct

    def offer(self, item) -> dict | None:
        """Feed one event the rule's condition matched; the match fields when the group
        reaches the threshold (once per burst), else None. (Written out flat: it runs for
        every event the condition matches.)"""
        v = None
        if self.distinct is not None:
            v = self.distinct(item)
            if v is None:                    # nothing to count (a unix socket's port)
                return None
        now = item.event.ts
        w = self.within
        groups = self.groups
        if now >= self._sweep_at:            # idle groups dropped a few times a window
            groups.expire(now, w)
            self._sweep_at = now + (w >> 2)
        st = groups.get(self._key(item), now, self._new)
        if now < st.quiet_until:
            st.quiet_until = now + w
            return None
        if self.distinct is None:
            times = st.times
            times.append(now)
            if len(times) < self.count or now - times[0] > w:
                return None
            first = times[0]
            times.clear()
            st.quiet_until = now + w
            self.stats.fired += 1
            return self._fields(item, self.count, first, None)
        if v.__class__ is list:
            v = tuple(v)
        seen = st.seen
        if seen and now - st.first > w:      # slide: drop values last seen before the window
            while seen:
                h0, t0 = next(iter(seen.items()))
                if now - t0 <= w:
                    st.first = t0
                    break
                seen.popitem(last=False)
                st.shown.pop(h0, None)
        h = hash(v)
        if h in seen:
            seen.move_to_end(h)
            seen[h] = now
            return None
        if len(st.shown) < VALUES_SHOWN:
            st.shown[h] = _text(v)
        seen[h] = now
        if len(seen) == 1:
            st.first = now                   # the oldest value's time: when to slide
        if len(seen) < self.count:
            return None
        values = list(st.shown.values())
        first = st.first
        seen.clear()
        st.shown.clear()
        st.quiet_until = now + w
        self.stats.fired += 1
        return self._fields(item, self.count, first, values)

    def _fields(self, item, count, first, values) -> dict:
        out = {"match.count": count, "match.within": self.spec,
               "match.first_ts": first,
               "match.group": {n: g(item) for n, g in zip(self.group_names, self.group_by)}}
        if values is not None:
            out["match.field"] = self.distinct_name
            out["match.values"] = values
        return out

    def __len__(self) -> int:
        return len(self.groups)


@dataclass(frozen=True)
class Step:
    match: object                # item -> bool: the step's condition (the rule's too)
    key: object = None           # item -> value joined across steps, or None
    key_name: str = ""


class _Progress:
    __slots__ = ("last", "reached", "first", "steps")

    def __init__(self):
        self.last = 0
        self.reached = -1
        self.first = 0
        self.steps: list = []


_SUMMARY = ("event.kind", "event.ts", "proc.pid", "proc.exec_id", "proc.exe", "proc.cmdline",
            "file.path", "file.new_path", "net.daddr", "net.dport")


def _step_summary(item) -> dict:
    """What an alert says of each earlier step of a sequence: the event's main fields."""
    out = {}
    kind = item.event.kind
    for name in _SUMMARY:
        f = FIELDS[name]
        if kind in f.kinds:
            v = f.get(item)
            if v is not None:
                out[name] = _text(v) if isinstance(v, str) else v
    return out


def describe_steps(steps) -> str:
    """The earlier steps as an output says them: `open /etc/shadow by /bin/cat (pid 12)`."""
    out = []
    for st in steps or ():
        what = st.get("file.path") or (f"{st['net.daddr']}:{st.get('net.dport')}"
                                        if "net.daddr" in st else st.get("proc.cmdline", ""))
        out.append(f"{st.get('event.kind')} {what} by {st.get('proc.exe')} "
                   f"(pid {st.get('proc.pid')})")
    return "; ".join(out)


class Sequence:
    """Steps matched in order, in one group (and with one key value, when the steps name
    a key), the last within `within` ns of the first."""

    def __init__(self, within: int, group_by: tuple, steps: tuple[Step, ...],
                 group_names: tuple = (), spec: str = "", summary=_step_summary,
                 kinds_of: tuple = ()):
        self.within, self.group_by, self.steps = within, group_by, steps
        self.group_names, self.spec, self.summary = group_names, spec, summary
        self._key = key_of(group_by)
        self.stats = Stats()
        self.groups = _Groups(MAX_GROUPS, self.stats)
        # per event kind, the steps that can match it (index, step), the furthest first:
        # kinds_of[i] is the set of kinds step i can match (all, when not given)
        self._by_kind: dict[str, tuple] = {}
        self._kinds_of = kinds_of

    def _steps_for(self, kind: str) -> tuple:
        got = self._by_kind.get(kind)
        if got is None:
            got = self._by_kind[kind] = tuple(
                (i, st) for i, st in reversed(list(enumerate(self.steps)))
                if not self._kinds_of or kind in self._kinds_of[i])
        return got

    def offer(self, item) -> dict | None:
        now = item.event.ts
        w = self.within
        groups = self.groups
        groups.expire(now, w)
        table = groups.table
        group = self._key(item)
        last = len(self.steps) - 1
        for i, step in self._steps_for(item.event.kind):   # the furthest step it can take
            if i:
                if not table:
                    continue                 # nothing under way: only a first step counts
                key = (group, _hashable(step.key(item))) if step.key is not None else group
                st = table.get(key)
                if st is None or st.reached != i - 1 or now - st.first > w or \
                        not step.match(item):
                    continue
                groups.get(key, now, _Progress)
                st.reached = i
                st.steps.append(self.summary(item))
                if i < last:
                    return None
                del table[key]
                self.stats.fired += 1
                return {"match.count": len(self.steps), "match.within": self.spec,
                        "match.first_ts": st.first, "match.steps": st.steps[:-1],
                        "match.group": dict(zip(self.group_names,
                                                group if len(self.group_by) > 1 else
                                                (group,)))}
            if not step.match(item):
                continue
            key = (group, _hashable(step.key(item))) if step.key is not None else group
            st = groups.get(key, now, _Progress)
            if st.reached > 0 and now - st.first <= w:
                return None                  # already under way: keep its start
            st.reached, st.first, st.steps = 0, now, [self.summary(item)]
            return None
        return None

    def __len__(self) -> int:
        return len(self.groups)


def _hashable(v):
    if isinstance(v, list):
        return tuple(v)
    if isinstance(v, dict):
        return tuple(sorted(v.items()))
    return v
