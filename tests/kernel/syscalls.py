"""Imported by test children: raw syscalls by name (x86_64 numbers), so that a test knows
exactly which syscall, flags and arguments the kernel saw (libc wrappers add O_CLOEXEC,
pick openat for open, and so on)."""
import ctypes
import json
import os  # noqa: F401 - the children use os.O_* through "from syscalls import *"
import sys

NR = {
    "open": 2, "creat": 85, "openat": 257, "openat2": 437, "close": 3,
    "unlink": 87, "unlinkat": 263, "rename": 82, "renameat": 264, "renameat2": 316,
    "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452,
    "connect": 42, "accept": 43, "accept4": 288, "bind": 49, "listen": 50,
    "ptrace": 101, "mount": 165, "umount2": 166, "unshare": 272, "setns": 308,
    "setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114, "setresuid": 117,
    "setresgid": 119, "setfsuid": 122, "setfsgid": 123, "memfd_create": 319,
}
AT_FDCWD = -100

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _arg(a):
    if isinstance(a, bytes):
        return ctypes.c_char_p(a)
    if isinstance(a, str):
        return ctypes.c_char_p(a.encode())
    if isinstance(a, int):
        return ctypes.c_long(a)
    return a


def sc(name, *args):
    """The syscall's return value, or -errno on failure (as the kernel reports it)."""
    r = _libc.syscall(NR[name], *[_arg(a) for a in args])
    return -ctypes.get_errno() if r == -1 else r


def report(**values):
    """Hand results back to the test (one JSON line on stdout)."""
    sys.stdout.write(json.dumps(values) + "\n")
    sys.stdout.flush()
