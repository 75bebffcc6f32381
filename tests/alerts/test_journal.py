"""The alert journal: sequence across restarts, rotation, torn and corrupt tails."""
import os

from agent.alerts.journal import Journal, read_records


def _rec(i):
    return {"rule": f"r{i}", "severity": "high", "fields": {"n": i}}


def test_sequence_continues_after_restart(tmp_path):
    j = Journal(str(tmp_path)).open()
    assert [j.append(_rec(i)) for i in range(5)] == [1, 2, 3, 4, 5]
    j.close()
    j2 = Journal(str(tmp_path)).open()
    assert j2.last_seq == 5
    assert j2.append(_rec(5)) == 6
    assert [r["seq"] for r in j2.read_after(3)] == [4, 5, 6]
    assert [r["rule"] for r in j2.read_after(0, until=3)] == ["r0", "r1"]
    j2.close()


def test_rotation_bounds_the_size_and_moves_the_start(tmp_path):
    j = Journal(str(tmp_path), segment_bytes=4096, max_bytes=16384).open()
    for i in range(2000):
        j.append(_rec(i))
    segs = j.segments()
    assert len(segs) > 1
    assert sum(os.path.getsize(s) for s in segs) <= 16384 + 4096
    first = j.first_seq()
    assert first > 1
    assert [r["seq"] for r in j.read_after(0)] == list(range(first, 2001))
    j.close()


def test_torn_final_record_is_cut_and_never_crashes_the_reader(tmp_path):
    j = Journal(str(tmp_path)).open()
    for i in range(3):
        j.append(_rec(i))
    j.close()
    [seg] = j.segments()
    whole = os.path.getsize(seg)
    with open(seg, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x12\x34")          # a frame header and 2 bytes of body
    assert [r["seq"] for r, _ in read_records(seg)] == [1, 2, 3]   # the reader stops cleanly
    j2 = Journal(str(tmp_path)).open()
    assert (j2.last_seq, j2.truncated_bytes, os.path.getsize(seg)) == (3, 6, whole)
    assert j2.append(_rec(3)) == 4
    assert [r["seq"] for r in j2.read_after(0)] == [1, 2, 3, 4]
    j2.close()


def test_corrupt_record_ends_the_segment(tmp_path):
    j = Journal(str(tmp_path)).open()
    for i in range(3):
        j.append(_rec(i))
    j.close()
    [seg] = j.segments()
    data = bytearray(open(seg, "rb").read())
    data[-3] ^= 0xFF                                    # flip a byte of the last record
    open(seg, "wb").write(bytes(data))
    assert [r["seq"] for r, _ in read_records(seg)] == [1, 2]
    j2 = Journal(str(tmp_path)).open()
    assert j2.last_seq == 2 and j2.append(_rec(9)) == 3
    j2.close()
