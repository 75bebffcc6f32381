"""The table of live processes: pid -> exe, argv, cwd, uid, start, parent, cgroup.

Filled at start by a scan of /proc (processes older than the agent are known too), kept
current from fork, exec and exit events. Bounded: past `max_size` the oldest exited entries
go first, then the oldest entries. Exited entries stay `exited_ttl` seconds so that events
still in flight for them resolve.

Runtime setup (`proc.runtime_setup`) is decided from facts a container cannot forge, never
from a name (comm and file names are the attacker's): a process is the runtime's setup in a
container when it was put there from outside — its parent, at the moment it is first seen
in the container, is not in that container (runc/crun create and exec fork their init from
the host) — and it has not executed a program since. Every process forked inside the
container inherits its parent's answer; every exec makes it the workload. Where a fact is
missing (an unknown parent, a process that was running before the agent), the answer is
"workload": a wrong guess costs a spurious alert, never a blind spot (docs/security.md).
"""
from __future__ import annotations

import os
import time
from collections import OrderedDict


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip().replace("-", "")[:8]
    except OSError:
        return "0" * 8


BOOT = _boot_id()       # proc.exec_id holds it: a pid and start tick recur only across boots


class Proc:
    """start_ns: when the process started, ns since boot (the kernel's start_boottime for a
    fork or exec seen, /proc/PID/stat's start tick otherwise); 0 when not known."""
    __slots__ = ("pid", "ppid", "exe", "args", "cwd", "uid", "comm", "start_ns",
                 "cgroup_id", "exited_at", "origin", "setup", "setup_in", "_eid")

    def __init__(self, pid, ppid, exe="", args=(), cwd="", uid=-1, comm="", start_ns=0,
                 cgroup_id=0, origin="proc"):
        self.pid, self.ppid, self.exe, self.args, self.cwd = pid, ppid, exe, args, cwd
        self.uid, self.comm, self.start_ns, self.cgroup_id = uid, comm, start_ns, cgroup_id
        self.exited_at = None
        # how the table learned of it: "scan" (running before the agent), "fork", "exec",
        # "proc" (read from /proc when an event named it first)
        self.origin = origin
        self._eid = (None, "")          # (start_ns it was made from, proc.exec_id)
        self.setup: bool | None = None   # runtime setup in container `setup_in`; None: not
        self.setup_in: str | None = None  # decided yet (see the module's docstring)

    def __repr__(self):
        return f"Proc({self.pid}, ppid={self.ppid}, exe={self.exe!r})"

    @property
    def start_ticks(self) -> int:
        """Its start in clock ticks since boot: /proc/PID/stat field 22 exactly."""
        return self.start_ns // _NS_PER_TICK

    @property
    def exec_id(self) -> str:
        """proc.exec_id: boot, start tick and pid — one process for its whole life, never
        the same for a process that gets its pid later. "" when its start is not known."""
        start, eid = self._eid
        if start != self.start_ns:      # made once per process (every event asks)
            eid = f"{BOOT}:{self.start_ticks}:{self.pid}" if self.start_ns else ""
            self._eid = (self.start_ns, eid)
        return eid


_PROC_READ_MAX = 64 << 10     # argv is the process's own: read no more of it than this


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(_PROC_READ_MAX)
    except OSError:
        return None


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


_CLK_TCK = os.sysconf("SC_CLK_TCK")
_NS_PER_TICK = 1_000_000_000 // _CLK_TCK


def read_proc(pid: int, cgroup_id_of=None) -> Proc | None:
    """One process from /proc, or None if it is gone."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # comm may contain spaces and parentheses: split at the last ')'
    lpar, rpar = stat.find(b"("), stat.rfind(b")")
    comm = stat[lpar + 1:rpar].decode(errors="backslashreplace")
    rest = stat[rpar + 2:].split()
    ppid = int(rest[1])
    start_ns = int(rest[19]) * _NS_PER_TICK
    cmdline = _read(f"/proc/{pid}/cmdline") or b""
    args = tuple(a.decode(errors="backslashreplace") for a in cmdline.split(b"\0")[:-1])
    uid = -1
    status = _read(f"/proc/{pid}/status") or b""
    for line in status.splitlines():
        if line.startswith(b"Uid:"):
            uid = int(line.split()[1])
            break
    exe = _readlink(f"/proc/{pid}/exe")
    if exe.endswith(" (deleted)"):
        exe = exe[:-len(" (deleted)")]
    p = Proc(pid, ppid, exe, args, _readlink(f"/proc/{pid}/cwd"), uid, comm, start_ns)
    if cgroup_id_of is not None:
        p.cgroup_id = cgroup_id_of(pid) or 0
    return p


class ProcessTree:
    def __init__(self, max_size: int = 65536, exited_ttl: float = 5.0, clock=time.monotonic,
                 cgroup_id_of=None):
        self.max_size = max_size
        self.exited_ttl = exited_ttl
        self._clock = clock
        self._cgroup_id_of = cgroup_id_of
        self._procs: OrderedDict[int, Proc] = OrderedDict()
        self._exited: OrderedDict[int, float] = OrderedDict()   # pid -> exit time
        self.evicted = 0
        # ancestry per pid, valid while no exec, exit or fork changed the table
        self._version = 0
        self._ancestry: dict[tuple[int, int], tuple] = {}

    def __len__(self):
        return len(self._procs)

    def get(self, pid: int) -> Proc | None:
        return self._procs.get(pid)

    def scan(self, proc_root: str = "/proc") -> int:
        """Learn every process alive now. Returns how many."""
        n = 0
        for name in os.listdir(proc_root):
            if name.isdigit():
                p = read_proc(int(name), self._cgroup_id_of)
                if p is not None:
                    p.origin = "scan"
                    self._put(p)
                    n += 1
        return n

    def lookup(self, pid: int) -> Proc | None:
        """The process, reading /proc if the table does not know it yet (a process that
        started before an event about it reached us)."""
        p = self._procs.get(pid)
        if p is None:
            p = read_proc(pid, self._cgroup_id_of)
            if p is not None:
                self._put(p)
        return p

    # -- events ------------------------------------------------------------------------
    def on_fork(self, parent_pid: int, child_pid: int, start_ns: int, cgroup_id: int) -> Proc:
        parent = self.lookup(parent_pid)
        if parent is not None:
            child = Proc(child_pid, parent_pid, parent.exe, parent.args, parent.cwd,
                         parent.uid, parent.comm, start_ns, cgroup_id, origin="fork")
            child.setup, child.setup_in = parent.setup, parent.setup_in
        else:
            child = Proc(child_pid, parent_pid, start_ns=start_ns, cgroup_id=cgroup_id,
                         origin="fork")
        self._put(child)
        return child

    def on_exec(self, ev) -> Proc:
        p = self._procs.get(ev.pid)
        start = ev.start
        if p is None or (start and p.start_ns and p.start_ticks != start // _NS_PER_TICK):
            p = Proc(ev.pid, ev.ppid, start_ns=start, origin="exec")   # or its pid reused
            self._put(p)
        elif start and not p.start_ns:
            p.start_ns = start
        p.ppid, p.exe, p.args, p.uid, p.comm = ev.ppid, ev.exe, ev.args, ev.uid, ev.comm
        p.cgroup_id = ev.cgroup_id
        cwd = _readlink(f"/proc/{ev.pid}/cwd")
        if cwd:
            p.cwd = cwd
        return p

    def on_exit(self, pid: int) -> None:
        p = self._procs.get(pid)
        if p is not None and p.exited_at is None:
            p.exited_at = self._clock()
            self._exited[pid] = p.exited_at
        self.expire()

    def apply(self, ev) -> None:
        """Update the table from a process event (others are ignored)."""
        kind = ev.kind
        self._version += 1
        if len(self._ancestry) > 4096:
            self._ancestry.clear()
        if kind == "fork":
            self.on_fork(ev.pid, ev.child_pid, ev.child_start, ev.cgroup_id)
        elif kind == "exec":
            self.on_exec(ev)
        elif kind == "exit":
            self.on_exit(ev.pid)

    # -- questions ---------------------------------------------------------------------
    def ancestry(self, pid: int, depth: int = 8) -> tuple:
        """((pid, exe, exec_id, name), …) of the ancestors, parent first (name: what
        proc.name was for it, see enricher.program_name); cached until the table
        changes (a storm of file events from one process walks its ancestry once)."""
        key = (pid, depth)
        hit = self._ancestry.get(key)
        if hit is not None and hit[0] == self._version:
            return hit[1]
        out = tuple((a.pid, a.exe, a.exec_id, a.comm) for a in self.ancestors(pid, depth))
        self._ancestry[key] = (self._version, out)
        return out

    def ancestors(self, pid: int, depth: int = 8) -> list[Proc]:
        """Parent, grandparent… up to depth (stops at pid 1/0, an unknown process, or a pid
        that a process started after its child holds now: the parent exited and its pid was
        given again, so the one there is not the parent)."""
        out = []
        p = self._procs.get(pid)
        seen = {pid}
        while p is not None and len(out) < depth:
            ppid = p.ppid
            if ppid <= 0 or ppid in seen:
                break
            seen.add(ppid)
            child = p
            p = self.lookup(ppid)
            if p is None or (p.start_ns and child.start_ns and
                             p.start_ticks > child.start_ticks):
                break
            out.append(p)
        return out

    def runtime_setup(self, p: Proc, ppid: int, container_id: str, container_of,
                      attached=None, first_event: bool = False) -> bool:
        """Is `p`, seen now in container `container_id`, the runtime's own setup? Decided
        once per process and container (see the module's docstring). `ppid` is the parent
        the kernel reported with the event; `container_of(cgroup_id, pid)` names the
        container of a cgroup (None: the host); `attached(pid)` is the kernel's record of
        the last move of that task into a cgroup: (cgroup, cgroup of the mover) or None.
        `first_event`: decide from the facts whatever the table learned the process from
        (its exec in the host's mount namespace: agent/context/enricher.py)."""
        if p.setup is not None and p.setup_in == container_id:
            return p.setup
        setup = False
        if first_event or p.origin in ("proc", "fork"):
            # "proc": first seen here, no fork of it in sight; "fork": forked elsewhere (a
            # host process we watch too) and seen here now
            moved = attached(p.pid) if attached is not None else None
            if moved is not None:
                dst, mover = container_of(moved[0], p.pid), container_of(moved[1], None)
                setup = dst is not None and dst.id == container_id and \
                    (mover is None or mover.id != container_id)
            else:                       # e.g. clone3(CLONE_INTO_CGROUP): ask the parent
                parent = self.lookup(ppid) if ppid > 0 else None
                if parent is not None and parent.cgroup_id:
                    pc = container_of(parent.cgroup_id, parent.pid)
                    setup = pc is None or pc.id != container_id
        p.setup, p.setup_in = setup, container_id
        return setup

    def lookup_event(self, ev) -> Proc:
        """The event's process; one made from the event itself when neither the table nor
        /proc knows it any more (it exited before we got to its events)."""
        p = self.lookup(ev.pid)
        if p is None:
            p = Proc(ev.pid, ev.ppid, comm=ev.comm, cgroup_id=ev.cgroup_id)   # start unknown
            self._put(p)
        return p

    @staticmethod
    def on_exec_in(p: Proc, container_id: str | None) -> None:
        """An exec: from now on the process runs a program of its own, the workload's."""
        p.setup, p.setup_in = False, container_id

    # -- bookkeeping -------------------------------------------------------------------
    def _put(self, p: Proc) -> None:
        old = self._procs.pop(p.pid, None)
        if old is not None:
            self._exited.pop(p.pid, None)     # pid reused
        self._procs[p.pid] = p
        if len(self._procs) > self.max_size:
            self._evict()

    def expire(self) -> None:
        now = self._clock()
        while self._exited:
            pid, t = next(iter(self._exited.items()))
            if now - t < self.exited_ttl:
                break
            self._exited.popitem(last=False)
            p = self._procs.get(pid)
            if p is not None and p.exited_at == t:
                del self._procs[pid]

    def _evict(self) -> None:
        while len(self._procs) > self.max_size:
            if self._exited:
                pid, _ = self._exited.popitem(last=False)
                self._procs.pop(pid, None)
            else:
                self._procs.popitem(last=False)
            self.evicted += 1
