"""agent/sensor/ring.py against the kernel's own ring buffer: a BPF program writes known
records (tests/kernel/bpf/ring_writer.c) and the reader must return exactly them, in
order, skip the discarded ones, and give the space back, across many wraps of a one-page
ring."""
import ctypes
import os
from pathlib import Path

import pytest

from agent.sensor import ring

WRITER = Path(__file__).parent / "bpf" / "ring_writer.c"
PER_CALL = [bytes([n]) * n for n in range(1, 65) if n != 7]    # what one getppid() writes
CALL_BYTES = sum((n + 8 + 7) & ~7 for n in range(1, 65))         # what it takes in the ring


@pytest.fixture(scope="module")
def writer():
    if not ring.available():
        pytest.skip(f"the direct ring reader is not used on {os.uname().machine}")
    from bcc import BPF
    b = BPF(text=WRITER.read_bytes())
    b[b"writer"][ctypes.c_int(0)] = ctypes.c_uint32(os.getpid())
    reader = ring.RingReader(b[b"out"].map_fd, ring.PAGE)
    yield b, reader
    reader.close()
    b.cleanup()


def test_records_come_out_exactly_in_order_without_the_discarded(writer):
    _, reader = writer
    assert CALL_BYTES < ring.PAGE                  # one call's records fit the ring
    got: list[bytes] = []
    for i in range(200):                           # ~40 wraps of the 4 KiB data area
        os.getppid()
        assert reader.pending() == CALL_BYTES, i   # discarded ones take space until read
        assert reader.drain(got) == len(PER_CALL)
        assert reader.pending() == 0
    assert got == PER_CALL * 200


def test_a_limit_stops_the_batch_and_the_next_drain_goes_on(writer):
    _, reader = writer
    os.getppid()
    first, rest = [], []
    assert reader.drain(first, limit=10) == 10
    assert 0 < reader.pending() < CALL_BYTES
    assert reader.drain(rest) == len(PER_CALL) - 10
    assert first + rest == PER_CALL and reader.pending() == 0


def test_a_full_ring_loses_the_newest_and_the_reader_recovers(writer):
    """Two calls' records do not fit 4 KiB, let alone three: the kernel refuses what does not fit (the
    writer stops a call at its first refusal), the reader returns what was committed,
    intact and in order: the first call whole, then a head of each of the others."""
    _, reader = writer
    assert CALL_BYTES < ring.PAGE < 2 * CALL_BYTES
    for _ in range(3):
        os.getppid()
    got: list[bytes] = []
    n = reader.drain(got)
    runs = []                                      # split where a call starts again
    for b in got:
        if b == b"\x01":
            runs.append([])
        runs[-1].append(b)
    assert n == len(got) and got[:len(PER_CALL)] == PER_CALL and len(runs) == 3
    assert all(r == PER_CALL[:len(r)] for r in runs) and len(got) < 3 * len(PER_CALL)
    assert reader.pending() == 0
    os.getppid()
    more: list[bytes] = []
    assert reader.drain(more) == len(PER_CALL) and more == PER_CALL


def test_a_size_that_is_not_a_power_of_two_pages_is_refused():
    with pytest.raises(ValueError, match="power-of-2 number of pages, not 12288"):
        ring.RingReader(-1, 3 * ring.PAGE)
