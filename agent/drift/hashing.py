"""sha256 of container files, bounded in size and in time, off the event path.

    hasher = Hasher(max_bytes=64 << 20, timeout_ms=200, workers=2)
    d = hasher.digest(fd)                      # takes the fd (and closes it)
    a, b = hasher.wait(hasher.submit(fd1), hasher.submit(fd2))   # one deadline for both

Reading happens in a few worker threads, from the one fd given (opened by container_files:
a regular file, O_NONBLOCK), and never more than max_bytes + 1 bytes of it, whatever a stat
said before: a file that grows while it is read (a sparse script truncated up to a TiB) is
cut off there. The caller — the event thread — waits at most `timeout_ms` for a result,
and in all at most `timeout_ms` in any second (a token bucket), so that a stream of slow
files cannot stall detection either. Past that the digest comes back without a sha256 and
with the reason, while the worker carries on: it caches the result for the next look at
the same file, or abandons the read after ABANDON_S. The queue in front of the workers is
bounded; a file that finds it full is not hashed (and says so), so a stuck worker (a hung
network filesystem) cannot pile up work.

Digest.error says why sha256 is None; the strings are part of the alert (drift.hash_error,
docs/drift.md):
  larger than 64 MiB (drift.hash_max_bytes), not hashed
  changed while it was being hashed            (size, mtime or ctime moved, or it grew)
  timed out after 200 ms
  not waited for: at most 200 ms a second is spent waiting for hashes
  not hashed: the queue of files to hash is full (32)
  abandoned after 10 s
  not a regular file (fifo)
  unreadable: <the error>

Cache: complete digests and "larger than" verdicts, keyed by (st_dev, st_ino, st_size,
st_mtime_ns, st_ctime_ns), oldest first out past cache_size. A container can reset mtime
but not ctime, so a rewrite of the same size still misses the cache.
"""
from __future__ import annotations

import hashlib
import os
import queue
import stat
import threading
import time
from dataclasses import dataclass

from .container_files import file_kind

ABANDON_S = 10.0
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Digest:
    size: int | None            # st_size when the agent opened the file
    sha256: str | None          # of the whole file; None when not hashed (error says why)
    error: str | None = None


def human_size(n: int) -> str:
    """64 MiB, 1.5 GiB, 1000 bytes."""
    for shift, unit in ((40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} bytes"


class _Job:
    __slots__ = ("fd", "key", "size", "done", "result", "again")

    def __init__(self, fd: int, key: tuple | None, size: int | None,
                 result: Digest | None = None):
        self.fd, self.key, self.size, self.result = fd, key, size, result
        self.again = False              # read twice: its digest is not cached
        self.done = threading.Event()
        if result is not None:
            self.done.set()


class Hasher:
    def __init__(self, max_bytes: int = 64 << 20, timeout_ms: int = 200, workers: int = 2,
                 queue_size: int = 32, cache_size: int = 4096):
        self.max_bytes = max_bytes
        self.timeout_ms = timeout_ms
        self.workers = max(1, workers)
        self.cache_size = cache_size
        self._timeout = timeout_ms / 1000.0
        self._q: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._lock = threading.Lock()
        self._cache: dict[tuple, Digest] = {}
        self._pending: dict[tuple, _Job] = {}
        self._threads: list[threading.Thread] = []
        self._tokens = self._timeout
        self._tokens_at = time.monotonic()
        self._closed = False
        self.counts = {"hashed": 0, "timed_out": 0, "not_waited": 0, "queue_full": 0,
                       "abandoned": 0}
        self.too_large = f"larger than {human_size(max_bytes)} (drift.hash_max_bytes), " \
                         "not hashed"

    # -- the caller's side ----------------------------------------------------------------
    def submit(self, fd: int) -> _Job:
        """Queue the open file for hashing; the Hasher owns the fd from here on."""
        try:
            st = os.fstat(fd)
        except OSError as e:
            _close(fd)
            return _Job(-1, None, None, Digest(None, None, f"unreadable: {e.strerror}"))
        if not stat.S_ISREG(st.st_mode):
            _close(fd)
            return _Job(-1, None, None,
                        Digest(None, None, f"not a regular file ({file_kind(st.st_mode)})"))
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            hit = self._cache.get(key)
            if hit is None and st.st_size > self.max_bytes:
                hit = self._remember(key, Digest(st.st_size, None, self.too_large))
            if hit is not None:
                _close(fd)
                return _Job(-1, key, st.st_size, hit)
            job = self._pending.get(key)
            if job is not None:                      # the same file, already on its way
                _close(fd)
                return job
            job = _Job(fd, key, st.st_size)
            try:
                self._q.put_nowait(job)
            except queue.Full:
                _close(fd)
                self.counts["queue_full"] += 1
                return _Job(-1, None, st.st_size, Digest(
                    st.st_size, None,
                    f"not hashed: the queue of files to hash is full ({self._q.maxsize})"))
            self._pending[key] = job
            self._start()
        return job

    def wait(self, *jobs: _Job) -> tuple[Digest, ...]:
        """The digests, waiting at most the deadline for all of them together."""
        if all(j.done.is_set() for j in jobs):
            return tuple(j.result for j in jobs)
        allowed = self._take()
        t0 = time.monotonic()
        for j in jobs:
            j.done.wait(max(0.0, t0 + allowed - time.monotonic()))
        self._spend(time.monotonic() - t0)
        out = []
        for j in jobs:
            if j.done.is_set():
                out.append(j.result)
            elif allowed <= 0:
                self._count("not_waited")
                out.append(Digest(j.size, None, f"not waited for: at most {self.timeout_ms} "
                                                "ms a second is spent waiting for hashes"))
            else:
                self._count("timed_out")
                out.append(Digest(j.size, None, f"timed out after {round(allowed * 1000)} ms"))
        return tuple(out)

    def digest(self, fd: int) -> Digest:
        return self.wait(self.submit(fd))[0]

    def close(self) -> None:
        """Stop the workers (a job in progress finishes its current chunk first)."""
        self._closed = True
        for _ in self._threads:
            try:
                self._q.put(None, timeout=1)
            except queue.Full:
                break
        self._threads = []

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    # -- budget of waiting ----------------------------------------------------------------
    def _take(self) -> float:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._timeout,
                               self._tokens + (now - self._tokens_at) * self._timeout)
            self._tokens_at = now
            left = min(self._timeout, self._tokens)
            return left if left >= self._timeout / 10 else 0.0   # no token-sized waits

    def _spend(self, seconds: float) -> None:
        with self._lock:
            self._tokens = max(0.0, self._tokens - seconds)

    # -- the workers' side ----------------------------------------------------------------
    def _start(self) -> None:
        while len(self._threads) < self.workers and not self._closed:
            t = threading.Thread(target=self._work, name=f"mamori-hash-{len(self._threads)}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _remember(self, key: tuple, d: Digest) -> Digest:
        if len(self._cache) >= self.cache_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = d
        return d

    def _work(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            try:
                d = self._read(job)
            except OSError as e:
                d = Digest(job.size, None, f"unreadable: {e.strerror or e}")
            except Exception as e:          # never lose a worker to one file
                d = Digest(job.size, None, f"unreadable: {type(e).__name__}")
            finally:
                _close(job.fd)
            with self._lock:
                if d.sha256 is not None and not job.again:
                    self._remember(job.key, d)
                    self.counts["hashed"] += 1
                elif d.error and d.error.startswith("abandoned"):
                    self.counts["abandoned"] += 1
                self._pending.pop(job.key, None)
            job.result = d
            job.done.set()

    def _read(self, job: _Job, ref: tuple | None = None) -> Digest:
        """sha256 of the file, checked against its (size, mtime, ctime) before (`ref`, at
        first job.key's). It moved while being read: read once more against what it is now
        (removing a file's last link moves its ctime — a program that deletes itself — and
        so does a rewrite), then give up."""
        ref = job.key[2:] if ref is None else ref
        h, n, limit = hashlib.sha256(), 0, self.max_bytes
        give_up = time.monotonic() + ABANDON_S
        while True:
            if time.monotonic() > give_up or self._closed:
                return Digest(job.size, None, f"abandoned after {ABANDON_S:g} s")
            b = os.read(job.fd, min(CHUNK, limit + 1 - n))
            if not b:
                break
            n += len(b)
            h.update(b)
            if n > limit:
                return Digest(job.size, None, "changed while it was being hashed")
        st = os.fstat(job.fd)
        now = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if n != ref[0] or now != ref:
            if job.again or st.st_size > limit:
                return Digest(job.size, None, "changed while it was being hashed")
            job.again = True
            os.lseek(job.fd, 0, os.SEEK_SET)
            return self._read(job, now)
        return Digest(n, h.hexdigest())


def _close(fd: int) -> None:
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass
