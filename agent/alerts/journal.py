"""The durable alert log: append-only segments of msgpack records, fsync batched,
size-bounded with rotation, continuing its sequence across restarts.

    <dir>/alerts-<first sequence, 20 digits>.mpk      (dir 0700, files 0600)

Each record is framed as  u32 length | u32 crc32 | msgpack(map)  so that a torn final
record (a crash mid-write) or a corrupt one is detected: on open the last segment is cut
back to its last whole record; a reader stops at the first record that is not whole.

A journal that cannot be written (disk full, I/O error, read-only) never stops the alerts:
append() still gives the record its sequence number and returns, the record is delivered
live by the caller, and the journal counts it as not persisted. A partly written frame is
cut off again at once, so the segment stays whole. Every later append tries to write again
— on a full disk only once the filesystem has room again (RESERVE free, so that a nearly
full disk does not flap between writing and failing) —; the first that succeeds ends the
outage. take_change() tells the caller once when an outage
starts and once when it ends (with how many alerts were not persisted), so that it can say
so in an alert of its own. The sequence lives in memory during an outage: a restart before
the journal is written again continues after the last persisted record.
"""
from __future__ import annotations

import errno
import glob
import logging
import os
import stat
import struct
import threading
import time
import zlib

import msgpack

log = logging.getLogger("mamori.journal")
_FRAME = struct.Struct("<II")
_PREFIX, _SUFFIX = "alerts-", ".mpk"
DIR_MODE, FILE_MODE = 0o700, 0o600
RESERVE = 1 << 20          # free space wanted before writing again after ENOSPC (at most
                           # an eighth of the filesystem)


def _seq_of(path: str) -> int:
    return int(os.path.basename(path)[len(_PREFIX):-len(_SUFFIX)])


def read_records(path: str, offset: int = 0):
    """(record, end offset) for each whole record of a segment file."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    pos = 0
    while pos + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, pos)
        start, end = pos + _FRAME.size, pos + _FRAME.size + length
        if end > len(data):
            return                                  # torn: the writer died mid-record
        body = data[start:end]
        if zlib.crc32(body) != crc:
            return                                  # corrupt
        try:
            rec = msgpack.unpackb(body, raw=False)
        except Exception:  # noqa: BLE001 - a record that does not decode ends the segment
            return
        yield rec, offset + end
        pos = end


def private_dir(path: str) -> None:
    """Make `path` (and its parents) if missing; the directory itself is 0700."""
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    if stat.S_IMODE(os.stat(path).st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)


class Journal:
    def __init__(self, directory: str, segment_bytes: int = 16 << 20,
                 max_bytes: int = 256 << 20, fsync_interval: float = 0.05):
        self.dir = directory
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.fsync_interval = fsync_interval
        self.last_seq = 0
        self.truncated_bytes = 0          # cut from a torn tail at open
        # persistence: False while writes fail (the alerts still flow, live only)
        self.persisting = True
        self.write_errors = 0             # failed writes, rotations, fsyncs
        self.unpersisted_total = 0        # alerts given a sequence but not written
        self.last_error = ""
        self._no_space = False            # the last failure was ENOSPC / EDQUOT
        self._outage: dict | None = None  # the current outage: since, first seq, count
        self._changes: list[tuple[str, dict]] = []
        self._fd: int | None = None
        self._path = None
        self._size = 0
        self._dirty = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        self._last_log = 0.0

    # -- open / close ------------------------------------------------------------------
    def open(self) -> "Journal":
        """Continue the journal in `dir`. A directory that cannot be made or read does not
        stop the agent: the journal starts in an outage (see the module's docstring)."""
        try:
            self._open()
        except OSError as e:
            with self._lock:
                self._failed(e, "open")
        self._syncer = threading.Thread(target=self._sync_loop, name="journal-fsync",
                                        daemon=True)
        self._syncer.start()
        return self

    def _open(self) -> None:
        private_dir(self.dir)
        segs = self.segments()
        for s in segs:
            if stat.S_IMODE(os.stat(s).st_mode) != FILE_MODE:
                os.chmod(s, FILE_MODE)
        if segs:
            last = segs[-1]
            good, n, seq = 0, 0, _seq_of(last) - 1
            for rec, end in read_records(last):
                good, seq, n = end, rec["seq"], n + 1
            size = os.path.getsize(last)
            if size != good:
                self.truncated_bytes = size - good
                log.warning("journal %s: cut a torn or corrupt tail of %d bytes", last,
                            size - good)
                with open(last, "r+b") as f:
                    f.truncate(good)
            self.last_seq = seq
            self._path, self._size = last, good
            self._fd = self._open_segment(last)

    @staticmethod
    def _open_segment(path: str) -> int:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)

    def close(self) -> None:
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join(timeout=2)
        with self._lock:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                except OSError as e:
                    log.warning("journal %s: fsync at close failed: %s", self._path, e)
                os.close(self._fd)
                self._fd = None

    def segments(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.dir, f"{_PREFIX}*{_SUFFIX}")), key=_seq_of)

    def first_seq(self) -> int:
        """The oldest sequence still kept (last_seq + 1 when empty)."""
        for seg in self.segments():
            for rec, _ in read_records(seg):
                return rec["seq"]
        return self.last_seq + 1

    # -- writing -----------------------------------------------------------------------
    def append(self, record: dict) -> int:
        """Give the record the next sequence number, write it, return the number. Written
        to the OS before returning (readers see it); fsync follows within fsync_interval.
        Never raises: a record that cannot be written is counted as not persisted."""
        with self._lock:
            seq = self.last_seq + 1
            record["seq"] = seq
            self.last_seq = seq
            if not self.persisting and not self._room():
                self._not_persisted(seq)
                return seq
            try:
                body = msgpack.packb(record, use_bin_type=True, default=_default)
                frame = _FRAME.pack(len(body), zlib.crc32(body)) + body
                if self._fd is None or self._size + len(frame) > self.segment_bytes:
                    self._rotate(seq)
                self._write(frame)
            except Exception as e:  # noqa: BLE001 - the alert goes on, unpersisted
                self._failed(e, "write", seq)
                return seq
            if not self.persisting:
                self._recovered(seq)
            return seq

    def _write(self, frame: bytes) -> None:
        """All of the frame, or nothing: a partial write is cut off again."""
        done = 0
        try:
            while done < len(frame):
                done += os.write(self._fd, frame[done:])
        except OSError:
            if done:
                try:
                    os.ftruncate(self._fd, self._size)
                except OSError:                 # cannot cut it: start a new segment
                    os.close(self._fd)
                    self._fd = None
            raise
        self._size += len(frame)
        self._dirty = True

    def _rotate(self, seq: int) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        path = os.path.join(self.dir, f"{_PREFIX}{seq:020d}{_SUFFIX}")
        self._fd = self._open_segment(path)
        self._path, self._size = path, os.fstat(self._fd).st_size
        segs = self.segments()
        total = sum(os.path.getsize(s) for s in segs)
        while len(segs) > 1 and total > self.max_bytes:
            old = segs.pop(0)
            total -= os.path.getsize(old)
            os.unlink(old)

    def _room(self) -> bool:
        """After ENOSPC: has the filesystem room again? (Other errors: try every time.)"""
        if not self._no_space:
            return True
        try:
            st = os.statvfs(self.dir)
        except OSError:
            return True
        return st.f_bavail * st.f_frsize >= min(RESERVE, st.f_blocks * st.f_frsize // 8)

    def _not_persisted(self, seq: int) -> None:
        """An alert of the current outage that was not written (not even tried)."""
        self.unpersisted_total += 1
        o = self._outage
        o["first_seq"] = o["first_seq"] or seq
        o["last_seq"], o["count"] = seq, o["count"] + 1

    def _failed(self, e: Exception, what: str, seq: int = 0) -> None:
        self.write_errors += 1
        self.last_error = f"{what}: {type(e).__name__}: {e}"
        self._no_space = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        if seq:
            self.unpersisted_total += 1
        if self.persisting:
            self.persisting = False
            self._outage = {"since": time.time(), "first_seq": seq, "last_seq": seq,
                            "count": 1 if seq else 0, "error": self.last_error}
            self._changes.append(("failed", dict(self._outage, dir=self.dir)))
            log.error("journal %s: cannot be written (%s); alerts are delivered live but "
                      "not persisted until it can", self.dir, self.last_error)
            self._last_log = time.monotonic()
            return
        o = self._outage
        if seq:
            o["first_seq"] = o["first_seq"] or seq
            o["last_seq"], o["count"] = seq, o["count"] + 1
        if time.monotonic() - self._last_log >= 60:
            self._last_log = time.monotonic()
            log.error("journal %s: still cannot be written (%s); %d alerts not persisted so "
                      "far", self.dir, self.last_error, o["count"])

    def _recovered(self, seq: int) -> None:
        o, self._outage = self._outage or {}, None
        self.persisting = True
        info = {"dir": self.dir, "count": o.get("count", 0), "first_seq": o.get("first_seq", 0),
                "last_seq": o.get("last_seq", 0), "error": o.get("error", ""),
                "seconds": round(time.time() - o.get("since", time.time()), 3),
                "resumed_at": seq}
        self._changes.append(("recovered", info))
        log.warning("journal %s: written again from #%d; %d alerts were not persisted",
                    self.dir, seq, info["count"])

    def take_change(self) -> list[tuple[str, dict]]:
        """Outages started ("failed", info) and ended ("recovered", info) since the last
        call, each reported once."""
        with self._lock:
            out, self._changes = self._changes, []
            return out

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.fsync_interval):
            with self._lock:
                if self._dirty and self._fd is not None:
                    self._dirty = False
                    try:
                        os.fsync(self._fd)
                    except OSError as e:   # counted; the next write tells if it lasts
                        self.write_errors += 1
                        self.last_error = f"fsync: {type(e).__name__}: {e}"
                        log.warning("journal %s: fsync failed: %s", self._path, e)

    # -- reading -----------------------------------------------------------------------
    def read_after(self, seq: int, until: int | None = None):
        """Records with since < record seq (< until, if given), in order."""
        segs = self.segments()
        for i, seg in enumerate(segs):
            nxt = _seq_of(segs[i + 1]) if i + 1 < len(segs) else None
            if nxt is not None and nxt <= seq + 1:
                continue                              # the whole segment is older
            try:
                for rec, _ in read_records(seg):
                    s = rec["seq"]
                    if until is not None and s >= until:
                        return
                    if s > seq:
                        yield rec
            except FileNotFoundError:                  # rotated away meanwhile
                continue


def _default(obj):
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)
