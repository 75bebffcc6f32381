"""Node-local response: kill a process and every process of its container at once.

A pid is only a number: between the event and the kill the process can exit and the pid be
given to another one (a slow evaluator, a queue of alerts, a deferred action all widen that
window). So nothing is signalled by pid alone. The process is opened as a pidfd first, then
checked against what the alert knows, then signalled through that pidfd:

  - it existed when the event happened: its start time (/proc/PID/stat field 22, clock ticks
    since boot) is not after the event's kernel timestamp (`event.ts`, CLOCK_MONOTONIC,
    converted to the boot clock). A process that got the pid later started after the event.
    Two live processes never share a pid, so a process that started before the event and
    is alive now is the one the event saw. The check is at clock-tick granularity (10 ms):
    a pid handed out again within the same tick as the event would need the whole pid space
    to wrap in 10 ms, which fork cannot do.
  - when the alert has the process's `proc.exec_id` (boot, start tick, pid): its start tick
    is exactly that one — the same process, not merely one old enough.
  - it is still in the container: its pid is listed in the container's cgroup (or below).
If the process exits after the check, the signal goes to the pidfd's dead process and
nobody else. A cgroup is killed only if it is the container's: its inode (or one below it)
is the cgroup id the event carried (`proc.cgroup_id`), so a directory made again under the
same name is not.
"""
from __future__ import annotations

import os
import signal
import time

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_NS_PER_TICK = 1_000_000_000 // _CLK_TCK


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: count fields after the last ')'
    rest = stat[stat.rfind(b")") + 2:].split()
    return int(rest[19])


def monotonic_to_boot_ticks(ts_ns: int) -> int:
    """A CLOCK_MONOTONIC timestamp (bpf_ktime_get_ns) as clock ticks since boot, the clock
    of /proc/PID/stat's start time (they differ by the time spent suspended)."""
    offset = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.clock_gettime_ns(
        time.CLOCK_MONOTONIC)
    return (ts_ns + offset) // _NS_PER_TICK


def cgroup_pids(cgroup_dir: str) -> set[int]:
    """Every pid in a cgroup and below it."""
    out: set[int] = set()
    for root, _dirs, _files in os.walk(cgroup_dir):
        try:
            with open(os.path.join(root, "cgroup.procs")) as f:
                out.update(int(x) for x in f.read().split())
        except OSError:
            continue
    return out


def cgroup_holds(cgroup_dir: str, cgroup_id: int) -> bool:
    """Is cgroup_id (a cgroup2 inode) this directory's or a directory's below it?"""
    for root, _dirs, _files in os.walk(cgroup_dir):
        try:
            if os.stat(root).st_ino == cgroup_id:
                return True
        except OSError:
            continue
    return False


def identity_problem(pid: int, event_ts_ns: int | None, cgroup_dir: str | None,
                     exec_id: str | None = None) -> str:
    """"" when the process now at `pid` is the one the event saw, else why it is not."""
    if not event_ts_ns:
        return "the alert has no event time to check the process against"
    started = start_ticks(pid)
    if started is None:
        return "gone"
    if started > monotonic_to_boot_ticks(int(event_ts_ns)):
        return "the pid now belongs to a process that started after the event"
    if exec_id:
        parts = exec_id.split(":")
        if len(parts) != 3 or parts[2] != str(pid) or not parts[1].isdigit() or \
                int(parts[1]) != started:
            return f"the pid now belongs to another process than {exec_id}"
    if cgroup_dir is not None and pid not in cgroup_pids(cgroup_dir):
        return "the process is no longer in the container's cgroup"
    return ""


def kill_process(pid: int, event_ts_ns: int | None, cgroup_dir: str | None,
                 exec_id: str | None = None) -> tuple[bool, str]:
    """SIGKILL the process the event saw, never another one that has its pid now.
    (killed, detail): detail says why nothing was signalled."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False, "gone"
    except OSError as e:
        return False, f"pidfd_open: {e.strerror}"
    try:
        why = identity_problem(pid, event_ts_ns, cgroup_dir, exec_id)
        if why:
            return False, why
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        return True, ""
    except ProcessLookupError:
        return False, "gone"
    finally:
        os.close(fd)


def kill_cgroup(cgroup_dir: str, use_cgroup_kill: bool = True) -> int:
    """Kill every process of a cgroup (and below): cgroup.kill where the kernel has it
    (5.14+), else each pid of cgroup.procs, each opened as a pidfd and signalled only if it
    is still in the cgroup after it was opened. Returns how many pids were signalled (-1
    when cgroup.kill did it in one write)."""
    kill_file = os.path.join(cgroup_dir, "cgroup.kill")
    if use_cgroup_kill and os.path.exists(kill_file):
        with open(kill_file, "w") as f:
            f.write("1")
        return -1
    fds = {}
    for pid in cgroup_pids(cgroup_dir):
        try:
            fds[pid] = os.pidfd_open(pid)
        except OSError:
            continue
    n = 0
    try:
        still = cgroup_pids(cgroup_dir)       # read after the pidfds were opened
        for pid, fd in fds.items():
            if pid in still:
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                    n += 1
                except ProcessLookupError:
                    pass
    finally:
        for fd in fds.values():
            os.close(fd)
    return n
