"""The durable alert log: append-only segments of msgpack records, fsync batched,
size-bounded with rotation, continuing its sequence across restarts.

    <dir>/alerts-<first sequence, 20 digits>.mpk

Each record is framed as  u32 length | u32 crc32 | msgpack(map)  so that a torn final
record (a crash mid-write) or a corrupt one is detected: on open the last segment is cut
back to its last whole record; a reader stops at the first record that is not whole.
"""
from __future__ import annotations

import glob
import logging
import os
import struct
import threading
import zlib

import msgpack

log = logging.getLogger("mamori.journal")
_FRAME = struct.Struct("<II")
_PREFIX, _SUFFIX = "alerts-", ".mpk"


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


class Journal:
    def __init__(self, directory: str, segment_bytes: int = 16 << 20,
                 max_bytes: int = 256 << 20, fsync_interval: float = 0.05):
        self.dir = directory
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.fsync_interval = fsync_interval
        self.last_seq = 0
        self.truncated_bytes = 0          # cut from a torn tail at open
        self._f = None
        self._path = None
        self._size = 0
        self._dirty = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None

    # -- open / close ------------------------------------------------------------------
    def open(self) -> "Journal":
        os.makedirs(self.dir, exist_ok=True)
        segs = self.segments()
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
            self._f = open(last, "ab")
        self._syncer = threading.Thread(target=self._sync_loop, name="journal-fsync",
                                        daemon=True)
        self._syncer.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join(timeout=2)
        with self._lock:
            if self._f is not None:
                self._f.flush()
                os.fsync(self._f.fileno())
                self._f.close()
                self._f = None

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
        to the OS before returning (readers see it); fsync follows within fsync_interval."""
        with self._lock:
            seq = self.last_seq + 1
            record["seq"] = seq
            body = msgpack.packb(record, use_bin_type=True, default=_default)
            frame = _FRAME.pack(len(body), zlib.crc32(body)) + body
            if self._f is None or self._size + len(frame) > self.segment_bytes:
                self._rotate(seq)
            self._f.write(frame)
            self._f.flush()
            self._size += len(frame)
            self._dirty = True
            self.last_seq = seq
            return seq

    def _rotate(self, seq: int) -> None:
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
        self._path = os.path.join(self.dir, f"{_PREFIX}{seq:020d}{_SUFFIX}")
        self._f = open(self._path, "ab")
        self._size = 0
        segs = self.segments()
        total = sum(os.path.getsize(s) for s in segs)
        while len(segs) > 1 and total > self.max_bytes:
            old = segs.pop(0)
            total -= os.path.getsize(old)
            os.unlink(old)

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.fsync_interval):
            with self._lock:
                if self._dirty and self._f is not None:
                    os.fsync(self._f.fileno())
                    self._dirty = False

    # -- reading -----------------------------------------------------------------------
    def read_after(self, seq: int, until: int | None = None):
        """Records with since < record seq (< until, if given), in order."""
        segs = self.segments()
        for i, seg in enumerate(segs):
            nxt = _seq_of(segs[i + 1]) if i + 1 < len(segs) else None
            if nxt is not None and nxt <= seq + 1:
                continue                              # the whole segment is older
            for rec, _ in read_records(seg):
                s = rec["seq"]
                if until is not None and s >= until:
                    return
                if s > seq:
                    yield rec


def _default(obj):
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)
