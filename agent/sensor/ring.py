"""Reading the BPF ring buffer straight from its memory, a batch at a time.

bcc's ring_buffer_consume() calls back into Python once per record, and each call-back
takes the interpreter lock again: while the evaluator thread runs, the poller waits for the
lock once per record (the switch interval, 5 ms, each time) and reaches the ring too seldom.
This reader maps the ring (as libbpf does) and copies every committed record out in one
loop under the lock, then tells the kernel how far it has read — one lock hand-over per
poll, and it knows how full the ring is (`pending`), which is what congestion is judged on.

The map's memory, as kernel/bpf/ringbuf.c lays it out:

    page 0                 consumer position (u64), the only page user space may write
    page 1                 producer position (u64)
    page 2 ..              the data area, mapped twice in a row, so that no record wraps

and each record is an 8-byte header (u32 length with a busy and a discard bit, u32 page
offset) followed by its bytes, rounded up to 8.

Ordering: the kernel publishes a record by clearing its busy bit with a store-release and
the producer position likewise; on x86-64 every aligned load is an acquire and every
aligned store a release, so single 8- and 4-byte loads and stores of the mapping are
enough — through typed memoryviews, which make exactly one each. (Written with
struct.pack_into, the consumer position was now and then seen half written: the kernel
found the ring full and dropped ~15 of 250,000 events; through the view, none.) Elsewhere
(arm64) plain loads are not acquires: `available()` says no and the sensor keeps bcc's
call-back reader there.
"""
from __future__ import annotations

import mmap
import platform

BUSY = 1 << 31
DISCARD = 1 << 30
LEN_MASK = ~(BUSY | DISCARD) & 0xFFFFFFFF
HDR = 8
PAGE = mmap.PAGESIZE



def available() -> bool:
    """Whether plain loads and stores order like the kernel's acquire/release here."""
    return platform.machine() in ("x86_64", "AMD64")


class RingReader:
    def __init__(self, map_fd: int, ring_bytes: int):
        if ring_bytes <= 0 or ring_bytes & (ring_bytes - 1) or ring_bytes % PAGE:
            raise ValueError(f"a ring buffer's size is a power-of-2 number of pages, "
                             f"not {ring_bytes}")
        self.size = ring_bytes
        self._mask = ring_bytes - 1
        self._cons = mmap.mmap(map_fd, PAGE, mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        try:
            self._data = mmap.mmap(map_fd, PAGE + 2 * ring_bytes, mmap.MAP_SHARED,
                                   mmap.PROT_READ, offset=PAGE)
        except OSError:
            self._cons.close()
            raise
        # positions and headers through typed views: one 8- or 4-byte load or store each
        self._cpos = memoryview(self._cons).cast("Q")
        self._ppos = memoryview(self._data).cast("Q")
        self._u32 = memoryview(self._data).cast("I")

    def pending(self) -> int:
        """Bytes the kernel has written that are not read yet (records and headers)."""
        return self._ppos[0] - self._cpos[0]

    def drain(self, out: list, limit: int = 1 << 20) -> int:
        """Append the bytes of every committed record (at most `limit`) to `out`, in order;
        return how many. Discarded records are skipped; a record still being written ends
        the batch (the next drain takes it)."""
        data, mask, u32 = self._data, self._mask, self._u32
        cons = self._cpos[0]
        prod = self._ppos[0]
        n = 0
        append = out.append
        while cons < prod and n < limit:
            off = PAGE + (cons & mask)
            head = u32[off >> 2]
            if head & BUSY:
                break
            length = head & LEN_MASK
            if not head & DISCARD:
                append(data[off + HDR:off + HDR + length])
                n += 1
            cons += (length + HDR + 7) & ~7
        self._cpos[0] = cons
        return n

    def close(self) -> None:
        for view in (self._cpos, self._ppos, self._u32):
            view.release()
        self._data.close()
        self._cons.close()
