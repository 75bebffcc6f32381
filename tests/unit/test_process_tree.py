"""The process table: /proc scan, fork/exec/exit, bounds, expiry, ancestry."""
import os

from agent.context.process_tree import ProcessTree, read_proc
from agent.sensor.events import ExecEvent, ExitEvent, ForkEvent


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _hdr(kind, pid, ppid=1):
    return (kind, 0, pid, pid, ppid, pid, 0, 0, "c", 7, 1, 1)


def fork(parent, child):
    return tuple.__new__(ForkEvent, _hdr("fork", parent) + (child, 0))   # start unknown


def exec_(pid, ppid, exe, args):
    return tuple.__new__(ExecEvent, _hdr("exec", pid, ppid) + (
        exe, 1, 1, "ext4", 1, False, False, False, False, False, exe, tuple(args), False, "pipe", "pipe", "pipe", "", None, 0, 1000, 1000))


def exit_(pid):
    return tuple.__new__(ExitEvent, _hdr("exit", pid) + (0, 0, False))


def test_scan_knows_processes_started_before_the_agent():
    t = ProcessTree()
    assert t.scan() > 1
    me = t.get(os.getpid())
    assert me.exe == os.path.realpath("/proc/self/exe")
    assert me.ppid == os.getppid()
    assert me.uid == os.getuid()
    assert me.cwd == os.getcwd()
    with open("/proc/self/cmdline", "rb") as f:
        assert list(me.args) == [a.decode() for a in f.read().split(b"\0")[:-1]]


def test_fork_exec_exit_and_ancestry():
    t = ProcessTree(clock=Clock())
    t.apply(exec_(1, 0, "/sbin/init", ["init"]))
    t.apply(exec_(100, 1, "/usr/bin/node", ["node", "server.js"]))
    t.apply(fork(100, 101))
    assert (t.get(101).exe, t.get(101).ppid) == ("/usr/bin/node", 100)   # inherited
    t.apply(exec_(101, 100, "/bin/sh", ["sh", "-c", "curl x"]))
    t.apply(fork(101, 102))
    t.apply(exec_(102, 101, "/usr/bin/curl", ["curl", "x"]))
    assert [(p.pid, p.exe) for p in t.ancestors(102)] == [
        (101, "/bin/sh"), (100, "/usr/bin/node"), (1, "/sbin/init")]
    assert [p.pid for p in t.ancestors(102, depth=1)] == [101]


def test_exited_entries_resolve_briefly_then_go():
    clock = Clock()
    t = ProcessTree(exited_ttl=5, clock=clock)
    t.apply(exec_(200, 1, "/bin/sleep", ["sleep"]))
    t.apply(exit_(200))
    clock.t += 4
    t.expire()
    assert t.get(200).exe == "/bin/sleep"
    clock.t += 2
    t.expire()
    assert t.get(200) is None


def test_pid_reuse_replaces_the_old_entry():
    clock = Clock()
    t = ProcessTree(exited_ttl=5, clock=clock)
    t.apply(exec_(300, 1, "/bin/old", ["old"]))
    t.apply(exit_(300))
    t.apply(fork(1, 300))
    t.apply(exec_(300, 1, "/bin/new", ["new"]))
    clock.t += 10
    t.expire()
    assert t.get(300).exe == "/bin/new"


def test_bounded_size_evicts_exited_first():
    t = ProcessTree(max_size=3, clock=Clock())
    for pid in (1, 2, 3):
        t.apply(exec_(pid, 0, f"/bin/p{pid}", []))
    t.apply(exit_(1))
    t.apply(exec_(4, 0, "/bin/p4", []))
    assert sorted(p for p in (1, 2, 3, 4) if t.get(p)) == [2, 3, 4]
    t.apply(exec_(5, 0, "/bin/p5", []))            # nothing exited: the oldest goes
    assert sorted(p for p in (1, 2, 3, 4, 5) if t.get(p)) == [3, 4, 5]
    assert t.evicted == 2


class _C:
    def __init__(self, id):
        self.id = id


def _container_of(table):
    """container_of(cgroup_id, pid) over a fixed cgroup -> container id table."""
    return lambda cg, pid: _C(table[cg]) if cg in table else None


def _proc(t, pid, ppid, cg, origin):
    from agent.context.process_tree import Proc
    p = Proc(pid, ppid, cgroup_id=cg, origin=origin)
    t._put(p)
    return p


def test_runtime_setup_is_decided_by_where_the_parent_is_not_by_names():
    t = ProcessTree()
    of = _container_of({50: "ctr"})
    host = _proc(t, 100, 1, 9, "proc")             # runc on the host, cgroup 9
    init = _proc(t, 101, 100, 50, "proc")          # its init, already in the container
    init.comm = "sh"                               # the name says nothing either way
    assert t.runtime_setup(init, 100, "ctr", of) is True
    t.apply(fork(101, 102))                        # runc:[1:CHILD] etc. inherit it
    assert t.runtime_setup(t.get(102), 101, "ctr", of) is True
    t.on_exec_in(t.get(102), "ctr")                # the workload's first program
    assert t.runtime_setup(t.get(102), 100, "ctr", of) is False
    t.apply(fork(102, 103))                        # everything it forks is the workload
    assert t.runtime_setup(t.get(103), 102, "ctr", of) is False
    assert host.setup is None


def test_a_workload_cannot_make_itself_setup():
    t = ProcessTree()
    of = _container_of({50: "ctr"})
    shell = _proc(t, 200, 1, 50, "proc")
    t.on_exec_in(shell, "ctr")
    shell.comm = "runc:[2:INIT]"                   # printf 'runc:[2:INIT]' >/proc/self/comm
    shell.exe = "/root/runc"                       # or run a binary saved as runc
    assert t.runtime_setup(shell, 1, "ctr", of) is False
    # a child whose fork event was lost is read from /proc: its parent is in the container
    lost = _proc(t, 201, 200, 50, "proc")
    lost.comm = "runc"
    assert t.runtime_setup(lost, 200, "ctr", of) is False
    # an unknown parent is no reason to trust it
    orphan = _proc(t, 202, 99999999, 50, "proc")
    assert t.runtime_setup(orphan, 99999999, "ctr", of) is False


def test_processes_older_than_the_agent_are_the_workload():
    t = ProcessTree()
    of = _container_of({50: "ctr"})
    _proc(t, 300, 1, 9, "proc")
    pid1 = _proc(t, 301, 300, 50, "scan")          # the container's init, from the scan
    assert t.runtime_setup(pid1, 300, "ctr", of) is False


def test_a_process_moved_in_from_another_container_is_decided_again():
    t = ProcessTree()
    of = _container_of({50: "a", 60: "b"})
    _proc(t, 400, 1, 50, "proc")
    p = _proc(t, 401, 400, 50, "fork")
    assert t.runtime_setup(p, 400, "a", of) is False
    p.cgroup_id = 60                               # forked in a, seen now in b
    assert t.runtime_setup(p, 400, "b", of) is True


def test_the_kernels_record_of_who_moved_a_process_decides_first():
    t = ProcessTree()
    of = _container_of({50: "ctr", 51: "ctr"})
    moves = {500: (50, 9),          # runc on the host (cgroup 9) moved it in
             501: (51, 50)}         # a process of the container moved itself to a child
    init = _proc(t, 500, 1, 50, "proc")
    assert t.runtime_setup(init, 1, "ctr", of, moves.get) is True
    moved_itself = _proc(t, 501, 1, 51, "proc")
    assert t.runtime_setup(moved_itself, 1, "ctr", of, moves.get) is False
    # the kernel saw the move but into another container's cgroup: not this one's setup
    elsewhere = _proc(t, 502, 1, 50, "proc")
    assert t.runtime_setup(elsewhere, 1, "ctr", of, {502: (77, 9)}.get) is False
    # a process gone before its events were read is made from the event, then decided
    gone = t.lookup_event(fork(99999998, 99999997))
    assert (gone.pid, gone.origin, gone.comm) == (99999998, "proc", "c")
    assert t.runtime_setup(gone, 1, "ctr", of, {99999998: (50, 9)}.get) is True


def _fork_at(parent, child, start_ns):
    return tuple.__new__(ForkEvent, _hdr("fork", parent) + (child, start_ns))


def test_a_reused_pid_is_another_process_and_not_an_ancestor():
    clock = Clock()
    t = ProcessTree(exited_ttl=60, clock=clock)
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    t.apply(_fork_at(1, 100, 50 * tick))           # the parent
    t.apply(_fork_at(100, 200, 60 * tick))         # its child
    first = t.get(100).exec_id
    assert t.ancestry(200)[0] == (100, "", first, t.get(100).comm)
    t.apply(exit_(100))
    t.apply(_fork_at(1, 100, 70 * tick))           # pid 100 handed out again, later
    assert t.get(100).exec_id != first and t.get(100).exec_id.endswith(":70:100")
    # the child's parent was the first 100: the new one started after the child
    assert t.ancestry(200) == ()
    assert [p.pid for p in t.ancestors(100)] == [1]     # its own parent, init
