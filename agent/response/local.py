"""Node-local response: kill a process and every process of its container at once."""
from __future__ import annotations

import os
import signal


def kill_process(pid: int) -> bool:
    """SIGKILL through a pidfd (no pid-reuse race) where the kernel has them."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        try:
            os.kill(pid, signal.SIGKILL)
            return True
        except ProcessLookupError:
            return False
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def kill_cgroup(cgroup_dir: str) -> int:
    """Kill every process of a cgroup (and below): cgroup.kill where the kernel has it
    (5.14+), else each pid of cgroup.procs. Returns how many pids were signalled (-1 when
    cgroup.kill did it in one write)."""
    kill_file = os.path.join(cgroup_dir, "cgroup.kill")
    if os.path.exists(kill_file):
        with open(kill_file, "w") as f:
            f.write("1")
        return -1
    n = 0
    for root, _dirs, _files in os.walk(cgroup_dir):
        try:
            with open(os.path.join(root, "cgroup.procs")) as f:
                pids = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for pid in pids:
            n += kill_process(pid)
    return n
