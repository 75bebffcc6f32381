"""Drift decisions that need no kernel: roots that are not overlays, volumes, scripts, the
dynamic loader's arguments; and the pieces every read of a container file goes through —
container_files (safe opens, with openat2 and with the fallback walk), layers (overlayfs
lookup rules) and hashing (bounded, with a deadline)."""
import errno
import hashlib
import os
import stat
import subprocess
import threading
import time

import pytest

from agent.context.containers import ContainerInfo, RootFS
from agent.drift import container_files as cf
from agent.drift import hashing
from agent.drift.container_files import ContainerFileError
from agent.drift.detector import GONE, DriftDetector, loader_program
from agent.drift.hashing import Digest, Hasher
from agent.drift.layers import ImageCache, Layers
from agent.sensor.events import ExecEvent


def _exec(exe, args, fs="overlay", upper=False, lower=True, filename=None, pid=1, inode=1,
          dev=1):
    hdr = ("exec", 1, pid, pid, 99, 7, 0, 0, "x", 5, 1, 1)
    return tuple.__new__(ExecEvent, hdr + (exe, inode, dev, fs, 1, False, False, upper, lower,
                                           False, filename or exe, tuple(args), False,
                                           "pipe", "pipe", "pipe", "", None, 0, 1000, 1000))


def _container(rootfs):
    return ContainerInfo("c1", "containerd", "/k/c1", rootfs=rootfs)


def test_a_root_that_is_not_an_overlay_is_reported_not_passed():
    d = DriftDetector().check(_exec("/bin/app", ["app"], fs="xfs"),
                              _container(RootFS("xfs")))
    assert (d.kind, d.path) == (None, "/bin/app")
    assert d.unknown_reason == ("the container's root is xfs, not overlay: it cannot be "
                                "compared with the image")


def test_a_program_on_a_volume_is_reported(tmp_path):
    root = RootFS("overlay", (str(tmp_path / "lower"),), str(tmp_path / "upper"))
    d = DriftDetector().check(_exec("/data/tool", ["tool"], fs="ext4"), _container(root))
    assert (d.kind, d.unknown_reason) == (None, "run from a volume (ext4), not from the image")


def test_scripts_against_the_layers(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "app").mkdir(parents=True)
    (upper / "tmp").mkdir(parents=True)
    (lower / "app" / "run.sh").write_text("echo image\n")
    (upper / "tmp" / "new.sh").write_text("echo new\n")
    c = _container(RootFS("overlay", (str(lower),), str(upper)))
    det = DriftDetector()
    assert det.check(_exec("/bin/busybox", ["sh", "/app/run.sh"]), c) is None
    d = det.check(_exec("/bin/busybox", ["sh", "/tmp/new.sh"]), c)
    assert (d.kind, d.path, d.script, d.size) == ("new", "/tmp/new.sh", True, 9)
    assert (d.sha256, d.hash_error) == (hashlib.sha256(b"echo new\n").hexdigest(), None)
    # a #! script run directly: exec.filename is the script, the program its interpreter
    d = det.check(_exec("/bin/busybox", ["/bin/sh", "/tmp/new.sh"], filename="/tmp/new.sh"),
                  c)
    assert (d.kind, d.path) == ("new", "/tmp/new.sh")
    (upper / "app").mkdir()
    (upper / "app" / "run.sh").write_text("echo changed\n")
    d = det.check(_exec("/bin/busybox", ["sh", "/app/run.sh"]), c)
    assert (d.kind, d.path) == ("modified", "/app/run.sh")
    assert det.check(_exec("/bin/busybox", ["sh", "-c", "echo inline"]), c) is None
    assert det.check(_exec("/bin/busybox", ["ls", "/tmp/new.sh"]), c) is None   # an applet
    # copied up unchanged (a chmod): the same contents below
    (upper / "app" / "run.sh").write_text("echo image\n")
    assert det.check(_exec("/bin/busybox", ["sh", "/app/run.sh"]), c) is None


def _layers(tmp_path):
    upper, lower = tmp_path / "upper", tmp_path / "lower"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "motd").write_text("image motd\n")
    (lower / "etc" / "shadow").write_text("root:*:image\n")
    (upper / "tmp").mkdir(parents=True)
    return upper, lower


def test_symlinks_in_scripts_are_resolved_in_the_layers_never_on_the_host(tmp_path):
    upper, lower = _layers(tmp_path)
    (upper / "tmp" / "abs").symlink_to("/etc/shadow")               # host: /etc/shadow
    (upper / "tmp" / "rel").symlink_to("../../../../../../../../etc/shadow")
    (upper / "tmp" / "host").symlink_to("/etc/debian_version")       # only the host has it
    (upper / "etc").mkdir()
    (upper / "etc" / "motd").write_text("echo dropped\n")            # hides the image's
    (upper / "tmp" / "m").symlink_to("/etc/motd")
    c = _container(RootFS("overlay", (str(lower),), str(upper)))
    det = DriftDetector()
    assert det.check(_exec("/bin/sh", ["sh", "/tmp/abs"]), c) is None     # the image's
    assert det.check(_exec("/bin/sh", ["sh", "/tmp/rel"]), c) is None
    d = det.check(_exec("/bin/sh", ["sh", "/tmp/host"]), c)
    assert (d.kind, d.path, d.size, d.sha256, d.unknown_reason) == (
        None, "/etc/debian_version", None, None,
        "not in the container's layers (a volume or a tmpfs?)")
    d = det.check(_exec("/bin/sh", ["sh", "/tmp/m"]), c)
    assert (d.kind, d.path, d.size, d.sha256) == (
        "modified", "/etc/motd", 13, hashlib.sha256(b"echo dropped\n").hexdigest())


def test_a_fifo_or_a_device_as_a_script_is_reported_never_opened(tmp_path):
    upper, lower = _layers(tmp_path)
    os.mkfifo(upper / "tmp" / "f.sh")
    os.mknod(upper / "tmp" / "d.sh", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    c = _container(RootFS("overlay", (str(lower),), str(upper)))
    det = DriftDetector()
    d = det.check(_exec("/bin/sh", ["sh", "/tmp/f.sh"]), c)
    assert (d.kind, d.path, d.script, d.sha256, d.hash_error) == (
        "new", "/tmp/f.sh", True, None, "not a regular file (fifo)")
    d = det.check(_exec("/bin/sh", ["sh", "/tmp/d.sh"]), c)
    assert d.hash_error == "not a regular file (character device)"


def test_a_new_program_whose_process_and_file_are_gone(tmp_path):
    upper, lower = _layers(tmp_path)
    c = _container(RootFS("overlay", (str(lower),), str(upper)))
    dead = subprocess.Popen(["true"])
    dead.wait()
    d = DriftDetector().check(_exec("/tmp/x", ["/tmp/x"], upper=True, lower=False,
                                    pid=dead.pid), c)
    assert (d.kind, d.path, d.sha256, d.hash_error) == ("new", "/tmp/x", None, GONE)
    (upper / "tmp" / "x").write_bytes(b"\x7fELF other")              # another file there now
    d = DriftDetector().check(_exec("/tmp/x", ["/tmp/x"], upper=True, lower=False,
                                    pid=dead.pid, inode=12345), c)
    ino = os.stat(upper / "tmp" / "x").st_ino
    assert (d.kind, d.sha256, d.hash_error) == (
        "new", None, f"not the file that ran: /tmp/x is now inode {ino}, the kernel "
                     "reported 12345")
    d = DriftDetector().check(_exec("/tmp/x", ["/tmp/x"], upper=True, lower=False,
                                    pid=dead.pid, inode=ino), c)
    assert (d.kind, d.size, d.sha256, d.hash_error) == (
        "new", 10, hashlib.sha256(b"\x7fELF other").hexdigest(), None)


def test_bad_input_is_an_undecided_drift_not_a_crash(tmp_path):
    upper, lower = _layers(tmp_path)
    c = _container(RootFS("overlay", (str(lower),), str(upper)))
    d = DriftDetector().check(_exec("/bin/sh", ["sh", "/tmp/a\0b"]), c)
    assert (d.kind, d.unknown_reason) == (
        None, "/tmp/a\0b could not be looked up in the container's layers: not a usable path")
    gone = RootFS("overlay", (str(tmp_path / "no-such-layer"),), str(upper))
    d = DriftDetector().check(_exec("/bin/sh", ["sh", "/tmp/x.sh"]), _container(gone))
    assert d.kind is None and d.unknown_reason.endswith("could not be looked up in the "
                                                        "container's layers: not there")


# -- the dynamic loader ------------------------------------------------------------------
@pytest.mark.parametrize("args, program", [
    (["/root/x"], "/root/x"),
    (["--library-path", "/opt/lib", "/root/x", "-v"], "/root/x"),
    (["--preload", "/root/evil.so", "--argv0", "bash", "./x"], "./x"),
    (["--inhibit-cache", "--audit", "a.so", "--inhibit-rpath", "b", "/x"], "/x"),
    (["--glibc-hwcaps-prepend", "x86-64-v3", "--glibc-hwcaps-mask", "x", "--list", "/y"], "/y"),
    (["--verify", "--", "/z"], "/z"),                # musl's end of options
    (["--unknown", "/root/x"], "--unknown"),         # glibc runs an unknown --x as a program
    (["--help"], None),
    (["--library-path"], None),
])
def test_what_the_loader_is_asked_to_run(args, program):
    assert loader_program(args) == program


def test_the_loader_is_an_interpreter_for_the_program_it_loads(tmp_path):
    upper, lower = _layers(tmp_path)
    (lower / "lib64").mkdir()
    (lower / "lib64" / "ld-linux-x86-64.so.2").write_bytes(b"loader")
    (upper / "root").mkdir()
    (upper / "root" / "x").write_bytes(b"\x7fELF dropped")
    c = _container(RootFS("overlay", (str(lower),), str(upper)))
    det, ld = DriftDetector(), "/lib64/ld-linux-x86-64.so.2"
    d = det.check(_exec(ld, [ld, "--argv0", "nginx", "/root/x"]), c)
    assert (d.kind, d.path, d.script, d.size) == ("new", "/root/x", False, 12)
    d = det.check(_exec(ld, [ld, "./x"]), c, cwd="/root")
    assert (d.kind, d.path) == ("new", "/root/x")
    d = det.check(_exec(ld, [ld, "x"]), c, cwd="/root")
    assert (d.kind, d.path, d.unknown_reason) == (
        None, "x", "ld.so was asked to run 'x' by name, not by path: glibc looks such a name "
                   "up like a library (ld.so.cache), which this check does not follow")
    assert det.check(_exec(ld, [ld, "/etc/motd"]), c) is None          # the image's file
    assert det.check(_exec(ld, [ld, "--help"]), c) is None
    musl = "/lib/ld-musl-x86_64.so.1"
    d = det.check(_exec(musl, ["ldd", "x"]), c, cwd="/root")              # musl: cwd
    assert (d.kind, d.path) == ("new", "/root/x")


# -- container_files: safe opens, with openat2 and with the walk -------------------------
@pytest.fixture(params=["openat2", "walk"])
def mode(request, monkeypatch):
    if request.param == "openat2":
        assert cf.openat2_available(), "openat2 is there on this kernel"
    monkeypatch.setattr(cf, "USE_OPENAT2", request.param == "openat2")
    return request.param


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "a" / "b").mkdir(parents=True)
    (r / "etc").mkdir()
    (r / "a" / "b" / "f").write_text("file\n")
    (r / "etc" / "passwd").write_text("root's own passwd\n")
    fd = cf.open_layer(str(r))
    yield r, fd
    os.close(fd)


def _read(fd):
    try:
        return os.read(fd, 100)
    finally:
        os.close(fd)


def _refused(fd, path, err, reason, inode=None):
    with pytest.raises(ContainerFileError) as e:
        os.close(cf.open_file(fd, path, inode))
    assert (e.value.errno, e.value.reason) == (err, reason)


def test_open_file_reads_a_regular_file_read_only(mode, root):
    r, fd = root
    f = cf.open_file(fd, "a/b/f")
    assert os.get_blocking(f) is False and os.get_inheritable(f) is False
    flags = int(open(f"/proc/self/fdinfo/{f}").read().split("flags:")[1].split()[0], 8)
    assert flags & os.O_ACCMODE == os.O_RDONLY and flags & os.O_NONBLOCK
    assert _read(f) == b"file\n"
    assert _read(cf.open_file(fd, "/a/./b//f")) == b"file\n"       # absolute: from the root


def test_dotdot_stops_at_the_root(mode, root):
    r, fd = root
    assert _read(cf.open_file(fd, "../../../../../etc/passwd")) == b"root's own passwd\n"
    assert _read(cf.open_file(fd, "a/../../../etc/passwd")) == b"root's own passwd\n"


def test_no_symbolic_link_is_followed_anywhere(mode, root):
    r, fd = root
    os.symlink("/etc", r / "hostetc")                 # absolute, to the host
    os.symlink("/etc/shadow", r / "shadow")
    os.symlink("a", r / "rel")                         # even one that stays inside
    _refused(fd, "hostetc/passwd", errno.ELOOP, "a symbolic link on the way (not followed)")
    _refused(fd, "rel/b/f", errno.ELOOP, "a symbolic link on the way (not followed)")
    _refused(fd, "shadow", errno.ELOOP, "not a regular file (symbolic link)")


def test_no_magic_link_is_followed(mode):
    proc_self = os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(ContainerFileError) as e:
            os.close(cf.open_file(proc_self, "root/etc/passwd"))
        assert e.value.errno == errno.ELOOP
        with pytest.raises(ContainerFileError) as e:
            os.close(cf.open_file(proc_self, "exe"))
        assert e.value.errno == errno.ELOOP
    finally:
        os.close(proc_self)


def test_fifo_device_directory_are_refused_without_blocking(mode, root):
    r, fd = root
    os.mkfifo(r / "fifo")                              # no writer: a plain open would block
    os.mknod(r / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    t0 = time.monotonic()
    _refused(fd, "fifo", errno.EINVAL, "not a regular file (fifo)")
    _refused(fd, "null", errno.EINVAL, "not a regular file (character device)")
    _refused(fd, "a/b", errno.EINVAL, "not a regular file (directory)")
    _refused(fd, "", errno.EINVAL, "not a regular file (directory)")
    assert time.monotonic() - t0 < 1


def test_the_inode_the_kernel_reported(mode, root):
    r, fd = root
    ino = os.stat(r / "a" / "b" / "f").st_ino
    assert _read(cf.open_file(fd, "a/b/f", ino)) == b"file\n"
    _refused(fd, "a/b/f", errno.ESTALE,
             f"not the file that ran (inode {ino}, the kernel reported {ino + 1})", ino + 1)


def test_absent_and_bad_paths(mode, root):
    r, fd = root
    _refused(fd, "a/nope", errno.ENOENT, "not there")
    _refused(fd, "a/b/f/x", errno.ENOTDIR, "a component is not a directory")
    _refused(fd, "a/\0b", errno.EINVAL, "not a usable path")
    assert cf.lstat(fd, "a/nope") is None and cf.lstat(fd, "nope/x") is None


def test_a_mount_below_the_root_is_not_crossed(mode, root):
    r, fd = root
    (r / "vol").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(r / "vol")], check=True)
    try:
        (r / "vol" / "x").write_text("on a volume\n")
        _refused(fd, "vol/x", errno.EXDEV, "on another mount (a volume?)")
    finally:
        subprocess.run(["umount", str(r / "vol")], check=True)


def test_lstat_reports_the_last_component_as_it_is(mode, root):
    r, fd = root
    os.mknod(r / "a" / "wh", 0o600 | stat.S_IFCHR, 0)   # an overlayfs whiteout
    os.symlink("/etc/shadow", r / "a" / "ln")
    assert stat.S_ISCHR(cf.lstat(fd, "a/wh").st_mode) and cf.lstat(fd, "a/wh").st_rdev == 0
    assert stat.S_ISLNK(cf.lstat(fd, "/a/ln").st_mode)
    os.symlink("/etc", r / "hostetc")
    with pytest.raises(ContainerFileError) as e:
        cf.lstat(fd, "hostetc/passwd")
    assert e.value.errno == errno.ELOOP


def test_proc_exe_is_only_the_program_the_kernel_reported():
    st = os.stat("/proc/self/exe")
    fd = cf.open_proc_exe(os.getpid(), st.st_ino, st.st_dev)
    assert os.fstat(fd).st_ino == st.st_ino
    os.close(fd)
    with pytest.raises(ContainerFileError) as e:
        cf.open_proc_exe(os.getpid(), st.st_ino + 1, st.st_dev)
    assert e.value.reason == "the process no longer runs that program"


# -- layers: overlayfs's lookup rules ----------------------------------------------------
@pytest.mark.parametrize("cached", [False, True])
def test_layers_apply_whiteouts_opaque_directories_and_links(tmp_path, cached):
    top, mid, low = (tmp_path / n for n in ("top", "mid", "low"))
    for d in (top, mid, low):
        (d / "app").mkdir(parents=True)
    (low / "app" / "a").write_text("low a\n")
    (low / "app" / "b").write_text("low b\n")
    (mid / "app" / "a").write_text("mid a\n")
    os.mknod(top / "app" / "b", 0o600 | stat.S_IFCHR, 0)           # b deleted
    (low / "opt" / "x").mkdir(parents=True)
    (low / "opt" / "x" / "old").write_text("hidden\n")
    (mid / "opt" / "x").mkdir(parents=True)
    os.setxattr(mid / "opt" / "x", "trusted.overlay.opaque", b"y")  # rm -rf; mkdir
    (top / "etc").mkdir()
    (top / "etc" / "l").symlink_to("../../../../app/a")
    (top / "loop").symlink_to("loop")
    cache = ImageCache() if cached else None
    with Layers([str(top), str(mid), str(low)], cache=cache, immutable_from=1) as L:
        f = L.find("/app/a")
        assert (f.path, f.top.layer, f.below.layer) == ("/app/a", 1, 2)
        assert _read(L.open(f.top, f.path)) == b"mid a\n"
        assert L.find("/app/b").top is None                          # whiteout
        assert L.find("/opt/x/old").top is None                      # opaque directory
        f = L.find("/etc/l")
        assert (f.path, f.top.layer) == ("/app/a", 1)                # link, '..' clamped
        with pytest.raises(ContainerFileError) as e:
            L.find("/loop")
        assert e.value.reason == "too many symbolic links"
        f = L.find("/opt/x/../../app/./a")                          # '..' after a descent
        assert (f.path, f.top.layer) == ("/app/a", 1)
        f = L.find("/opt/x/..")
        assert (f.path, f.top.layer, stat.S_ISDIR(f.top.st.st_mode)) == ("/opt", 1, True)
        t0 = time.monotonic()
        with pytest.raises(ContainerFileError) as e:                 # bounded work
            L.find("/app" + "/.." * 3000 + "/app/a")
        assert (e.value.errno, e.value.reason) == (errno.ENAMETOOLONG,
                                                   "too long a path to follow")
        deep = top / "d"
        deep.mkdir()
        os.makedirs(str(deep) + "/x" * 200)
        with pytest.raises(ContainerFileError) as e:
            L.find("/d" + "/x" * 200 + "/f")
        assert e.value.errno == errno.ENAMETOOLONG and time.monotonic() - t0 < 2
        f = L.find("/etc/l", follow=False)
        assert stat.S_ISLNK(f.top.st.st_mode)
        (top / "app" / "new").write_text("in the writable layer\n")   # seen afresh
        f = L.find("/app/new")
        assert (f.path, f.top.layer, f.below) == ("/app/new", 0, None)
        assert cache is None or len(cache) > 0
        with pytest.raises(ContainerFileError):
            L.find("/etc/l/x", follow=False)


# -- hashing: bounded in size and time ---------------------------------------------------
def _file(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return os.open(p, os.O_RDONLY)


def test_hash_whole_files_and_cache_them(tmp_path):
    h = Hasher(max_bytes=1024)
    d = h.digest(_file(tmp_path, "a", b"x" * 1024))
    assert d == Digest(1024, hashlib.sha256(b"x" * 1024).hexdigest(), None)
    again = h.digest(os.open(tmp_path / "a", os.O_RDONLY))          # the same file: cached
    assert again == d and h.counts["hashed"] == 1
    big = h.digest(_file(tmp_path, "b", b"x" * 1025))
    assert big == Digest(1025, None, "larger than 1 KiB (drift.hash_max_bytes), not hashed")
    h.close()


def test_a_file_that_grows_while_it_is_hashed_is_cut_off(tmp_path):
    h = Hasher(max_bytes=1 << 20)
    p = tmp_path / "grow"
    p.write_bytes(b"#!/bin/sh\n")
    fd = os.open(p, os.O_RDONLY)
    st = os.fstat(fd)
    job = hashing._Job(fd, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                            st.st_ctime_ns), st.st_size)
    os.truncate(p, 1 << 40)                            # 1 TiB, sparse
    t0 = time.monotonic()
    assert h._read(job) == Digest(10, None, "changed while it was being hashed")
    assert time.monotonic() - t0 < 5                   # read 1 MiB + 1, not 1 TiB
    os.close(fd)


def _job(path):
    fd = os.open(path, os.O_RDONLY)
    st = os.fstat(fd)
    return hashing._Job(fd, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                             st.st_ctime_ns), st.st_size)


def test_a_file_whose_ctime_moves_once_while_hashed_is_read_again(tmp_path, monkeypatch):
    """A program that deletes itself moves its own ctime (its last link goes) while the
    agent hashes it: read once more against what it is now — and not cached."""
    p = tmp_path / "self-deleting"
    p.write_bytes(b"\x7fELF program")
    real_read, calls = os.read, []

    def read(fd, n):
        calls.append(n)
        if len(calls) == 2:                         # the first read has ended
            os.unlink(p)
        return real_read(fd, n)
    monkeypatch.setattr(hashing.os, "read", read)
    h, job = Hasher(), _job(p)
    os.link(p, tmp_path / "second-link")            # so that unlink leaves it reachable
    d = h._read(job)
    assert d == Digest(12, hashlib.sha256(b"\x7fELF program").hexdigest())
    assert job.again is True and len(calls) == 4    # two reads of the whole file
    os.close(job.fd)
    h.close()


def test_a_file_that_keeps_moving_while_hashed_is_not_trusted(tmp_path, monkeypatch):
    p = tmp_path / "moving"
    p.write_bytes(b"content")
    real_read = os.read

    def read(fd, n):
        out = real_read(fd, n)
        if not out:
            os.chmod(p, 0o600 if os.stat(p).st_mode & 0o100 else 0o700)   # ctime moves
        return out
    monkeypatch.setattr(hashing.os, "read", read)
    h, job = Hasher(), _job(p)
    assert h._read(job) == Digest(7, None, "changed while it was being hashed")
    assert job.again is True
    os.close(job.fd)
    h.close()


def test_a_slow_read_times_out_and_the_late_result_is_kept(tmp_path, monkeypatch):
    release = threading.Event()
    real_read = os.read

    def slow(fd, n):
        release.wait(5)
        return real_read(fd, n)
    monkeypatch.setattr(hashing.os, "read", slow)
    h = Hasher(timeout_ms=50)
    t0 = time.monotonic()
    d = h.digest(_file(tmp_path, "s", b"slow"))
    assert d == Digest(4, None, "timed out after 50 ms")
    assert 0.04 < time.monotonic() - t0 < 1
    # the budget of waiting is spent: the next one is not waited for at all
    d = h.digest(_file(tmp_path, "t", b"other"))
    assert d == Digest(5, None, "not waited for: at most 50 ms a second is spent waiting "
                                "for hashes")
    release.set()
    time.sleep(0.3)
    d = h.digest(_file(tmp_path, "s", b"slow"))     # same size, mtime, ctime: the cached one
    assert d.sha256 == hashlib.sha256(b"slow").hexdigest()
    h.close()


def test_a_stuck_worker_does_not_pile_up_work(tmp_path, monkeypatch):
    stuck = threading.Event()
    monkeypatch.setattr(hashing.os, "read", lambda fd, n: (stuck.wait(5), b"")[1])
    h = Hasher(timeout_ms=10, workers=1, queue_size=1)
    h.submit(_file(tmp_path, "1", b"1"))              # taken by the worker, which hangs
    time.sleep(0.1)
    h.submit(_file(tmp_path, "2", b"22"))             # waits in the queue
    j = h.submit(_file(tmp_path, "3", b"333"))        # no room
    assert h.wait(j) == (Digest(3, None, "not hashed: the queue of files to hash is full "
                                         "(1)"),)
    stuck.set()
    h.close()


def test_what_is_not_a_regular_file_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    fd = os.open(tmp_path / "fifo", os.O_RDONLY | os.O_NONBLOCK)
    assert Hasher().digest(fd) == Digest(None, None, "not a regular file (fifo)")


def test_no_descriptor_is_left_open(tmp_path):
    upper, lower = _layers(tmp_path)
    (upper / "tmp" / "abs").symlink_to("/etc/shadow")
    (upper / "tmp" / "s.sh").write_text("echo\n")
    os.mkfifo(upper / "tmp" / "f")
    c = _container(RootFS("overlay", (str(lower),), str(upper)))
    det = DriftDetector()

    def ours():                                       # descriptors on this test's files
        out = []
        for n in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{n}").startswith(str(tmp_path)):
                    out.append(n)
            except OSError:
                pass
        return out
    assert ours() == []
    for args in (["sh", "/tmp/abs"], ["sh", "/tmp/s.sh"], ["sh", "/tmp/f"], ["sh", "/nope"],
                 ["sh", "/tmp/s.sh/x"], ["sh", "/etc/motd"]):
        det.check(_exec("/bin/sh", args), c)
    det.check(_exec("/tmp/s.sh", ["/tmp/s.sh"], upper=True, lower=False), c)
    det.check(_exec("/etc/motd", ["/etc/motd"], upper=True, lower=True), c)
    time.sleep(0.2)                                   # the workers close what they hashed
    assert ours() == []


def test_a_script_descriptor_that_cannot_be_resolved_any_more_fails_closed(tmp_path):
    """`sh /proc/self/fd/3` whose process is gone when the agent looks: which file it ran
    cannot be told, so it is undecided (an alert of unknown origin), never the image's; a
    short `sh < file` is not judged; a live descriptor gives the file behind it."""
    from types import SimpleNamespace
    from agent.drift.detector import STDIN, DriftDetector, _Target
    gone = SimpleNamespace(pid=2 ** 22 + 4321, vpid=7, prevented=False)
    d = DriftDetector._through_fd(gone, _Target("/proc/self/fd/3", True, "/proc/self/fd/3"))
    assert (d.kind, d.path, d.script, d.unknown_reason) == (
        None, "/proc/self/fd/3", True, "its script came through /proc/self/fd/3, closed (or "
        "its process gone) before the agent could see which file it was")
    assert DriftDetector._through_fd(gone, _Target(STDIN, True, STDIN)) is None
    other = DriftDetector._through_fd(gone, _Target("/proc/99/fd/3", True, "/proc/99/fd/3"))
    assert other.unknown_reason == "its script is another process's descriptor (/proc/99/fd/3)"
    p = tmp_path / "s.sh"
    p.write_text("echo hi\n")
    with open(p) as f:
        me = SimpleNamespace(pid=os.getpid(), vpid=os.getpid(), prevented=False)
        t = DriftDetector._through_fd(me, _Target(f"/dev/fd/{f.fileno()}", True, "x"))
        assert (t.path, t.script) == (str(p), True)
        os.unlink(p)
        d = DriftDetector._through_fd(me, _Target(f"/proc/self/fd/{f.fileno()}", True, "x"))
        assert (d.kind, d.path) == ("deleted", str(p))
    r, w = os.pipe()
    assert DriftDetector._through_fd(me, _Target(f"/proc/self/fd/{r}", True, "x")) is None
    os.close(r), os.close(w)
    # a name is the container's: a live file called "s.sh (deleted)" is that file
    q = tmp_path / "s.sh (deleted)"
    q.write_text("echo hi\n")
    with open(q) as f:
        t = DriftDetector._through_fd(me, _Target(f"/proc/self/fd/{f.fileno()}", True, "x"))
        assert (t.path, t.script) == (str(q), True)


def test_stdin_is_judged_from_the_kernel_facts_without_looking_at_proc():
    """The exec event says what fd 0 was (proc.stdin_path and its inode facts): a process
    long gone is still judged, and only from those facts."""
    from types import SimpleNamespace
    from agent.drift.detector import STDIN, DriftDetector, _Target
    gone = 2 ** 22 + 4321
    st = _Target(STDIN, True, STDIN)

    def ev(path, fs="overlay", links=1):
        return SimpleNamespace(pid=gone, vpid=7, prevented=False, stdin_path=path,
                               stdin_facts=(12, 34, fs, links, True, False))
    t = DriftDetector._through_fd(ev("/tmp/q.sh"), st)
    assert (t.path, t.script, t.name) == ("/tmp/q.sh", True, STDIN)
    d = DriftDetector._through_fd(ev("/tmp/q.sh", links=0), st)
    assert (d.kind, d.path, d.script) == ("deleted", "/tmp/q.sh", True)
    d = DriftDetector._through_fd(ev("/dev/shm/x", fs="tmpfs"), st)
    assert (d.kind, d.path) == ("tmpfs", "/dev/shm/x")
    d = DriftDetector._through_fd(ev("", fs="tmpfs", links=0), st)   # a memfd: no path
    assert (d.kind, d.path) == ("fileless", STDIN)

