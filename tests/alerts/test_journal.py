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


# -- file modes, and a journal that cannot be written -----------------------------------

import contextlib
import stat
import subprocess

from agent.alerts.alert import Alert
from agent.alerts.hub import AlertHub, Filter


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_are_0600_in_a_0700_directory(tmp_path):
    d = tmp_path / "new" / "journal"
    j = Journal(str(d)).open()
    j.append(_rec(0))
    j.close()
    [seg] = j.segments()
    assert (_mode(d), _mode(seg)) == (0o700, 0o600)
    os.chmod(d, 0o755)                                 # loosened by someone: tightened again
    os.chmod(seg, 0o644)
    j2 = Journal(str(d)).open()
    assert (_mode(d), _mode(seg)) == (0o700, 0o600)
    j2.close()


@contextlib.contextmanager
def small_fs(path, size):
    """A real filesystem of `size` (tmpfs): ENOSPC when it is full."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True)
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _big(i):
    return {"rule": f"r{i}", "severity": "high", "fields": {"n": i, "pad": "x" * 1500}}


def _big_alert(i):
    return Alert.from_dict(_big(i))


def test_a_full_disk_never_raises_keeps_the_sequence_and_recovers(tmp_path):
    with small_fs(tmp_path / "fs", "64k") as d:
        j = Journal(os.path.join(d, "journal")).open()
        hub = AlertHub(j)
        seen = []
        hub.on_journal_change = lambda what, info: seen.append((what, info))
        seqs = [hub.publish(_big_alert(i)).seq for i in range(100)]    # ~160 KB into 64 KiB
        assert seqs == list(range(1, 101))                   # every alert got its number
        assert not j.persisting and j.write_errors >= 1
        assert [w for w, _ in seen] == ["failed"]            # told once, not per alert
        failed = seen[0][1]
        first_lost = failed["first_seq"]
        assert failed["error"].startswith("write: OSError: [Errno 28] No space left")
        assert j.unpersisted_total == 100 - first_lost + 1
        [seg] = j.segments()
        on_disk = [r["seq"] for r, _ in read_records(seg)]
        assert on_disk == list(range(1, first_lost))          # whole records, no torn tail
        assert os.path.getsize(seg) == [end for _, end in read_records(seg)][-1]
        subprocess.run(["mount", "-o", "remount,size=4m", d], check=True)   # space returns
        assert hub.publish(_big_alert(100)).seq == 101
        assert j.persisting
        assert [w for w, _ in seen] == ["failed", "recovered"]
        rec = seen[1][1]
        assert (rec["count"], rec["first_seq"], rec["last_seq"], rec["resumed_at"]) == (
            100 - first_lost + 1, first_lost, 100, 101)
        assert [r["seq"] for r in j.read_after(0)] == list(range(1, first_lost)) + [101]
        # a replay says which alerts the journal lacks, instead of skipping them silently
        sub = hub.subscribe(Filter())
        got = list(hub.replay(sub, 0, j.first_seq()))
        assert [(w, v if w == "gap" else v.seq) for w, v in got] == (
            [("alert", s) for s in range(1, first_lost)] + [("gap", (first_lost, 100)),
                                                            ("alert", 101)])
        j.close()
        j2 = Journal(os.path.join(d, "journal")).open()       # nothing to cut after restart
        assert (j2.truncated_bytes, j2.last_seq) == (0, 101)
        j2.close()


def test_a_journal_directory_that_cannot_be_made_does_not_stop_the_agent(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    j = Journal(str(blocker / "journal")).open()
    assert j.append(_rec(0)) == 1 and not j.persisting
    assert [w for w, _ in j.take_change()] == ["failed"]
    j.close()


def test_subscribers_get_every_alert_while_the_disk_is_full(tmp_path):
    with small_fs(tmp_path / "fs", "16k") as d:
        j = Journal(os.path.join(d, "journal")).open()
        hub = AlertHub(j)
        sub = hub.subscribe(Filter())
        for i in range(20):
            hub.publish(_big_alert(i))
        got = []
        while (item := sub.take(0.01)) is not None:
            got.append(item[1].seq)
        assert got == list(range(1, 21)) and not j.persisting
        j.close()
