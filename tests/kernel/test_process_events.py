"""exec, fork and exit events from real processes, checked field by field."""
import os
import pty
import signal
import socket
import subprocess
import tempfile

from agent.sensor import cgroups, layout, names
from conftest import enter_cgroup, run_python


def _fs_name(path):
    magic = int(subprocess.check_output(["stat", "-f", "-c", "%t", path]).decode(), 16)
    return names.FS_MAGIC[magic]


def _ns(kind):
    return os.stat(f"/proc/self/ns/{kind}").st_ino


def test_exec_reports_real_binary_args_and_context(collector, watched_cgroup):
    master, slave = pty.openpty()
    a, b = socket.socketpair()
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(["/bin/echo", "two words", "x"], stdin=subprocess.PIPE,
                             stdout=out, stderr=slave, preexec_fn=enter_cgroup(watched_cgroup))
        p.communicate()
    os.close(master), os.close(slave), a.close(), b.close()
    [ev] = collector.of_pid(p.pid, "exec")
    real = os.path.realpath("/bin/echo")
    st = os.stat(real)
    assert ev.kind == "exec"
    assert ev.exe == real
    assert ev.filename == "/bin/echo"
    assert ev.args == ("/bin/echo", "two words", "x")
    assert ev.args_truncated is False
    assert (ev.pid, ev.tid, ev.vpid, ev.ppid) == (p.pid, p.pid, p.pid, os.getpid())
    assert (ev.uid, ev.gid) == (0, 0)
    assert ev.comm == "echo"
    assert ev.cgroup_id == cgroups.cgroup_id(watched_cgroup)
    assert (ev.pidns, ev.mntns) == (_ns("pid"), _ns("mnt"))
    assert (ev.exe_inode, ev.exe_dev, ev.exe_links) == (st.st_ino, st.st_dev, st.st_nlink)
    assert ev.exe_fs == _fs_name(real)
    assert (ev.exe_truncated, ev.exe_detached) == (False, False)
    assert (ev.stdin, ev.stdout, ev.stderr) == ("pipe", "file", "tty")
    f = ev.fields()
    assert f["proc.exe"] == real and f["proc.args"] == ev.args and f["event.kind"] == "exec"


def test_exec_stdio_socket_and_closed(collector, watched_cgroup):
    a, b = socket.socketpair()
    p = subprocess.Popen(["/bin/sh", "-c", "exec 2>&-; exec /bin/true"], stdin=a.fileno(),
                         stdout=subprocess.DEVNULL, preexec_fn=enter_cgroup(watched_cgroup))
    p.wait()
    a.close(), b.close()
    evs = collector.of_pid(p.pid, "exec", count=2)
    assert [e.exe for e in evs] == [os.path.realpath("/bin/sh"), os.path.realpath("/bin/true")]
    assert (evs[1].stdin, evs[1].stdout, evs[1].stderr) == ("socket", "chardev", "none")


def test_exec_args_beyond_the_count_bound_keep_the_first_and_the_last(collector,
                                                                       watched_cgroup):
    argv = ["/bin/true"] + [f"a{i}" for i in range(100)]
    p = subprocess.Popen(argv, preexec_fn=enter_cgroup(watched_cgroup))
    p.wait()
    [ev] = collector.of_pid(p.pid, "exec")
    assert ev.args == tuple(argv[:48] + argv[-16:])
    assert (layout.MAX_ARGS, layout.MAX_ARGS_TAIL) == (64, 16)
    assert ev.args_truncated is True


def test_exec_args_beyond_the_byte_bound_keep_their_head_and_tail(collector, watched_cgroup):
    """5,013 bytes of argv: the first 3 KiB and the last 1 KiB, each cut argument kept."""
    argv = ["/bin/true", "x" * 3000, "y" * 2000, "last"]
    p = subprocess.Popen(argv, preexec_fn=enter_cgroup(watched_cgroup))
    p.wait()
    [ev] = collector.of_pid(p.pid, "exec")
    assert (layout.ARGS_LEN, layout.ARGS_TAIL) == (4096, 1024)
    head = 3072 - len("/bin/true\0") - len("x" * 3000 + "\0")
    tail = 1024 - len("last\0") - 1
    assert ev.args == ("/bin/true", "x" * 3000, "y" * head, "y" * tail, "last")
    assert ev.args_truncated is True


def test_exec_args_that_fit_are_whole(collector, watched_cgroup):
    argv = ["/bin/true", "x" * 2000, "y" * 2000]                  # 4,014 bytes: they fit
    p = subprocess.Popen(argv, preexec_fn=enter_cgroup(watched_cgroup))
    p.wait()
    [ev] = collector.of_pid(p.pid, "exec")
    assert ev.args == tuple(argv) and ev.args_truncated is False


def test_exec_as_another_user(collector, watched_cgroup):
    def pre():
        enter_cgroup(watched_cgroup)()
        os.setgid(4321)
        os.setuid(1234)
    p = subprocess.Popen(["/bin/true"], preexec_fn=pre)
    p.wait()
    [ev] = collector.of_pid(p.pid, "exec")
    assert (ev.uid, ev.gid) == (1234, 4321)


def test_fork_reports_parent_and_child(collector, watched_cgroup):
    child = run_python(watched_cgroup, """
import os
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
report(child=pid)
""")
    [ev] = collector.find(lambda e: e.kind == "fork" and e.pid == child.pid)
    assert ev.child_pid == child.out["child"]
    assert ev.ppid == os.getpid()
    assert ev.fields()["fork.child_pid"] == child.out["child"]


def test_threads_are_not_reported_as_forks_and_exit_once(collector, watched_cgroup):
    p = subprocess.Popen([os.sys.executable, "-c", """
import threading, sys
ts = [threading.Thread(target=lambda: None) for _ in range(3)]
[t.start() for t in ts]; [t.join() for t in ts]
sys.exit(3)
"""], preexec_fn=enter_cgroup(watched_cgroup))
    p.wait()
    [ex] = collector.of_pid(p.pid, "exit")
    assert (ex.code, ex.signal, ex.core_dumped) == (3, 0, False)
    assert collector.find(lambda e: e.kind == "fork" and e.pid == p.pid, timeout=0.3) == []
    assert len([e for e in collector.events if e.kind == "exit" and e.pid == p.pid]) == 1


def test_exit_code(collector, watched_cgroup):
    p = subprocess.Popen(["/bin/sh", "-c", "exit 7"], preexec_fn=enter_cgroup(watched_cgroup))
    p.wait()
    [ev] = collector.of_pid(p.pid, "exit")
    assert (ev.code, ev.signal, ev.core_dumped) == (7, 0, False)
    assert ev.fields()["exit.code"] == 7


def test_exit_by_signal(collector, watched_cgroup):
    p = subprocess.Popen(["/bin/sleep", "30"], preexec_fn=enter_cgroup(watched_cgroup))
    collector.of_pid(p.pid, "exec")
    p.send_signal(signal.SIGKILL)
    p.wait()
    [ev] = collector.of_pid(p.pid, "exit")
    assert (ev.code, ev.signal, ev.core_dumped) == (None, 9, False)


def _start_ticks(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rfind(b")") + 2:].split()[19])


def test_fork_and_exec_carry_the_kernels_start_time_of_the_process(collector, watched_cgroup):
    """proc.exec_id's start: the kernel's start_boottime, in /proc/PID/stat's clock."""
    from agent.context.process_tree import BOOT, ProcessTree
    child = run_python(watched_cgroup, """
import os, sys, time
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.execv("/bin/sh", ["sh", "-c", "echo ready >&%d; exec sleep 30" % w])
os.close(w)
os.read(r, 16)
with open("/proc/%d/stat" % pid, "rb") as f:
    stat = f.read()
report(child=pid, ticks=int(stat[stat.rfind(b")") + 2:].split()[19]))
os.kill(pid, 9)
os.waitpid(pid, 0)
""")
    pid, ticks = child.out["child"], child.out["ticks"]
    tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    [fork] = collector.find(lambda e: e.kind == "fork" and e.child_pid == pid)
    [ex] = collector.of_pid(pid, "exec")[:1]
    assert fork.child_start // tick_ns == ticks
    assert ex.start == fork.child_start            # exec keeps the process's start
    tree = ProcessTree()
    tree.apply(fork)
    tree.apply(ex)
    assert tree.get(pid).exec_id == f"{BOOT}:{ticks}:{pid}"
    assert _start_ticks(os.getpid()) <= ticks
