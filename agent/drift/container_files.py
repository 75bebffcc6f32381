"""Open a container's files without ever leaving the directory they belong to.

What an attacker in a container controls here: every name, every symbolic link (absolute,
or a `..` chain that climbs out of a layer), what kind of file sits at a path (a FIFO, a
device, a directory), and when it changes (swapped between two looks, grown to a TiB while
it is read). The agent reads container layers as root on the host, so a path that comes
from a container is never joined onto a host path: it is resolved here, relative to a
directory file descriptor (an overlay layer, or the root of a container process).

Guarantees
- Resolution stays beneath the directory fd: `..` stops at it, an absolute path starts at
  it. No symbolic link is followed in any component, no /proc magic link, and no mount is
  crossed (a volume mounted below a container's root is not the root's file). With
  openat2(2) (Linux 5.6+) the kernel enforces it: RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS |
  RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV. Where openat2 is missing (older kernels, a
  seccomp filter) the same is done by a walk, one component at a time: O_NOFOLLOW on each,
  O_DIRECTORY on each directory, `..` taken lexically (nothing is followed, so lexical and
  physical agree), the mount id compared at every step.
- A file is first opened O_PATH, which never runs a device's or a FIFO's open; fstat must
  say it is a regular file (and, when one is given, the inode the kernel reported). Only
  then is that same inode reopened, through /proc/self/fd, O_RDONLY | O_NONBLOCK |
  O_CLOEXEC | O_NOCTTY. Nothing in this module reads file contents, so nothing here blocks
  on what a container controls.

Failure modes: every refusal raises ContainerFileError, an OSError whose errno says what
happened and whose `reason` is written to be put in an alert:
  ENOENT, ENOTDIR  not there (a component is missing or is not a directory)
  ELOOP            a symbolic link on the way
  EXDEV            on another mount
  EFTYPE-like      not a regular file: errno EINVAL, reason "not a regular file (fifo)"
  ESTALE           a different file than the one the kernel reported
  others           (EACCES, EIO, ...) passed through with their own message
Bad input (a NUL byte in a path, a path that is not a string) raises the same error with
EINVAL; nothing here raises anything else for what a container put in its files.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat

__all__ = ["ContainerFileError", "open_layer", "open_file", "open_dir", "lstat", "readlink",
           "xattr", "open_by_handle", "open_proc_exe", "fd_path", "file_kind", "parts",
           "openat2_available"]

O_FILE = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
O_PATH_NOFOLLOW = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10
RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV

# openat2 has the same number on every architecture; open_by_handle_at does not.
SYS_OPENAT2 = 437
SYS_OPEN_BY_HANDLE_AT = {"x86_64": 304, "aarch64": 265, "riscv64": 265, "ppc64le": 346,
                         "s390x": 336}.get(platform.machine())


class ContainerFileError(OSError):
    """A container file that was not opened, and why (errno, reason, the path asked for)."""

    def __init__(self, err: int, reason: str, path: str | None = None):
        super().__init__(err, reason, path)

    @property
    def reason(self) -> str:
        return self.strerror


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * 128)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _sys_openat2(dir_fd: int, path: bytes, flags: int, resolve: int) -> int:
    how = _OpenHow(flags, 0, resolve)
    for _ in range(8):          # EAGAIN: a rename or mount raced the lookup; try again
        r = _libc.syscall(SYS_OPENAT2, ctypes.c_int(dir_fd), ctypes.c_char_p(path),
                          ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if r >= 0:
            return int(r)
        e = ctypes.get_errno()
        if e != errno.EAGAIN:
            raise OSError(e, os.strerror(e))     # the subclass for e (NotADirectoryError…)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))


def _probe_openat2() -> bool:
    try:
        fd = _sys_openat2(-100, b".", O_PATH_NOFOLLOW | os.O_DIRECTORY, RESOLVE)
    except OSError:             # ENOSYS (too old), EPERM (seccomp), ...
        return False
    os.close(fd)
    return True


USE_OPENAT2 = _probe_openat2()   # tests turn it off to exercise the walk


def openat2_available() -> bool:
    return USE_OPENAT2


# -- small helpers ----------------------------------------------------------------------
_KINDS = ((stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symbolic link"),
          (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))


def file_kind(mode: int) -> str:
    """'regular file', 'directory', 'symbolic link', 'fifo', 'character device', ..."""
    if stat.S_ISREG(mode):
        return "regular file"
    return next((name for test, name in _KINDS if test(mode)), "unknown file type")


def parts(path: str) -> list[str]:
    """The components of a path taken relative to a root: '', '.' dropped, '..' applied
    lexically and never above the root. Raises ContainerFileError(EINVAL) on bad input."""
    if not isinstance(path, str) or "\0" in path:
        raise ContainerFileError(errno.EINVAL, "not a usable path", repr(path)[:200])
    out: list[str] = []
    for c in path.split("/"):
        if c in ("", "."):
            continue
        if c == "..":
            if out:
                out.pop()
            continue
        out.append(c)
    return out


def _err(e: OSError, path: str) -> ContainerFileError:
    if isinstance(e, ContainerFileError):
        return e
    code = e.errno or errno.EIO
    reason = {errno.ELOOP: "a symbolic link on the way (not followed)",
              errno.EXDEV: "on another mount (a volume?)",
              errno.ENOENT: "not there", errno.ENOTDIR: "a component is not a directory"
              }.get(code, e.strerror or os.strerror(code))
    return ContainerFileError(code, reason, path)


def _mnt_id(fd: int) -> int | None:
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("mnt_id:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _same_mount(fd: int, root_fd: int, root_mnt: int | None) -> bool:
    if root_mnt is not None:
        return _mnt_id(fd) == root_mnt
    return os.fstat(fd).st_dev == os.fstat(root_fd).st_dev


def _walk(dir_fd: int, comps: list[str], last_flags: int) -> int:
    """Without openat2: open comps one at a time below dir_fd, directories O_DIRECTORY |
    O_NOFOLLOW, the last one with last_flags | O_NOFOLLOW; same mount as dir_fd."""
    root_mnt = _mnt_id(dir_fd)
    cur = dir_fd
    try:
        for i, name in enumerate(comps):
            last = i == len(comps) - 1
            flags = (last_flags | os.O_NOFOLLOW) if last else O_DIR
            try:
                nxt = os.open(name, flags, dir_fd=cur)
            except NotADirectoryError:
                # O_DIRECTORY | O_NOFOLLOW on a symbolic link says ENOTDIR; say ELOOP, as
                # openat2 does
                if stat.S_ISLNK(os.stat(name, dir_fd=cur, follow_symlinks=False).st_mode):
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
                raise
            if cur != dir_fd:
                os.close(cur)
            cur = nxt
            if not _same_mount(cur, dir_fd, root_mnt):
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        if cur == dir_fd:                       # the root itself
            cur = os.open(".", last_flags, dir_fd=dir_fd)
        return cur
    except BaseException:
        if cur != dir_fd:
            os.close(cur)
        raise


def _open_beneath(dir_fd: int, path: str, flags: int) -> int:
    comps = parts(path)
    try:
        if USE_OPENAT2:
            rel = os.fsencode("/".join(comps) or ".")
            try:
                return _sys_openat2(dir_fd, rel, flags | os.O_NOFOLLOW, RESOLVE)
            except NotADirectoryError:
                # O_DIRECTORY on a symbolic link says ENOTDIR: say ELOOP, as for the others
                pfd = _sys_openat2(dir_fd, rel, O_PATH_NOFOLLOW, RESOLVE)
                link = stat.S_ISLNK(os.fstat(pfd).st_mode)
                os.close(pfd)
                raise OSError(errno.ELOOP if link else errno.ENOTDIR, "") from None
        return _walk(dir_fd, comps, flags)
    except (OSError, ValueError) as e:
        if isinstance(e, ValueError):
            raise ContainerFileError(errno.EINVAL, "not a usable path", path) from None
        raise _err(e, path) from None


def _reopen(path_fd: int, st: os.stat_result, path: str) -> int:
    """The same inode as the O_PATH fd, opened for reading (through /proc/self/fd, so that
    nothing can be swapped in between); fstat-checked again."""
    try:
        fd = os.open(f"/proc/self/fd/{path_fd}", O_FILE)
    except OSError as e:
        raise _err(e, path) from None
    again = os.fstat(fd)
    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise ContainerFileError(errno.ESTALE, "changed while it was opened", path)
    return fd


def _check_regular(st: os.stat_result, path: str, inode: int | None) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise ContainerFileError(errno.ELOOP if stat.S_ISLNK(st.st_mode) else errno.EINVAL,
                                 f"not a regular file ({file_kind(st.st_mode)})", path)
    if inode is not None and st.st_ino != inode:
        raise ContainerFileError(errno.ESTALE, f"not the file that ran (inode {st.st_ino}, "
                                               f"the kernel reported {inode})", path)


def _regular_from_path_fd(pfd: int, path: str, inode: int | None) -> int:
    try:
        st = os.fstat(pfd)
        _check_regular(st, path, inode)
        return _reopen(pfd, st, path)
    finally:
        os.close(pfd)


# -- the API ----------------------------------------------------------------------------
def open_layer(host_path: str) -> int:
    """A directory fd for a layer or root named by the host (from the runtime's mount table,
    trusted): O_RDONLY | O_DIRECTORY. The caller closes it."""
    try:
        return os.open(host_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (OSError, ValueError) as e:
        raise _err(e if isinstance(e, OSError) else OSError(errno.EINVAL, "bad path"),
                   host_path) from None


def open_file(dir_fd: int, path: str, inode: int | None = None) -> int:
    """A read-only fd of the regular file at `path` beneath dir_fd (see the guarantees
    above); `inode`, when given, must be its st_ino. The caller closes it."""
    return _regular_from_path_fd(_open_beneath(dir_fd, path, O_PATH_NOFOLLOW), path, inode)


def open_dir(dir_fd: int, path: str) -> int:
    """A directory fd (O_RDONLY, so that its xattrs can be read) beneath dir_fd."""
    return _open_beneath(dir_fd, path, O_DIR)


def lstat(dir_fd: int, path: str) -> os.stat_result | None:
    """lstat of `path` beneath dir_fd: the parents walked as above, the last component not
    followed (a symbolic link or a whiteout is reported as what it is). None when absent."""
    comps = parts(path)
    if not comps:
        return os.fstat(dir_fd)
    try:
        parent = open_dir(dir_fd, "/".join(comps[:-1])) if len(comps) > 1 else None
    except ContainerFileError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise
    try:
        return os.stat(comps[-1], dir_fd=dir_fd if parent is None else parent,
                       follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise _err(e, path) from None
    finally:
        if parent is not None:
            os.close(parent)


def readlink(dir_fd: int, name: str) -> str:
    """The target of the symbolic link `name` (one component) in dir_fd, not followed."""
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise ContainerFileError(errno.EINVAL, "not a single path component", name)
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as e:
        raise _err(e, name) from None


def xattr(fd: int, name: str) -> bytes | None:
    """An extended attribute of an open file, or None when absent or not readable."""
    try:
        return os.getxattr(fd, name)
    except OSError:
        return None


def fd_path(fd: int) -> str:
    """Where an fd is, as the kernel names it (readlink of /proc/self/fd/N)."""
    return os.readlink(f"/proc/self/fd/{fd}")


def open_by_handle(mount_fd: int, handle_type: int, handle: bytes) -> int:
    """open_by_handle_at(2) on the filesystem of mount_fd (needs CAP_DAC_READ_SEARCH), the
    result checked like open_file: a regular file, reopened read-only. Raises
    ContainerFileError (ENOSYS where the architecture's number is not known)."""
    if SYS_OPEN_BY_HANDLE_AT is None:
        raise ContainerFileError(errno.ENOSYS, "open_by_handle_at is not known here")
    if not 0 < len(handle) <= 128:
        raise ContainerFileError(errno.EINVAL, "not a file handle")
    fh = _FileHandle(len(handle), handle_type)
    ctypes.memmove(fh.f_handle, handle, len(handle))
    r = _libc.syscall(SYS_OPEN_BY_HANDLE_AT, ctypes.c_int(mount_fd), ctypes.byref(fh),
                      ctypes.c_int(O_PATH_NOFOLLOW))
    if r < 0:
        e = ctypes.get_errno()
        raise ContainerFileError(e, os.strerror(e), "file handle")
    return _regular_from_path_fd(int(r), "file handle", None)


def open_proc_exe(pid: int, inode: int, dev: int) -> int:
    """The program a process runs (/proc/PID/exe: the file the kernel executed, even once
    it is deleted), only if it is still the inode and device the kernel reported at exec
    (the pid may have exited or been reused). A read-only fd; raises ContainerFileError."""
    path = f"/proc/{int(pid)}/exe"
    try:
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as e:
        raise ContainerFileError(e.errno or errno.ESRCH, "the process has exited", path) \
            from None
    try:
        st = os.fstat(pfd)
    except OSError as e:
        os.close(pfd)
        raise _err(e, path) from None
    if (st.st_ino, st.st_dev) != (inode, dev):
        os.close(pfd)
        raise ContainerFileError(errno.ESTALE, "the process no longer runs that program",
                                 path)
    return _regular_from_path_fd(pfd, path, None)
