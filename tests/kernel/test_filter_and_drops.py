"""The in-kernel cgroup filter, the drop counter, and malformed records."""
import os
import subprocess
import sys

from agent.sensor import cgroups
from agent.sensor.probes import Sensor
from conftest import enter_cgroup, make_cgroup, remove_cgroup, run_python


def _opens(collector, pid, path, timeout=2.0):
    return collector.find(lambda e: e.pid == pid and e.kind == "open" and e.path == path,
                          timeout=timeout)


def test_only_watched_cgroups_and_their_descendants_produce_events(
        sensor, collector, watched_cgroup, tmp_path):
    other = make_cgroup("unwatched")
    child_dir = os.path.join(watched_cgroup, "nested")
    os.makedirs(child_dir, exist_ok=True)
    try:
        marker = str(tmp_path / "marker")
        code = f"sc('openat', AT_FDCWD, {marker!r}, os.O_RDONLY, 0)"
        outside = run_python(other, code)
        nested = run_python(child_dir, code)
        inside = run_python(watched_cgroup, code)
        assert len(_opens(collector, inside.pid, marker)) == 1
        assert len(_opens(collector, nested.pid, marker)) == 1
        assert [e for e in collector.events if e.pid == outside.pid] == []
        # nested: the event names its own cgroup, matched through its watched ancestor
        [ev] = _opens(collector, nested.pid, marker)
        assert ev.cgroup_id == cgroups.cgroup_id(child_dir)
    finally:
        remove_cgroup(other)
        remove_cgroup(child_dir)


def test_unwatching_stops_events_and_watching_starts_them(sensor, collector, tmp_path):
    d = make_cgroup("toggle")
    cid = cgroups.cgroup_id(d)
    marker = str(tmp_path / "m")
    code = f"sc('openat', AT_FDCWD, {marker!r}, os.O_RDONLY, 0)"
    try:
        before = run_python(d, code)
        sensor.watch_cgroup(cid)
        during = run_python(d, code)
        sensor.unwatch_cgroup(cid)
        after = run_python(d, code)
        assert len(_opens(collector, during.pid, marker)) == 1
        assert [e for e in collector.events if e.pid in (before.pid, after.pid)] == []
    finally:
        sensor.unwatch_cgroup(cid)
        remove_cgroup(d)


def test_all_processes_mode_sees_the_host_but_never_the_agent(tmp_path):
    s = Sensor(families=("file",), ring_bytes=1 << 20, all_processes=True)
    s.start()
    try:
        marker = str(tmp_path / "host")
        p = subprocess.Popen([sys.executable, "-c", f"open({marker!r}, 'w')"])
        p.wait()
        open(marker).close()          # the agent's own open: never reported
        evs = [e for e in s.poll() if e.kind == "open" and e.path == marker]
        assert [(e.pid, e.flags) for e in evs] == [
            (p.pid, ("O_WRONLY", "O_CREAT", "O_TRUNC", "O_CLOEXEC"))]
    finally:
        s.close()


def test_drop_counter_rises_when_the_ring_is_too_small(tmp_path):
    """A one-page ring flooded without polling: every open is either delivered or counted
    as dropped, none vanishes."""
    d = make_cgroup("flood")
    s = Sensor(families=("file",), ring_bytes=4096)
    s.start()
    try:
        s.watch_cgroup(cgroups.cgroup_id(d))
        n = 20000
        target = str(tmp_path / "f")
        open(target, "w").close()
        code = f"""
import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); from syscalls import *
sys.stdin.readline()
for _ in range({n}):
    fd = sc("openat", AT_FDCWD, {target!r}, os.O_RDONLY, 0); os.close(fd)
"""
        p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             preexec_fn=enter_cgroup(d))
        import time
        time.sleep(1.0)
        s.poll()                      # empty the ring of the child's start-up
        base = s.drops().get("open", 0)
        p.communicate(b"go\n")
        dropped = s.drops().get("open", 0) - base
        delivered = len([e for e in s.poll() if e.kind == "open" and e.path == target])
        assert dropped > 0
        assert delivered > 0
        assert delivered + dropped == n
    finally:
        s.close()
        remove_cgroup(d)


def test_malformed_records_are_counted_and_skipped(sensor, collector, watched_cgroup):
    """Two bad records in a batch with real ones: both counted, the real ones decoded."""
    collector.drain()
    p = subprocess.Popen(["/bin/true"], preexec_fn=enter_cgroup(watched_cgroup))
    p.wait()
    before = sum(sensor.stats.malformed.values())
    batch = [b"\x00" * 10,                                  # shorter than any header
             b"\x00" * 16 + b"\xff\x00\x00\x00" + b"\x00" * 60,  # unknown kind
             *sensor.poll_raw()]                            # the exec is in the ring now
    [ev] = [e for e in sensor.decode_batch(batch) if e.pid == p.pid and e.kind == "exec"]
    assert ev.exe == os.path.realpath("/bin/true")
    assert sum(sensor.stats.malformed.values()) == before + 2


def test_a_task_moving_between_cgroups_is_judged_by_its_new_cgroup_at_once(
        sensor, collector, watched_cgroup, tmp_path):
    """The filter caches its verdict per CPU by task; moving to another cgroup must not
    leave the old verdict behind, even on the same CPU, in the very next syscall."""
    other = make_cgroup("mover")
    try:
        before, inside, after = (str(tmp_path / n) for n in ("before", "inside", "after"))
        code = (
            "os.sched_setaffinity(0, {0})\n"
            "def move(d):\n"
            "    with open(os.path.join(d, 'cgroup.procs'), 'w') as f:\n"
            "        f.write('0')\n"
            f"for _ in range(100): sc('openat', AT_FDCWD, {before!r}, os.O_RDONLY, 0)\n"
            f"move({watched_cgroup!r})\n"
            f"sc('openat', AT_FDCWD, {inside!r}, os.O_RDONLY, 0)\n"
            f"move({other!r})\n"
            f"sc('openat', AT_FDCWD, {after!r}, os.O_RDONLY, 0)\n")
        child = run_python(other, code)
        assert len(_opens(collector, child.pid, inside)) == 1
        assert _opens(collector, child.pid, before, timeout=0.5) == []
        assert _opens(collector, child.pid, after, timeout=0.5) == []
    finally:
        remove_cgroup(other)
