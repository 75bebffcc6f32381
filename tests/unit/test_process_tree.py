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
    return tuple.__new__(ForkEvent, _hdr("fork", parent) + (child,))


def exec_(pid, ppid, exe, args):
    return tuple.__new__(ExecEvent, _hdr("exec", pid, ppid) + (
        exe, 1, 1, "ext4", 1, False, False, False, False, False, exe, tuple(args), False, "pipe", "pipe", "pipe"))


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


def test_runtime_setup_processes_are_recognised():
    assert ProcessTree.is_runtime_setup(None, "runc:[2:INIT]")
    assert ProcessTree.is_runtime_setup(None, "runc:[1:CHILD]")
    assert not ProcessTree.is_runtime_setup(None, "sh")
    p = read_proc(os.getpid())
    assert not ProcessTree.is_runtime_setup(p)
