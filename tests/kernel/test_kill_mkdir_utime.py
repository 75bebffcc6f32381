"""kill/tkill/tgkill, mkdir/mkdirat and utimensat/utimes/futimesat/utime from real syscalls,
checked field by field: the signal and its target, the directory made and the times set."""
import os
import subprocess
import sys

import pytest

from agent.sensor import cgroups
from agent.sensor.probes import tracepoint_exists
from conftest import enter_cgroup, run_python

# x86_64 numbers of the calls these tests make raw (tests/kernel/syscalls.py has the others)
MORE_NR = "NR.update(kill=62, tkill=200, tgkill=234, mkdir=83, mkdirat=258, utime=132, " \
          "utimes=235, futimesat=261, utimensat=280)\n"
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
JAN_2020 = 1577836800


@pytest.fixture
def tmp(tmp_path):
    return os.path.realpath(tmp_path)   # file.path is what the kernel resolved


def _of(collector, pid, kind, count=1, timeout=5.0):
    return collector.find(lambda e: e.pid == pid and e.kind == kind, count=count,
                          timeout=timeout)


def _common(ev, child, cgroup_dir):
    assert (ev.pid, ev.tid, ev.ppid) == (child.pid, child.pid, os.getpid())
    assert (ev.uid, ev.gid) == (0, 0)
    assert ev.cgroup_id == cgroups.cgroup_id(cgroup_dir)


def _sig(ev):
    return (ev.syscall, ev.result, ev.error, ev.get("signal.target"), ev.get("signal.number"),
            ev.get("signal.name"))


# -- kill ---------------------------------------------------------------------------------

def test_kill_reports_target_signal_and_result_but_not_signal_0(collector, watched_cgroup):
    child = run_python(watched_cgroup, MORE_NR + """
import signal, subprocess
p = subprocess.Popen(["/bin/sleep", "30"])
e = os.kill(p.pid, 0)                      # does it exist? not reported
os.kill(p.pid, signal.SIGTERM)
p.wait()
gone = sc("kill", p.pid, signal.SIGKILL)   # reaped: ESRCH
report(target=p.pid, status=p.returncode, gone=gone)
""")
    assert (child.out["status"], child.out["gone"]) == (-15, -3)
    term, gone = _of(collector, child.pid, "kill", count=2)
    _common(term, child, watched_cgroup)
    assert _sig(term) == ("kill", 0, None, child.out["target"], 15, "SIGTERM")
    assert _sig(gone) == ("kill", -3, "ESRCH", child.out["target"], 9, "SIGKILL")
    f = term.fields()
    assert (f["event.kind"], f["signal.target"], f["signal.number"], f["signal.name"]) == (
        "kill", child.out["target"], 15, "SIGTERM")
    # the existence check made no event: only the two signals, in order
    assert len(_of(collector, child.pid, "kill", count=3, timeout=0.5)) == 2


def test_kill_of_a_process_group_keeps_the_target_signed(collector, watched_cgroup):
    child = run_python(watched_cgroup, MORE_NR + """
import signal
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
os.setpgrp()                               # its own group: the test's is not signalled
a = sc("kill", 0, signal.SIGUSR1)          # its own process group
os.killpg(os.getpgrp(), signal.SIGUSR1)    # kill(-pgid)
b = sc("kill", 0, 0)                       # existence check of the group: not reported
report(a=a, b=b, pgid=os.getpgrp())
""")
    assert (child.out["a"], child.out["b"]) == (0, 0)
    own, group = _of(collector, child.pid, "kill", count=2)
    assert _sig(own) == ("kill", 0, None, 0, 10, "SIGUSR1")
    assert _sig(group) == ("kill", 0, None, -child.out["pgid"], 10, "SIGUSR1")
    assert len(_of(collector, child.pid, "kill", count=3, timeout=0.5)) == 2


def test_tkill_and_tgkill_target_the_thread_and_its_group(collector, watched_cgroup):
    child = run_python(watched_cgroup, MORE_NR + """
import signal, threading
signal.signal(signal.SIGUSR2, signal.SIG_IGN)
signal.signal(signal.SIGRTMIN + 1, signal.SIG_IGN)
tid = threading.get_native_id()
a = sc("tkill", tid, signal.SIGUSR2)
signal.pthread_kill(threading.get_ident(), signal.SIGRTMIN + 1)   # tgkill(pid, tid, sig)
signal.pthread_kill(threading.get_ident(), 0)                     # not reported
signal.signal(signal.SIGURG, signal.SIG_IGN)
signal.pthread_kill(threading.get_ident(), signal.SIGURG)  # Go's preemption: not reported
b = sc("tgkill", os.getpid(), tid, signal.SIGUSR2)
report(a=a, b=b, tid=tid)
""")
    assert (child.out["a"], child.out["b"]) == (0, 0)
    tk, rt, tg = _of(collector, child.pid, "kill", count=3)
    assert _sig(tk) == ("tkill", 0, None, child.out["tid"], 12, "SIGUSR2")
    assert _sig(rt) == ("tgkill", 0, None, child.pid, 35, "SIGRTMIN+1")
    assert _sig(tg) == ("tgkill", 0, None, child.pid, 12, "SIGUSR2")
    assert len(_of(collector, child.pid, "kill", count=4, timeout=0.5)) == 3



def test_a_process_that_kills_itself_is_still_reported(collector, watched_cgroup):
    """SIGKILL to its own group: the signal is delivered on the way back to user space,
    after sys_exit, so the event is sent with the call's result."""
    p = subprocess.Popen([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"],
                         preexec_fn=enter_cgroup(watched_cgroup))
    assert p.wait(timeout=20) == -9
    [ev] = _of(collector, p.pid, "kill")
    assert _sig(ev) == ("kill", 0, None, p.pid, 9, "SIGKILL")


def test_the_target_is_the_pid_in_the_senders_namespace(collector, watched_cgroup):
    """In a pid namespace (a container) the target is the number the sender passed: the
    namespace's, which proc.vpid speaks, not the host's."""
    child = run_python(watched_cgroup, """
import time
r = sc("unshare", 0x20000000)              # CLONE_NEWPID: the next child is its pid 1
g = os.fork()
if g == 0:
    s = os.fork()
    if s == 0:
        time.sleep(30)
        os._exit(0)
    os.kill(s, 15)
    os.waitpid(s, 0)
    os._exit(0 if s == 2 else 3)
_, st = os.waitpid(g, 0)
report(r=r, g=g, st=st)
""")
    assert (child.out["r"], child.out["st"]) == (0, 0)
    [ev] = _of(collector, child.out["g"], "kill")
    assert (ev.vpid, ev.ppid) == (1, child.pid)
    assert _sig(ev) == ("kill", 0, None, 2, 15, "SIGTERM")

# -- mkdir --------------------------------------------------------------------------------

def test_mkdir_relative_absolute_and_from_a_dirfd(collector, watched_cgroup, tmp):
    os.makedirs(f"{tmp}/w/x")
    child = run_python(watched_cgroup, MORE_NR + f"""
os.chdir({tmp + '/w/x'!r})
os.mkdir("../made", 0o750)                 # libc's mkdir: the mkdir syscall on x86_64
d = os.open({tmp!r}, os.O_RDONLY | os.O_DIRECTORY)
os.mkdir("w/./x/..//at", 0o700, dir_fd=d)  # mkdirat
a = sc("mkdir", {tmp + '/w/abs'!r}, 0o1777)
b = sc("mkdirat", AT_FDCWD, "../made", 0o755)   # exists
report(d=d, a=a, b=b)
""")
    assert (child.out["a"], child.out["b"]) == (0, -17)
    rel, at, ab, again = _of(collector, child.pid, "mkdir", count=4)
    _common(rel, child, watched_cgroup)
    assert (rel.syscall, rel.result, rel.path, rel.requested_path, rel.mode, rel.fd,
            rel.flags, rel.resolved) == (
        "mkdir", 0, f"{tmp}/w/made", "../made", 0o750, -100, (), False)
    assert (at.syscall, at.result, at.path, at.requested_path, at.mode, at.fd) == (
        "mkdirat", 0, f"{tmp}/w/at", "w/./x/..//at", 0o700, child.out["d"])
    assert (ab.syscall, ab.path, ab.mode) == ("mkdir", f"{tmp}/w/abs", 0o1777)
    assert (again.syscall, again.result, again.error, again.path) == (
        "mkdirat", -17, "EEXIST", f"{tmp}/w/made")
    assert os.path.isdir(f"{tmp}/w/at")
    f = rel.fields()
    assert (f["event.kind"], f["file.path"], f["file.mode"]) == ("mkdir", f"{tmp}/w/made",
                                                                  0o750)


# -- utime --------------------------------------------------------------------------------

def _utime(ev):
    return (ev.syscall, ev.result, ev.path, ev.flags, ev.mode)


def test_utimensat_times_given_or_not(collector, watched_cgroup, tmp):
    path = f"{tmp}/f"
    open(path, "w").close()
    os.symlink(path, f"{tmp}/link")
    child = run_python(watched_cgroup, MORE_NR + f"""
import ctypes
os.utime({path!r})                                   # times NULL: now
os.utime({path!r}, (0, {JAN_2020}))                  # explicit
os.utime({tmp + '/link'!r}, ns=(5, 7 * 10**9 + 3), follow_symlinks=False)
ts = (ctypes.c_int64 * 4)(0, {UTIME_NOW}, 0, {UTIME_OMIT})
now = sc("utimensat", AT_FDCWD, {path!r}, ctypes.byref(ts), 0)
ts = (ctypes.c_int64 * 4)(1234, 0, 0, {UTIME_OMIT})  # atime only: given, no mtime
at = sc("utimensat", AT_FDCWD, {path!r}, ctypes.byref(ts), 0)
d = os.open({tmp!r}, os.O_RDONLY | os.O_DIRECTORY)
os.utime("f", (1, 2), dir_fd=d)
missing = sc("utimensat", AT_FDCWD, {tmp + '/none'!r}, 0, 0)
report(now=now, at=at, d=d, missing=missing)
""")
    assert (child.out["now"], child.out["at"], child.out["missing"]) == (0, 0, -2)
    evs = _of(collector, child.pid, "utime", count=7)
    assert len(evs) == 7
    plain, given, nofollow, now, atime, rel, missing = evs
    _common(plain, child, watched_cgroup)
    assert _utime(plain) == ("utimensat", 0, path, (), None)
    assert (plain.requested_path, plain.fd, plain.resolved) == (path, -100, False)
    assert _utime(given) == ("utimensat", 0, path, ("TIMES_GIVEN",), JAN_2020)
    assert _utime(nofollow) == ("utimensat", 0, f"{tmp}/link",
                                ("AT_SYMLINK_NOFOLLOW", "TIMES_GIVEN"), 7)
    assert _utime(now) == ("utimensat", 0, path, (), None)
    assert _utime(atime) == ("utimensat", 0, path, ("TIMES_GIVEN",), None)
    assert _utime(rel) == ("utimensat", 0, path, ("TIMES_GIVEN",), 2)
    assert (rel.requested_path, rel.fd) == ("f", child.out["d"])
    assert (missing.result, missing.error, missing.path, missing.flags, missing.mode) == (
        -2, "ENOENT", f"{tmp}/none", (), None)
    # utime.mtime, not file.mode: a utime call sets no permission bits
    f = given.fields()
    assert (f["utime.mtime"], f["file.flags"], "file.mode" in f) == (
        JAN_2020, ("TIMES_GIVEN",), False)
    assert plain.fields()["utime.mtime"] is None
    assert os.stat(path).st_mtime == 2


def test_futimens_walks_the_descriptor(collector, watched_cgroup, tmp):
    path = f"{tmp}/g"
    open(path, "w").close()
    child = run_python(watched_cgroup, f"""
fd = os.open({path!r}, os.O_RDONLY)
os.utime(fd)                                         # utimensat(fd, NULL, NULL, 0)
os.utime(fd, ({JAN_2020}, {JAN_2020} + 60))
report(fd=fd)
""")
    plain, given = _of(collector, child.pid, "utime", count=2)
    for ev in (plain, given):
        assert (ev.syscall, ev.result, ev.path, ev.requested_path, ev.resolved, ev.fd) == (
            "utimensat", 0, path, "", True, child.out["fd"])
    assert (plain.flags, plain.mode) == ((), None)
    assert (given.flags, given.mode) == (("TIMES_GIVEN",), JAN_2020 + 60)


def test_utimes_futimesat_and_utime_give_times_whenever_not_null(collector, watched_cgroup,
                                                                 tmp):
    path = f"{tmp}/h"
    open(path, "w").close()
    have = {n: tracepoint_exists("syscalls", f"sys_enter_{n}")
            for n in ("utimes", "futimesat", "utime")}
    child = run_python(watched_cgroup, MORE_NR + f"""
import ctypes
tv = (ctypes.c_int64 * 4)(10, 0, {JAN_2020}, 500000)      # atime, mtime {{sec, usec}}
r = [sc("utimes", {path!r}, ctypes.byref(tv)), sc("utimes", {path!r}, 0)]
d = os.open({tmp!r}, os.O_RDONLY | os.O_DIRECTORY)
tv = (ctypes.c_int64 * 4)(0, 0, 86400, 0)
r += [sc("futimesat", d, "h", ctypes.byref(tv)), sc("futimesat", d, 0, 0)]  # NULL: on d
buf = (ctypes.c_int64 * 2)(3, 4)                           # struct utimbuf {{actime, modtime}}
r += [sc("utime", {path!r}, ctypes.byref(buf)), sc("utime", {path!r}, 0)]
report(r=r, d=d)
""")
    assert child.out["r"] == [0] * 6
    want = []
    if have["utimes"]:
        want += [("utimes", 0, path, ("TIMES_GIVEN",), JAN_2020), ("utimes", 0, path, (), None)]
    if have["futimesat"]:
        want += [("futimesat", 0, path, ("TIMES_GIVEN",), 86400),
                 ("futimesat", 0, tmp, (), None)]
    if have["utime"]:
        want += [("utime", 0, path, ("TIMES_GIVEN",), 4), ("utime", 0, path, (), None)]
    evs = _of(collector, child.pid, "utime", count=len(want))
    assert [_utime(e) for e in evs] == want
    if have["futimesat"]:
        at, on_dir = [e for e in evs if e.syscall == "futimesat"]
        assert (at.requested_path, at.fd, at.resolved) == ("h", child.out["d"], False)
        assert (on_dir.requested_path, on_dir.fd, on_dir.resolved) == ("", child.out["d"], True)


def test_touch_with_and_without_explicit_times(collector, watched_cgroup, tmp):
    """What the rules see from touch(1): `touch f` sets the current time (no TIMES_GIVEN);
    `touch -d` and `touch -r` set explicit ones (timestomping)."""
    path, ref = f"{tmp}/t", f"{tmp}/ref"
    open(ref, "w").close()
    os.utime(ref, (JAN_2020, JAN_2020 - 3600))
    child = run_python(watched_cgroup, f"""
import subprocess
pids = []
for argv in (["touch", {path!r}], ["touch", "-d", "2020-01-01 00:00:00 UTC", {path!r}],
             ["touch", "-r", {ref!r}, {path!r}]):
    p = subprocess.Popen(argv)
    p.wait()
    assert p.returncode == 0
    pids.append(p.pid)
report(pids=pids)
""")
    got = []
    for pid in child.out["pids"]:
        [ev] = _of(collector, pid, "utime")
        assert (ev.syscall, ev.result, ev.path, ev.resolved) == ("utimensat", 0, path, True)
        got.append((ev.flags, ev.mode))
    assert got == [((), None), (("TIMES_GIVEN",), JAN_2020), (("TIMES_GIVEN",), JAN_2020 - 3600)]
    assert os.stat(path).st_mtime == JAN_2020 - 3600


def test_the_new_tracepoints_are_attached(sensor):
    """Each new call is traced where its tracepoint exists, and reported missing otherwise
    (the legacy mkdir, utime, utimes and futimesat are not syscalls on arm64 or riscv)."""
    for name in ("kill", "tkill", "tgkill", "mkdirat", "utimensat"):
        assert tracepoint_exists("syscalls", f"sys_enter_{name}"), name
        assert name not in sensor.unavailable
    for name in ("mkdir", "utime", "utimes", "futimesat"):
        assert (name in sensor.unavailable) != tracepoint_exists("syscalls",
                                                                 f"sys_enter_{name}")

