"""open, unlink, rename and chmod events from raw syscalls, checked field by field."""
import os

import pytest

from agent.sensor import cgroups, layout
from conftest import run_python


@pytest.fixture
def tmp(tmp_path):
    return os.path.realpath(tmp_path)   # file.path is what the kernel resolved


def _common(ev, child, cgroup_dir):
    assert (ev.pid, ev.tid, ev.ppid) == (child.pid, child.pid, os.getpid())
    assert (ev.uid, ev.gid) == (0, 0)
    assert ev.cgroup_id == cgroups.cgroup_id(cgroup_dir)


def _file_events(collector, child, kind, count=1):
    return collector.find(lambda e: e.pid == child.pid and e.kind == kind, count=count)


def test_openat_create_with_flags_and_mode(collector, watched_cgroup, tmp):
    path = f"{tmp}/created"
    child = run_python(watched_cgroup, f"""
fd = sc("openat", AT_FDCWD, {path!r}, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
report(fd=fd)
""")
    evs = [e for e in _file_events(collector, child, "open") if e.path == path]
    assert len(evs) == 1
    ev = evs[0]
    _common(ev, child, watched_cgroup)
    assert (ev.syscall, ev.result, ev.error) == ("openat", child.out["fd"], None)
    assert ev.flags == ("O_WRONLY", "O_CREAT", "O_EXCL")
    assert (ev.mode, ev.fd, ev.new_path, ev.path_truncated) == (0o640, -100, None, False)
    f = ev.fields()
    assert (f["file.path"], f["event.result"], f["file.flags"]) == (path, child.out["fd"],
                                                                   ev.flags)


def test_failed_open_is_marked_failed(collector, watched_cgroup, tmp):
    path = f"{tmp}/missing/file"
    child = run_python(watched_cgroup, f"report(r=sc('open', {path!r}, os.O_RDONLY, 0))")
    assert child.out["r"] == -2
    [ev] = [e for e in _file_events(collector, child, "open") if e.path == path]
    assert (ev.syscall, ev.result, ev.error, ev.flags, ev.mode) == (
        "open", -2, "ENOENT", ("O_RDONLY",), 0)


def test_creat_and_openat2(collector, watched_cgroup, tmp):
    child = run_python(watched_cgroup, f"""
import ctypes
a = sc("creat", {tmp + '/c'!r}, 0o600)
how = (ctypes.c_uint64 * 3)(os.O_RDWR | os.O_CREAT, 0o644, 0)
b = sc("openat2", AT_FDCWD, {tmp + '/o2'!r}, ctypes.byref(how), 24)
report(a=a, b=b)
""")
    evs = {e.path: e for e in _file_events(collector, child, "open", count=2)
           if e.path.startswith(tmp)}
    c, o2 = evs[f"{tmp}/c"], evs[f"{tmp}/o2"]
    assert (c.syscall, c.result, c.flags, c.mode) == (
        "creat", child.out["a"], ("O_WRONLY", "O_CREAT", "O_TRUNC"), 0o600)
    assert (o2.syscall, o2.result, o2.flags, o2.mode, o2.fd) == (
        "openat2", child.out["b"], ("O_RDWR", "O_CREAT"), 0o644, -100)


def test_relative_path_carries_its_directory_fd(collector, watched_cgroup, tmp):
    child = run_python(watched_cgroup, f"""
d = os.open({tmp!r}, os.O_RDONLY | os.O_DIRECTORY)
fd = sc("openat", d, "rel.txt", os.O_WRONLY | os.O_CREAT, 0o600)
report(d=d, fd=fd)
""")
    [ev] = [e for e in _file_events(collector, child, "open", count=2)
            if e.requested_path == "rel.txt"]
    assert (ev.fd, ev.result, ev.mode) == (child.out["d"], child.out["fd"], 0o600)
    assert (ev.path, ev.resolved) == (f"{tmp}/rel.txt", True)


def test_non_utf8_file_name_is_kept_escaped(collector, watched_cgroup, tmp):
    raw = tmp.encode() + b"/caf\xe9-\xff"
    child = run_python(watched_cgroup, f"""
fd = sc("openat", AT_FDCWD, {raw!r}, os.O_WRONLY | os.O_CREAT, 0o600)
report(fd=fd)
""")
    want = tmp + "/caf\\xe9-\\xff"
    [ev] = [e for e in _file_events(collector, child, "open") if e.path == want]
    assert ev.result == child.out["fd"] and ev.result >= 0


def test_long_path_is_cut_and_flagged(collector, watched_cgroup, tmp):
    long = tmp + "/" + "d" * 300
    child = run_python(watched_cgroup, f"report(r=sc('open', {long!r}, os.O_RDONLY, 0))")
    [ev] = [e for e in _file_events(collector, child, "open", count=1)
            if e.path_truncated]
    # failed: nothing was opened, so file.path is the requested text (cut) normalised
    assert ev.path == ev.requested_path == long[:layout.PATH_LEN - 1]
    assert ev.resolved is False
    assert ev.result == child.out["r"] == -36  # ENAMETOOLONG
    assert ev.error == "ENAMETOOLONG"


def test_unlink_and_rmdir(collector, watched_cgroup, tmp):
    open(f"{tmp}/gone", "w").close()
    os.mkdir(f"{tmp}/dir")
    child = run_python(watched_cgroup, f"""
report(a=sc("unlink", {tmp + '/gone'!r}), b=sc("unlinkat", AT_FDCWD, {tmp + '/dir'!r}, 0x200),
       c=sc("unlink", {tmp + '/never'!r}))
""")
    evs = _file_events(collector, child, "unlink", count=3)
    by = {e.path: e for e in evs}
    a, b, c = by[f"{tmp}/gone"], by[f"{tmp}/dir"], by[f"{tmp}/never"]
    assert (a.syscall, a.result, a.flags, a.fd) == ("unlink", 0, (), -100)
    assert (b.syscall, b.result, b.flags) == ("unlinkat", 0, ("AT_REMOVEDIR",))
    assert (c.result, c.error) == (-2, "ENOENT")
    assert not os.path.exists(f"{tmp}/dir")


def test_rename_reports_both_paths(collector, watched_cgroup, tmp):
    open(f"{tmp}/a", "w").close()
    open(f"{tmp}/b", "w").close()
    child = run_python(watched_cgroup, f"""
r1 = sc("rename", {tmp + '/a'!r}, {tmp + '/a2'!r})
r2 = sc("renameat2", AT_FDCWD, {tmp + '/a2'!r}, AT_FDCWD, {tmp + '/b'!r}, 1)
report(r1=r1, r2=r2)
""")
    r1, r2 = _file_events(collector, child, "rename", count=2)
    assert (r1.syscall, r1.path, r1.new_path, r1.result, r1.flags) == (
        "rename", f"{tmp}/a", f"{tmp}/a2", 0, ())
    assert (r2.syscall, r2.path, r2.new_path, r2.result, r2.error, r2.flags) == (
        "renameat2", f"{tmp}/a2", f"{tmp}/b", -17, "EEXIST", ("RENAME_NOREPLACE",))
    assert r1.fields()["file.new_path"] == f"{tmp}/a2"


def test_chmod_family_reports_mode(collector, watched_cgroup, tmp):
    path = f"{tmp}/m"
    open(path, "w").close()
    child = run_python(watched_cgroup, f"""
a = sc("chmod", {path!r}, 0o4755)
fd = os.open({path!r}, os.O_RDONLY)
b = sc("fchmod", fd, 0o600)
c = sc("fchmodat", AT_FDCWD, {path!r}, 0o2711)
report(a=a, b=b, c=c, fd=fd)
""")
    a, b, c = _file_events(collector, child, "chmod", count=3)
    assert (a.syscall, a.path, a.mode, a.result) == ("chmod", path, 0o4755, 0)
    assert (b.syscall, b.path, b.requested_path, b.resolved, b.mode, b.fd, b.result) == (
        "fchmod", path, "", True, 0o600, child.out["fd"], 0)   # the file behind the fd
    assert (c.syscall, c.path, c.mode, c.result) == ("fchmodat", path, 0o2711, 0)
    assert os.stat(path).st_mode & 0o7777 == 0o2711


def test_open_reports_the_file_the_kernel_opened_whatever_the_spelling(
        collector, watched_cgroup, tmp):
    """file.path is walked from the new descriptor at exit: `//`, `.`, `..`, a relative path
    from the working directory or from a dirfd, a symlinked directory, /proc/self/root and
    padding all name the one file; file.requested_path keeps what was passed."""
    os.makedirs(f"{tmp}/etc/sub")
    target = f"{tmp}/etc/secret"
    open(target, "w").close()
    os.symlink(f"{tmp}/etc", f"{tmp}/link")
    rel = os.path.relpath(target, "/proc")          # ../tmp/...: relative from /proc
    spellings = [
        target, target.replace("/etc/", "//etc//"), target.replace("/etc/", "/./etc/./"),
        target.replace("/etc/", "/etc/sub/../"), f"{tmp}/link/secret",
        "/proc/self/root" + target, "/." * 100 + target, "secret", rel,
    ]
    child = run_python(watched_cgroup, f"""
fds = []
os.chdir({tmp + '/etc'!r})
for p in {spellings[:-1]!r}:
    fds.append(sc("openat", AT_FDCWD, p, os.O_RDONLY, 0))
os.chdir("/proc")
fds.append(sc("openat", AT_FDCWD, {rel!r}, os.O_RDONLY, 0))
d = os.open({tmp!r}, os.O_RDONLY | os.O_DIRECTORY)
fds.append(sc("openat", d, "link/../etc/secret", os.O_RDONLY, 0))
report(fds=fds)
""")
    assert all(fd >= 0 for fd in child.out["fds"])
    evs = [e for e in _file_events(collector, child, "open", count=len(spellings) + 2)
           if e.path == target]
    by = {e.requested_path: e for e in evs}
    for p in spellings + ["link/../etc/secret"]:
        ev = by[p[:layout.PATH_LEN - 1]]    # every spelling (as kept), each resolved to the file
        assert (ev.resolved, ev.path_truncated, ev.result >= 0) == (True, False, True), p
        assert ev.fields()["file.path"] == target
    # link/../etc/secret: the kernel follows the link, then '..' from its target (tmp)


def test_unlink_rename_chmod_join_the_requested_path_to_where_it_starts(
        collector, watched_cgroup, tmp):
    """Nothing is left open to walk from after unlink/rename/chmod: the kernel walks the
    directory the path starts from (root, working directory, dirfd) and the decoder joins
    and normalises the requested path onto it."""
    os.makedirs(f"{tmp}/w/x")
    for n in ("u1", "u2", "r1", "c1"):
        open(f"{tmp}/w/{n}", "w").close()
    child = run_python(watched_cgroup, f"""
os.chdir({tmp + '/w/x'!r})
a = sc("unlink", "../u1")
d = os.open({tmp!r}, os.O_RDONLY | os.O_DIRECTORY)
b = sc("unlinkat", d, "w/./x/..//u2", 0)
c = sc("renameat2", AT_FDCWD, "../r1", d, "w/r2", 0)
e = sc("fchmodat", AT_FDCWD, "//" + {tmp[1:] + '/w/x/../c1'!r}, 0o700)
report(a=a, b=b, c=c, e=e)
""")
    assert (child.out["a"], child.out["b"], child.out["c"], child.out["e"]) == (0, 0, 0, 0)
    u1, u2 = _file_events(collector, child, "unlink", count=2)
    assert (u1.path, u1.requested_path, u1.resolved) == (f"{tmp}/w/u1", "../u1", False)
    assert (u2.path, u2.requested_path) == (f"{tmp}/w/u2", "w/./x/..//u2")
    [r] = _file_events(collector, child, "rename")
    assert (r.path, r.new_path, r.requested_path) == (f"{tmp}/w/r1", f"{tmp}/w/r2", "../r1")
    [c] = _file_events(collector, child, "chmod")
    assert (c.path, c.mode) == (f"{tmp}/w/c1", 0o700)


def test_a_resolved_path_too_long_keeps_its_end(collector, watched_cgroup, tmp):
    """A file deeper than RPATH_LEN bytes: the walk keeps whole names from the file up, so
    file.path ends with the file (rules on its name still match) and says it was cut."""
    deep = tmp
    for i in range(6):
        deep += "/" + chr(ord("a") + i) * 100
    os.makedirs(deep)
    target = deep + "/the-file"
    open(target, "w").close()
    child = run_python(watched_cgroup, f"""
os.chdir({deep!r})
report(fd=sc("openat", AT_FDCWD, "the-file", os.O_RDONLY, 0))
""")
    [ev] = [e for e in _file_events(collector, child, "open", count=1)
            if e.requested_path == "the-file"]
    assert (ev.resolved, ev.path_truncated) == (True, True)
    assert ev.path.startswith("/") and len(ev.path) < layout.RPATH_LEN
    assert target.endswith(ev.path) and ev.path.endswith("/" + "f" * 100 + "/the-file")
    assert ev.fields()["file.path_truncated"] is True
