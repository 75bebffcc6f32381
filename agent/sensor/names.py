"""Names for the numbers the kernel reports: flags, errnos, families, filesystems."""
from __future__ import annotations

import errno
import os
import socket

_O_FLAGS = (  # (name, value); access mode handled apart
    ("O_CREAT", 0o100), ("O_EXCL", 0o200), ("O_NOCTTY", 0o400), ("O_TRUNC", 0o1000),
    ("O_APPEND", 0o2000), ("O_NONBLOCK", 0o4000), ("O_DSYNC", 0o10000),
    ("O_ASYNC", 0o20000), ("O_DIRECT", 0o40000), ("O_LARGEFILE", 0o100000),
    ("O_DIRECTORY", 0o200000), ("O_NOFOLLOW", 0o400000), ("O_NOATIME", 0o1000000),
    ("O_CLOEXEC", 0o2000000), ("O_SYNC", 0o4000000), ("O_PATH", 0o10000000),
    ("O_TMPFILE", 0o20000000),
)
_ACCMODE = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR", 3: "O_ACCMODE3"}

_cache: dict[int, tuple[str, ...]] = {}


def open_flags(flags: int) -> tuple[str, ...]:
    """('O_WRONLY', 'O_CREAT', 'O_TRUNC') for 0o1101. Cached: flags repeat a lot."""
    hit = _cache.get(flags)
    if hit is not None:
        return hit
    names = [_ACCMODE[flags & 3]]
    rest = flags & ~3
    for name, bit in _O_FLAGS:
        if rest & bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(f"{rest:#o}")
    out = tuple(names)
    if len(_cache) < 4096:
        _cache[flags] = out
    return out


_WRITE_FLAGS = frozenset(("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"))
_writable: dict[tuple, bool] = {}


def writable(flags: tuple) -> bool:
    """Does an open with these flag names write (or create, or truncate)? Cached."""
    w = _writable.get(flags)
    if w is None:
        w = bool(_WRITE_FLAGS.intersection(flags))
        if len(_writable) < 4096:
            _writable[flags] = w
    return w


def bit_names(value: int, table: tuple[tuple[str, int], ...]) -> tuple[str, ...]:
    names, rest = [], value
    for name, bit in table:
        if value & bit == bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(hex(rest))
    return tuple(names)


UNLINK_FLAGS = (("AT_REMOVEDIR", 0x200),)
RENAME_FLAGS = (("RENAME_NOREPLACE", 1), ("RENAME_EXCHANGE", 2), ("RENAME_WHITEOUT", 4))
CHMOD_FLAGS = (("AT_SYMLINK_NOFOLLOW", 0x100), ("AT_EMPTY_PATH", 0x1000))
# utimensat's AT_* flags, and the probe's pseudo-flag for explicit times (layout.UTIME_FLAGS;
# its MTIME_GIVEN bit is taken off before naming: it says utime.mtime is known)
UTIME_FLAGS = CHMOD_FLAGS + (("TIMES_GIVEN", 1 << 31),)
MOUNT_FLAGS = (
    ("MS_RDONLY", 1), ("MS_NOSUID", 2), ("MS_NODEV", 4), ("MS_NOEXEC", 8),
    ("MS_SYNCHRONOUS", 16), ("MS_REMOUNT", 32), ("MS_MANDLOCK", 64), ("MS_DIRSYNC", 128),
    ("MS_NOSYMFOLLOW", 256), ("MS_NOATIME", 1024), ("MS_NODIRATIME", 2048),
    ("MS_BIND", 4096), ("MS_MOVE", 8192), ("MS_REC", 16384), ("MS_SILENT", 32768),
    ("MS_POSIXACL", 1 << 16), ("MS_UNBINDABLE", 1 << 17), ("MS_PRIVATE", 1 << 18),
    ("MS_SLAVE", 1 << 19), ("MS_SHARED", 1 << 20), ("MS_RELATIME", 1 << 21),
    ("MS_KERNMOUNT", 1 << 22), ("MS_I_VERSION", 1 << 23), ("MS_STRICTATIME", 1 << 24),
    ("MS_LAZYTIME", 1 << 25),
)


def mount_flags(value: int) -> tuple[str, ...]:
    """mount(2) flags; the historic magic MS_MGC_VAL in the top 16 bits is dropped."""
    if value & 0xFFFF0000 == 0xC0ED0000:
        value &= 0xFFFF
    return bit_names(value, MOUNT_FLAGS)
UMOUNT_FLAGS = (("MNT_FORCE", 1), ("MNT_DETACH", 2), ("MNT_EXPIRE", 4), ("UMOUNT_NOFOLLOW", 8))
NS_TYPES = (  # CLONE_NEW* bits -> short namespace names
    ("time", 0x80), ("mnt", 0x20000), ("cgroup", 0x02000000), ("uts", 0x04000000),
    ("ipc", 0x08000000), ("user", 0x10000000), ("pid", 0x20000000), ("net", 0x40000000),
)
UNSHARE_OTHER = (("files", 0x400), ("fs", 0x200), ("sysvsem", 0x40000))
PROT_FLAGS = (("PROT_READ", 1), ("PROT_WRITE", 2), ("PROT_EXEC", 4), ("PROT_SEM", 8),
              ("PROT_GROWSDOWN", 0x01000000), ("PROT_GROWSUP", 0x02000000))
MAP_FLAGS = (  # the sharing type (low bits) first, then the flags mmap(2) lists
    ("MAP_SHARED_VALIDATE", 3), ("MAP_SHARED", 1), ("MAP_PRIVATE", 2), ("MAP_FIXED", 0x10),
    ("MAP_ANONYMOUS", 0x20), ("MAP_32BIT", 0x40), ("MAP_GROWSDOWN", 0x100),
    ("MAP_DENYWRITE", 0x800), ("MAP_EXECUTABLE", 0x1000), ("MAP_LOCKED", 0x2000),
    ("MAP_NORESERVE", 0x4000), ("MAP_POPULATE", 0x8000), ("MAP_NONBLOCK", 0x10000),
    ("MAP_STACK", 0x20000), ("MAP_HUGETLB", 0x40000), ("MAP_SYNC", 0x80000),
    ("MAP_FIXED_NOREPLACE", 0x100000),
)


def map_flags(value: int) -> tuple[str, ...]:
    """mmap(2) flags: the sharing type (SHARED, PRIVATE, SHARED_VALIDATE) is a 2-bit value."""
    kind = value & 3
    head = {1: ("MAP_SHARED",), 2: ("MAP_PRIVATE",), 3: ("MAP_SHARED_VALIDATE",)}.get(kind, ())
    return head + bit_names(value & ~3, MAP_FLAGS[3:])


MEMFD_FLAGS = (("MFD_CLOEXEC", 1), ("MFD_ALLOW_SEALING", 2), ("MFD_HUGETLB", 4),
               ("MFD_NOEXEC_SEAL", 8), ("MFD_EXEC", 0x10))

PTRACE_REQUESTS = {
    0: "PTRACE_TRACEME", 1: "PTRACE_PEEKTEXT", 2: "PTRACE_PEEKDATA", 3: "PTRACE_PEEKUSER",
    4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 6: "PTRACE_POKEUSER", 7: "PTRACE_CONT",
    8: "PTRACE_KILL", 9: "PTRACE_SINGLESTEP", 12: "PTRACE_GETREGS", 13: "PTRACE_SETREGS",
    14: "PTRACE_GETFPREGS", 15: "PTRACE_SETFPREGS", 16: "PTRACE_ATTACH",
    17: "PTRACE_DETACH", 24: "PTRACE_SYSCALL", 0x4200: "PTRACE_SETOPTIONS",
    0x4201: "PTRACE_GETEVENTMSG", 0x4202: "PTRACE_GETSIGINFO", 0x4203: "PTRACE_SETSIGINFO",
    0x4204: "PTRACE_GETREGSET", 0x4205: "PTRACE_SETREGSET", 0x4206: "PTRACE_SEIZE",
    0x4207: "PTRACE_INTERRUPT", 0x4208: "PTRACE_LISTEN",
}

# Linux signal numbers (x86, arm, riscv: the generic numbering) -> names; real-time signals
# as `kill -l` names them (glibc keeps 32 and 33 for itself: SIGRTMIN is 34)
SIGNALS = {
    1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
    7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2",
    13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD",
    18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG",
    24: "SIGXCPU", 25: "SIGXFSZ", 26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO",
    30: "SIGPWR", 31: "SIGSYS", 32: "SIG32", 33: "SIG33", 34: "SIGRTMIN",
    **{34 + i: f"SIGRTMIN+{i}" for i in range(1, 16)},
    **{64 - i: f"SIGRTMAX-{i}" for i in range(1, 15)},
    64: "SIGRTMAX",
}


def signal_name(n: int) -> str:
    """SIGTERM for 15; a number no signal has (kill fails with EINVAL) as itself, in text."""
    return SIGNALS.get(n) or str(n)


FAMILIES = {socket.AF_UNIX: "unix", socket.AF_INET: "inet", socket.AF_INET6: "inet6",
            16: "netlink", 17: "packet", 0: ""}
SOCK_TYPES = {1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket", 0: ""}
PROTOCOLS = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "sctp", 136: "udplite",
             255: "raw", 0: ""}

FS_MAGIC = {
    0x794C7630: "overlay", 0xEF53: "ext4", 0x01021994: "tmpfs", 0x9123683E: "btrfs",
    0x58465342: "xfs", 0x6969: "nfs", 0x73717368: "squashfs", 0x858458F6: "ramfs",
    0x958458F6: "hugetlbfs", 0x9FA0: "proc", 0x62656572: "sysfs", 0x1CD1: "devpts",
    0x65735546: "fuse", 0x4D44: "vfat", 0x2FC12FC1: "zfs", 0x28CD3D45: "cramfs",
    0xF2F52010: "f2fs", 0x01021997: "9p", 0x5346544E: "ntfs", 0xCAFE4A11: "bpf",
    0x42494E4D: "binfmt_misc", 0x27E0EB: "cgroup", 0x63677270: "cgroup2",
    0xFF534D42: "cifs", 0x24051905: "ubifs", 0x3153464A: "jfs", 0x52654973: "reiserfs",
    0x9660: "iso9660", 0xABBA1974: "xenfs", 0x6E736673: "nsfs", 0x2BAD1DEA: "inotifyfs",
}

_S_IFMT, _S_IFSOCK, _S_IFLNK, _S_IFREG, _S_IFBLK, _S_IFDIR, _S_IFCHR, _S_IFIFO = (
    0o170000, 0o140000, 0o120000, 0o100000, 0o060000, 0o040000, 0o020000, 0o010000)
_TTY_MAJORS = {4, 5, *range(136, 144)}


def fd_kind(mode: int, rdev: int) -> str:
    """What a process's stdin/stdout/stderr is: tty, pipe, socket, file, chardev, dir…"""
    fmt = mode & _S_IFMT
    if fmt == 0:
        return "none"
    if fmt == _S_IFCHR:
        return "tty" if (rdev >> 20) in _TTY_MAJORS else "chardev"
    return {_S_IFIFO: "pipe", _S_IFSOCK: "socket", _S_IFREG: "file", _S_IFDIR: "dir",
            _S_IFBLK: "blockdev", _S_IFLNK: "symlink"}.get(fmt, "other")


def user_dev(kdev: int) -> int:
    """A kernel dev_t (major << 20 | minor) as stat(2) reports it."""
    return os.makedev(kdev >> 20, kdev & 0xFFFFF)


def errno_name(ret: int) -> str | None:
    if ret >= 0 or ret < -4095:
        return None
    return errno.errorcode.get(-ret, f"E{-ret}")

# io_uring_setup(2) flags (include/uapi/linux/io_uring.h)
IORING_SETUP_FLAGS = tuple((f"IORING_SETUP_{n}", 1 << i) for i, n in enumerate((
    "IOPOLL", "SQPOLL", "SQ_AFF", "CQSIZE", "CLAMP", "ATTACH_WQ", "R_DISABLED",
    "SUBMIT_ALL", "COOP_TASKRUN", "TASKRUN_FLAG", "SQE128", "CQE32", "SINGLE_ISSUER",
    "DEFER_TASKRUN", "NO_MMAP", "REGISTERED_FD_ONLY", "NO_SQARRAY")))
