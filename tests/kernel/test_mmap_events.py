"""mmap_exec: code mapped executable from a file that is drift (mmap, mprotect, pkey_mprotect,
shmat), checked field by field on real syscalls; the kill in an enforced cgroup; and the
root-overlay / allowed-mount test execs and mappings share (exec_roots, exec_allow)."""
import os
import signal
import subprocess
import sys
import tempfile

import pytest

from agent.sensor import cgroups
from conftest import HERE, enter_cgroup, make_cgroup, remove_cgroup, run_python

# Raw calls (x86_64 numbers) with the exact arguments the test names; results on stdout.
MAPS = r"""
import ctypes
_sys = ctypes.CDLL(None, use_errno=True).syscall
_sys.restype = ctypes.c_long
def raw(nr, *a):
    r = _sys(ctypes.c_long(nr), *[ctypes.c_long(x) for x in a])
    return -ctypes.get_errno() if r == -1 else r
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS = 1, 2, 0x20
def mmap(length, prot, flags, fd, off=0):
    return raw(9, 0, length, prot, flags, fd, off)
def mprotect(addr, length, prot):
    return raw(10, addr, length, prot)
def pkey_mprotect(addr, length, prot, pkey):
    return raw(329, addr, length, prot, pkey)
def page_file(path, pages=2):
    with open(path, "wb") as f:
        f.write(b"\xc3" * 4096 * pages)
    return os.open(path, os.O_RDONLY)
"""


def _mappings(collector, pid, count=1, timeout=5.0):
    return collector.find(lambda e: e.pid == pid and e.kind == "mmap_exec", count=count,
                          timeout=timeout)


SENTINEL = """
s = page_file({path!r})                                     # a drift mapping, last
mmap(4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, s)
"""


def _only_the_sentinel(collector, pid, path):
    """The child's one mmap_exec event is its last call's, the sentinel's: nothing before it
    was reported (and the probe was there to report it)."""
    evs = _mappings(collector, pid, count=1)
    return len(_mappings(collector, pid, count=2, timeout=1.0)) == 1 and evs[0].path == path


def _kdev(st_dev):
    return (os.major(st_dev) << 20) | os.minor(st_dev)


@pytest.fixture
def shm(tmp_path):
    d = tempfile.mkdtemp(dir="/dev/shm", prefix="mamori-")
    yield d
    subprocess.run(["rm", "-rf", d])


def test_mmap_exec_of_a_tmpfs_file_is_reported_with_its_fields(collector, watched_cgroup, shm):
    path = os.path.join(shm, "payload.so")
    child = run_python(watched_cgroup, MAPS + f"""
fd = page_file({path!r})
st = os.fstat(fd)
a = mmap(4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd)
report(fd=fd, ino=st.st_ino, dev=st.st_dev, ok=a > 0)
""")
    assert child.out["ok"]
    [ev] = _mappings(collector, child.pid)
    assert ev.kind == "mmap_exec" and ev.syscall == "mmap"
    assert (ev.pid, ev.tid, ev.ppid, ev.uid) == (child.pid, child.pid, os.getpid(), 0)
    assert ev.cgroup_id == cgroups.cgroup_id(watched_cgroup)
    assert (ev.path, ev.inode, ev.dev, ev.fs, ev.links) == (
        path, child.out["ino"], child.out["dev"], "tmpfs", 1)
    assert (ev.path_truncated, ev.detached, ev.upper, ev.lower) == (False, False, False, False)
    assert (ev.prot, ev.mflags, ev.fd) == (("PROT_READ", "PROT_EXEC"), ("MAP_PRIVATE",),
                                           child.out["fd"])
    f = ev.fields()
    assert (f["file.path"], f["drift.kind"], f["drift.path"], f["drift.unknown_reason"],
            f["drift.prevented"]) == (path, "tmpfs", path, None, False)
    assert (f["mmap.prot"], f["mmap.flags"], f["event.syscall"]) == (
        ("PROT_READ", "PROT_EXEC"), ("MAP_PRIVATE",), "mmap")


def test_image_files_data_mappings_and_anonymous_memory_are_not_reported(collector,
                                                                         watched_cgroup, shm):
    path, sentinel = os.path.join(shm, "data"), os.path.join(shm, "sentinel.so")
    child = run_python(watched_cgroup, MAPS + f"""
libc = os.open("/bin/true", os.O_RDONLY)                    # ext4: not drift
a = mmap(4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, libc)
fd = page_file({path!r})
b = mmap(4096, PROT_READ, MAP_SHARED, fd)                   # a data mapping of a tmpfs file
c = mmap(4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1)
d = mmap(4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, fd)   # fd ignored
report(ok=min(a, b, c, d) > 0)
""" + SENTINEL.format(path=sentinel))
    assert child.out["ok"]
    assert _only_the_sentinel(collector, child.pid, sentinel)


def test_memfd_and_deleted_files_are_fileless_and_deleted(collector, watched_cgroup, tmp_path):
    path = str(tmp_path / "gone.so")
    child = run_python(watched_cgroup, MAPS + f"""
m = os.memfd_create("payload")
os.write(m, b"\\xc3" * 4096)
a = mmap(4096, PROT_READ | PROT_EXEC, MAP_SHARED, m)
fd = page_file({path!r})
ino = os.fstat(fd).st_ino
os.unlink({path!r})
b = mmap(4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd)
report(m=m, fd=fd, ino=ino, ok=min(a, b) > 0)
""")
    assert child.out["ok"]
    mem, gone = _mappings(collector, child.pid, count=2)
    assert (mem.fd, mem.fs, mem.links, mem.detached) == (child.out["m"], "tmpfs", 0, True)
    assert mem.path == "/memfd:payload"
    assert (mem.fields()["drift.kind"], mem.mflags) == ("fileless", ("MAP_SHARED",))
    assert (gone.fd, gone.inode, gone.fs, gone.links, gone.detached) == (
        child.out["fd"], child.out["ino"], "ext4", 0, False)
    assert gone.path == path and gone.fields()["drift.kind"] == "deleted"


def test_mprotect_and_pkey_mprotect_adding_exec_to_a_file_mapping(collector, watched_cgroup,
                                                                  shm):
    path = os.path.join(shm, "late.so")
    child = run_python(watched_cgroup, MAPS + f"""
fd = page_file({path!r}, pages=2)
a = mmap(8192, PROT_READ, MAP_PRIVATE, fd)
r1 = mprotect(a, 4096, PROT_READ | PROT_EXEC)
r2 = pkey_mprotect(a + 4096, 4096, PROT_READ | PROT_EXEC, -1)
anon = mmap(4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1)
r3 = mprotect(anon, 4096, PROT_READ | PROT_EXEC)            # anonymous: not a file
r4 = mprotect(a, 4096, PROT_READ | PROT_EXEC)               # already executable: no news
report(r=[r1, r2, r3, r4], ino=os.fstat(fd).st_ino)
""")
    assert child.out["r"] == [0, 0, 0, 0]
    mp, pk = _mappings(collector, child.pid, count=2)
    assert _mappings(collector, child.pid, count=3, timeout=1.0) == [mp, pk]
    for ev, sysname in ((mp, "mprotect"), (pk, "pkey_mprotect")):
        assert (ev.syscall, ev.path, ev.inode, ev.fs, ev.fd) == (
            sysname, path, child.out["ino"], "tmpfs", -1)
        assert (ev.prot, ev.mflags, ev.fields()["drift.kind"]) == (
            ("PROT_READ", "PROT_EXEC"), ("MAP_PRIVATE",), "tmpfs")


def test_mprotect_over_several_mappings_finds_the_file_one(collector, watched_cgroup, shm):
    path = os.path.join(shm, "hidden.so")
    child = run_python(watched_cgroup, MAPS + f"""
fd = page_file({path!r}, pages=1)
base = mmap(4 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1)   # reserve 4 pages
mprotect(base + 4096, 4096, 0)                                        # split: 3 vmas
a = raw(9, base + 2 * 4096, 4096, PROT_READ, MAP_PRIVATE | 0x10, fd, 0)
r = mprotect(base, 4 * 4096, PROT_READ | PROT_EXEC)
report(ok=a == base + 2 * 4096, r=r)
""")
    assert child.out == {"ok": True, "r": 0}
    [ev] = _mappings(collector, child.pid)
    assert (ev.syscall, ev.path, ev.fs) == ("mprotect", path, "tmpfs")


def test_read_implies_exec_makes_a_read_mapping_executable(collector, watched_cgroup, shm):
    path = os.path.join(shm, "rie.so")
    child = run_python(watched_cgroup, MAPS + f"""
raw(135, 0x0400000)                                  # personality(READ_IMPLIES_EXEC)
fd = page_file({path!r})
a = mmap(4096, PROT_READ, MAP_PRIVATE, fd)
report(ok=a > 0)
""")
    assert child.out["ok"]
    [ev] = _mappings(collector, child.pid)
    assert (ev.path, ev.prot) == (path, ("PROT_READ",))


def test_a_noexec_mount_refuses_the_mapping_and_nothing_is_reported(collector, watched_cgroup,
                                                                    tmp_path):
    mnt = str(tmp_path / "noexec")
    os.makedirs(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "noexec", "mamori", mnt], check=True)
    sentinel = tempfile.mktemp(dir="/dev/shm", prefix="mamori-sentinel-")
    try:
        child = run_python(watched_cgroup, MAPS + f"""
fd = page_file({mnt!r} + "/x.so")
report(r=mmap(4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd))
""" + SENTINEL.format(path=sentinel))
    finally:
        subprocess.run(["umount", "-l", mnt])
        subprocess.run(["rm", "-f", sentinel])
    assert child.out["r"] == -1        # -EPERM
    assert _only_the_sentinel(collector, child.pid, sentinel)


def test_shmat_with_shm_exec_is_fileless(collector, watched_cgroup):
    child = run_python(watched_cgroup, MAPS + """
sid = raw(29, 0, 4096, 0o1600)                     # shmget(IPC_PRIVATE, 4096, IPC_CREAT|0600)
a = raw(30, sid, 0, 0o100000)                      # shmat(.., SHM_EXEC)
raw(31, sid, 0, 0)                                 # shmctl(IPC_RMID)
report(sid=sid, ok=a > 0)
""")
    assert child.out["ok"]
    [ev] = _mappings(collector, child.pid)
    assert (ev.syscall, ev.fd, ev.path, ev.detached) == ("shmat", child.out["sid"], "", True)
    assert (ev.prot, ev.mflags) == (("PROT_READ", "PROT_EXEC"), ("MAP_SHARED",))
    assert ev.fields()["drift.kind"] == "fileless"


def test_overlay_new_and_modified_files_are_reported_image_files_are_not(
        collector, watched_cgroup, tmp_path):
    lower, upper, work, merged = (str(tmp_path / d) for d in ("lower", "upper", "work", "m"))
    for d in (lower, upper, work, merged):
        os.makedirs(d)
    for name in ("image.so", "patched.so"):
        with open(os.path.join(lower, name), "wb") as f:
            f.write(b"\xc3" * 4096)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work}", merged], check=True)
    try:
        child = run_python(watched_cgroup, MAPS + f"""
img = os.open({merged!r} + "/image.so", os.O_RDONLY)
a = mmap(4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, img)      # the image's: not reported
new = page_file({merged!r} + "/dropped.so")
b = mmap(4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, new)
w = os.open({merged!r} + "/patched.so", os.O_RDWR)           # copied up, open for writing
os.write(w, b"\\x90")
c = mmap(4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, w)
# mprotect: the vma holds the layer's real file; the overlay's is what is judged
d = mmap(4096, PROT_READ, MAP_PRIVATE, img)
r1 = mprotect(d, 4096, PROT_READ | PROT_EXEC)                  # the image's: not reported
late = page_file({merged!r} + "/late.so")
e = mmap(4096, PROT_READ, MAP_PRIVATE, late)
r2 = mprotect(e, 4096, PROT_READ | PROT_EXEC)
report(ok=min(a, b, c, d, e) > 0 and r1 == r2 == 0, new=os.fstat(new).st_ino,
       w=os.fstat(w).st_ino, late=os.fstat(late).st_ino)
""")
    finally:
        subprocess.run(["umount", "-l", merged])
    assert child.out["ok"]
    new, patched, late = _mappings(collector, child.pid, count=3)
    assert _mappings(collector, child.pid, count=4, timeout=1.0) == [new, patched, late]
    assert (late.syscall, late.path, late.inode, late.fs, late.upper, late.lower, late.fd) == (
        "mprotect", merged + "/late.so", child.out["late"], "overlay", True, False, -1)
    assert late.fields()["drift.kind"] == "new"
    assert (new.path, new.inode, new.fs, new.upper, new.lower) == (
        merged + "/dropped.so", child.out["new"], "overlay", True, False)
    assert new.fields()["drift.kind"] == "new"
    assert (patched.path, patched.inode, patched.upper, patched.lower) == (
        merged + "/patched.so", child.out["w"], True, True)
    assert patched.fields()["drift.kind"] == "modified"


# -- prevention --------------------------------------------------------------------------

@pytest.fixture
def enforced(sensor, collector):
    """A watched cgroup with drift prevention on; its exec mounts cleared afterwards."""
    d = make_cgroup(f"enforced{os.urandom(3).hex()}")
    cg = cgroups.cgroup_id(d)
    sensor.watch_cgroup(cg)
    sensor.enforce_drift(cg, True)
    yield d, cg
    sensor.clear_exec_mounts(cg, _mount_ids())
    sensor.enforce_drift(cg, False)
    sensor.unwatch_cgroup(cg)
    remove_cgroup(d)


def _mount_ids():
    with open("/proc/self/mountinfo") as f:
        return {int(line.split()[0]): line.split()[4] for line in f}


def _child(cgroup_dir, code):
    prelude = f"import sys, os; sys.path.insert(0, {HERE!r}); from syscalls import *\n"
    p = subprocess.run([sys.executable, "-c", prelude + code], preexec_fn=enter_cgroup(
        cgroup_dir), capture_output=True, timeout=30)
    return p


def test_enforced_a_drift_mapping_kills_before_the_code_can_run(collector, enforced, shm):
    d, cg = enforced
    path, marker = os.path.join(shm, "evil.so"), os.path.join(shm, "ran")
    p = _child(d, MAPS + f"""
fd = page_file({path!r})
img = os.open("/bin/true", os.O_RDONLY)
mmap(4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, img)          # the image's: allowed
print("mapped-image", flush=True)
mmap(4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd)
open({marker!r}, "w").close()                                # never reached
""")
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert p.stdout == b"mapped-image\n"
    assert not os.path.exists(marker)
    [ev] = collector.find(lambda e: e.kind == "mmap_exec" and e.cgroup_id == cg)
    assert (ev.path, ev.fields()["drift.prevented"], ev.fields()["drift.kind"]) == (
        path, True, "tmpfs")
    exit_ = collector.find(lambda e: e.kind == "exit" and e.pid == ev.pid)
    assert exit_ and exit_[0].signal == signal.SIGKILL


def test_enforced_exec_and_mappings_from_a_mount_not_allowed_are_killed(collector, sensor,
                                                                       enforced, tmp_path):
    """exec_roots/exec_allow: the root's device runs; another mount runs only if allowed —
    by mount, not by device (a bind mount of the same ext4 filesystem is not allowed)."""
    d, cg = enforced
    src, bind = tmp_path / "src", tmp_path / "bind"
    src.mkdir(), bind.mkdir()
    subprocess.run(["cp", "/bin/true", str(src / "tool")], check=True)
    with open(src / "lib.so", "wb") as f:
        f.write(b"\xc3" * 4096)
    subprocess.run(["mount", "--bind", str(src), str(bind)], check=True)
    try:
        mounts = _mount_ids()
        bind_id = next(i for i, mp in mounts.items() if mp == str(bind))
        root_dev = _kdev(os.stat("/").st_dev)
        # the root filesystem is the container's root: everything of it runs
        sensor.set_exec_mounts(cg, root_dev, ())
        p = subprocess.run([str(bind / "tool")], preexec_fn=enter_cgroup(d))
        assert p.returncode == 0
        # a root of another device: only the allowed mounts run (all but the bind mount)
        sensor.set_exec_mounts(cg, 1, set(mounts) - {bind_id})
        assert sensor.exec_mounts(cg) == (1, set(mounts) - {bind_id})
        p = subprocess.run([str(bind / "tool")], preexec_fn=enter_cgroup(d))
        assert p.returncode == -signal.SIGKILL
        [ex] = collector.find(lambda e: e.kind == "exec" and e.cgroup_id == cg and e.prevented)
        assert ex.exe == str(bind / "tool")
        p = subprocess.run([str(src / "tool")], preexec_fn=enter_cgroup(d))
        assert p.returncode == 0                          # same file, allowed mount
        c = _child(d, MAPS + f"""
fd = os.open({str(bind / 'lib.so')!r}, os.O_RDONLY)
print("opened", flush=True)
mmap(4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd)
print("ran", flush=True)
""")
        assert (c.returncode, c.stdout) == (-signal.SIGKILL, b"opened\n"), c.stderr
        [ev] = collector.find(lambda e: e.kind == "mmap_exec" and e.cgroup_id == cg)
        f = ev.fields()
        assert (f["file.path"], f["file.fs"], f["drift.kind"], f["drift.prevented"]) == (
            str(bind / "lib.so"), "ext4", None, True)
        assert f["drift.unknown_reason"] == "mapped from a volume (ext4), not from the image"
        sensor.set_exec_mounts(cg, 1, set(mounts))
        assert sensor.exec_mounts(cg) == (1, set(mounts))
        c = _child(d, MAPS + f"""
fd = os.open({str(bind / 'lib.so')!r}, os.O_RDONLY)
mmap(4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd)
print("ran", flush=True)
""")
        assert (c.returncode, c.stdout) == (0, b"ran\n"), c.stderr
    finally:
        subprocess.run(["umount", "-l", str(bind)])


def test_mprotect_finds_file_mappings_among_thousands_of_mappings(collector, watched_cgroup,
                                                                  shm):
    """The maple-tree walk, on a tree several levels deep: 40 file mappings spread among
    12000 anonymous ones (alternating prot, so that none merge)."""
    path = os.path.join(shm, "many.so")
    child = run_python(watched_cgroup, MAPS + f"""
fd = page_file({path!r}, pages=1)
files = []
for i in range(12000):
    mmap(4096, PROT_READ if i % 2 else PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1)
    if i % 300 == 150:
        files.append(mmap(4096, PROT_READ, MAP_PRIVATE, fd))
with open("/proc/self/maps") as f:
    n = sum(1 for _ in f)
r = [mprotect(a, 4096, PROT_READ | PROT_EXEC) for a in files]
report(n=n, r=r)
""", timeout=60)
    assert child.out["n"] > 12000 and child.out["r"] == [0] * 40
    evs = collector.find(lambda e: e.pid == child.pid and e.kind == "mmap_exec" and
                         e.path == path, count=40, timeout=15)
    assert len(evs) == 40 and {e.syscall for e in evs} == {"mprotect"}


def test_enforced_overlay_root_image_mappings_run_dropped_ones_are_killed(collector, sensor,
                                                                         enforced, tmp_path):
    """A container-like cgroup whose root is an overlay (exec_roots = its device; the host's
    mounts allowed, for the interpreter): the image's file mapped and mprotect()ed runs, a
    dropped one is killed at mprotect."""
    d, cg = enforced
    lower, upper, work, merged = (str(tmp_path / x) for x in ("lower", "upper", "work", "m"))
    for x in (lower, upper, work, merged):
        os.makedirs(x)
    with open(os.path.join(lower, "image.so"), "wb") as f:
        f.write(b"\xc3" * 4096)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work}", merged], check=True)
    try:
        sensor.set_exec_mounts(cg, _kdev(os.stat(merged).st_dev), set(_mount_ids()))
        c = _child(d, MAPS + f"""
img = os.open({merged!r} + "/image.so", os.O_RDONLY)
a = mmap(4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, img)
b = mmap(4096, PROT_READ, MAP_PRIVATE, img)
print("image", a > 0, mprotect(b, 4096, PROT_READ | PROT_EXEC), flush=True)
late = page_file({merged!r} + "/late.so")
e = mmap(4096, PROT_READ, MAP_PRIVATE, late)
print("mapped", flush=True)
mprotect(e, 4096, PROT_READ | PROT_EXEC)
print("ran", flush=True)
""")
    finally:
        subprocess.run(["umount", "-l", merged])
    assert (c.returncode, c.stdout) == (-signal.SIGKILL, b"image True 0\nmapped\n"), c.stderr
    [ev] = collector.find(lambda e: e.kind == "mmap_exec" and e.cgroup_id == cg)
    f = ev.fields()
    assert (f["event.syscall"], f["file.path"], f["drift.kind"], f["drift.prevented"]) == (
        "mprotect", merged + "/late.so", "new", True)
