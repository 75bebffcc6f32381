"""The wire layout of every event the probes send: the one source of truth.

`bpf/events.h` is generated from this module (`python -m agent.sensor.layout > bpf/events.h`,
or `make gen`), and the decoder builds its `struct` formats from it, so the C side and the
Python side cannot drift apart. A test checks that the committed header is current and that
gcc lays the structs out at exactly the offsets computed here.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

# Sizes of the bounded buffers. Longer values are cut and the event says so (flags below).
COMM_LEN = 16
PATH_LEN = 256          # file paths as passed to a syscall
NAME_LEN = 64           # one component of the executable's path (dentry name)
PATH_DEPTH = 32         # dentries (plus mount crossings) walked for the executable's path
RPATH_LEN = 512         # a path the kernel resolved, as text; longer: its end is kept
RPATH_DEPTH = 48        # dentries (plus mount crossings) walked for a resolved path
ARGS_LEN = 4096         # argv bytes (NUL-separated) copied from the new program's stack
ARGS_TAIL = 1024        # of which, when argv is longer: its last bytes (the rest: its head)
MAX_ARGS = 64           # argv entries kept by the decoder
MAX_ARGS_TAIL = 16      # of which, when there are more: the last ones (the rest: the first)
UNIX_PATH_LEN = 108     # sun_path
SHORT_STR = 32          # fstype
CGROUP_PATH_LEN = 512   # a cgroup's path below its hierarchy's root

# Event kinds. The number is what the kernel writes in hdr.kind; the name is event.kind.
# Numbers are stable: a new kind is appended at the end, whatever its family (so the kinds
# of one family are not one range: bpf/priv.c priv_exit tests kill apart).
KINDS = (
    "exec", "fork", "exit", "mmap_exec",
    "open", "unlink", "rename", "chmod",
    "connect", "accept", "bind", "listen",
    "ptrace", "mount", "umount", "unshare", "setns", "setuid", "setgid", "memfd",
    "module", "io_uring",
    "cgroup_mkdir", "cgroup_rmdir",
    "kill", "mkdir", "utime",
)
KIND_ID = {name: i + 1 for i, name in enumerate(KINDS)}
FAMILIES = {
    "process": ("exec", "fork", "exit", "mmap_exec"),
    "file": ("open", "unlink", "rename", "chmod", "mkdir", "utime"),
    "net": ("connect", "accept", "bind", "listen"),
    "priv": ("ptrace", "mount", "umount", "unshare", "setns", "setuid", "setgid", "memfd",
             "module", "io_uring", "kill"),
    # Not about what a process did: the cgroup tree, for container discovery. Not filtered.
    "cgroup": ("cgroup_mkdir", "cgroup_rmdir"),
}
FAMILY_OF = {k: fam for fam, kinds in FAMILIES.items() for k in kinds}

# The exact syscall behind a kind (open vs openat2 …), written in the event's `sys` field.
SYSCALLS = (
    "open", "openat", "openat2", "creat",
    "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "chmod", "fchmod", "fchmodat", "fchmodat2",
    "connect", "accept", "accept4", "bind", "listen",
    "ptrace", "mount", "umount2", "unshare", "setns",
    "setuid", "setreuid", "setresuid", "setfsuid",
    "setgid", "setregid", "setresgid", "setfsgid",
    "memfd_create", "init_module", "finit_module",
    "mmap", "mprotect", "pkey_mprotect", "shmat",
    "io_uring_setup",
    "io_uring_openat", "io_uring_openat2",   # not syscalls: io_uring requests (open kind)
    "kill", "tkill", "tgkill",
    "mkdir", "mkdirat",
    "utimensat", "utimes", "futimesat", "utime",
)
SYSCALL_ID = {name: i + 1 for i, name in enumerate(SYSCALLS)}

# hdr.flags bits
FLAGS = {
    "TRUNC_PATH": 1 << 0,    # path (or the executable's path) was cut
    "TRUNC_PATH2": 1 << 1,   # second path (rename target, mount source) was cut
    "TRUNC_ARGS": 1 << 2,    # argv was longer than ARGS_LEN bytes
    "EXE_UNREACHABLE": 1 << 3,  # the executable's dentry walk hit a detached dentry
    "PREVENTED": 1 << 4,     # exec, mmap_exec: drift prevention killed the process before
                             # the program (or the mapped code) ran
    "RESOLVED": 1 << 5,      # file events: rpath is the object the kernel opened (walked
                             # from the new descriptor, or fchmod's); else rpath is the
                             # directory the requested path starts from (root, cwd, dirfd)
    "TRUNC_RPATH": 1 << 6,   # a resolved path was longer than RPATH_LEN or RPATH_DEPTH:
                             # its end is kept
}
# file_event.flags of a utime event: the call's AT_* flags, and these pseudo-flags (above
# every AT_* bit) saying what its times argument asked for, read at sys_enter
UTIME_FLAGS = {
    "TIMES_GIVEN": 1 << 31,  # explicit times: utimensat with atime or mtime neither
                             # UTIME_NOW nor UTIME_OMIT; utimes, futimesat, utime with any
                             # times (NULL: now); or times the probe could not read
    "MTIME_GIVEN": 1 << 30,  # file_event.mode is the explicit mtime set (below)
}
# exec_event.ovl bits: where an overlayfs executable lives
OVL_UPPER = 1               # it has a copy in the writable (upper) layer
OVL_LOWER = 2               # it exists in an image (lower) layer
# Why the kernel holds a file for drift (bpf/process.c drift_of(); mmap_event.drift)
DRIFT = {
    "UPPER_ONLY": 1 << 0,   # overlayfs: in the writable layer only, in no image layer
    "WRITTEN": 1 << 1,      # overlayfs: copied up and opened for writing since, not found
                            # unchanged by user space since
    "MEMFS": 1 << 2,        # on tmpfs, ramfs or hugetlbfs (memfds too)
    "DELETED": 1 << 3,      # no links left
    "OTHER_FS": 1 << 4,     # enforced container: not on its root overlay, and on no mount
                            # the configuration allows (drift.allow_exec_from)
}

_C_TYPES = {"u8": ("unsigned char", "B", 1), "u16": ("unsigned short", "H", 2),
            "u32": ("unsigned int", "I", 4), "s32": ("int", "i", 4),
            "u64": ("unsigned long long", "Q", 8), "s64": ("long long", "q", 8)}


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    ctype: str          # one of _C_TYPES, or "char" / "u8" with dims
    dims: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return (1 if self.ctype == "char" else _C_TYPES[self.ctype][2]) * n

    @property
    def align(self) -> int:
        return 1 if self.ctype == "char" else _C_TYPES[self.ctype][2]


def _f(spec: str) -> Field:
    """'u32 pid' / 'char comm[16]' / 'u32 fd_mode[3]'."""
    ctype, rest = spec.split()
    name, *dims = rest.replace("]", "").split("[")
    return Field(name, ctype, tuple(int(d) for d in dims))


HEADER = tuple(_f(s) for s in (
    "u64 ts_ns", "u64 cgroup_id", "u32 kind", "u32 pid", "u32 tid", "u32 ppid",
    "u32 uid", "u32 gid", "u32 pidns", "u32 mntns", "u32 vpid", "u32 flags",
    f"char comm[{COMM_LEN}]",
))

# One struct per family of kinds. Each starts with the header (as member `hdr`).
STRUCTS: dict[str, tuple[Field, ...]] = {
    "exec_event": tuple(_f(s) for s in (
        # the process's start (task->start_boottime, ns): with the pid, its identity
        # (proc.exec_id), the clock of /proc/PID/stat's start time
        "u64 start",
        "u64 ino", "u32 dev", "u32 fs_magic", "u32 nlink", "u32 mode",
        "u32 fd_mode[3]", "u32 fd_rdev[3]", "u32 args_len", "u32 depth", "u32 ovl",
        "u32 args_total",
        # the credentials the new program runs with (a setuid-root program: euid 0)
        "u32 euid", "u32 egid",
        # fd 0 when it is a regular file (`sh < script`): what it is, from the kernel, so
        # that the script is judged even when the process is gone before user space looks
        "u64 stdin_ino", "u32 stdin_dev", "u32 stdin_fs_magic", "u32 stdin_nlink",
        "u32 stdin_ovl",
        f"char filename[{PATH_LEN}]", f"char comps[{PATH_DEPTH}][{NAME_LEN}]",
        f"char args[{ARGS_LEN}]", f"char stdin_path[{RPATH_LEN}]",
    )),
    "fork_event": tuple(_f(s) for s in ("u32 child_pid", "u32 child_tid",
                                        "u64 child_start")),   # its start_boottime
    # code mapped executable from a file that is drift (mmap/mprotect/pkey_mprotect with
    # PROT_EXEC, shmat with SHM_EXEC); the file's path is walked like the executable's
    "mmap_event": tuple(_f(s) for s in (
        "u64 ino", "u32 dev", "u32 fs_magic", "u32 nlink", "u32 ovl", "u32 drift",
        "u32 prot", "u32 mflags", "u32 sys", "s32 fd", "u32 depth",
        f"char comps[{PATH_DEPTH}][{NAME_LEN}]",
    )),
    "exit_event": tuple(_f(s) for s in ("u32 code", "u32 threads")),
    # path/new_path: as the caller passed them; rpath/rbase/rbase2: walked by the kernel
    # (bpf/common.h path_str), empty when there was nothing to walk
    # utime: mode is the modification time the call sets (u32 seconds since the epoch,
    # saturated at 0 and 2^32 - 1) when flags has UTIME_MTIME_GIVEN, else 0; flags holds
    # the UTIME_FLAGS beside the call's AT_* flags
    "file_event": tuple(_f(s) for s in (
        "s64 ret", "s32 fd", "u32 sys", "u32 flags", "u32 mode",
        f"char path[{PATH_LEN}]", f"char rpath[{RPATH_LEN}]",
    )),
    "rename_event": tuple(_f(s) for s in (
        "s64 ret", "s32 olddirfd", "s32 newdirfd", "u32 sys", "u32 flags",
        f"char path[{PATH_LEN}]", f"char new_path[{PATH_LEN}]",
        f"char rbase[{RPATH_LEN}]", f"char rbase2[{RPATH_LEN}]",
    )),
    "net_event": tuple(_f(s) for s in (
        "s64 ret", "s32 fd", "u32 sys", "u16 family", "u16 sport", "u16 dport",
        "u16 protocol", "u16 type", "u16 backlog", "u8 saddr[16]", "u8 daddr[16]",
        f"char unix_path[{UNIX_PATH_LEN}]",
    )),
    "priv_event": tuple(_f(s) for s in (
        "s64 ret", "u64 arg0", "u64 arg1", "u64 arg2", "u64 arg3", "u32 sys",
        # the caller's effective uid at the call's entry (the header's uid is the real one,
        # read at its exit)
        "u32 caller_euid",
        f"char str1[{PATH_LEN}]", f"char str2[{PATH_LEN}]", f"char str3[{SHORT_STR}]",
    )),
    "cgroup_event": tuple(_f(s) for s in (
        "u64 id", "s32 root", "u32 level", f"char path[{CGROUP_PATH_LEN}]",
    )),
}

# Structs whose last member is sent only up to its NUL (bpf_ringbuf_output of a computed
# size): most of a 512-byte resolved path is empty, and opens are the bulk of the ring.
VARIABLE_TAIL = {"file_event": "rpath"}

STRUCT_OF_KIND = {
    "exec": "exec_event", "fork": "fork_event", "exit": "exit_event",
    "mmap_exec": "mmap_event",
    "open": "file_event", "unlink": "file_event", "chmod": "file_event",
    "mkdir": "file_event", "utime": "file_event",
    "rename": "rename_event",
    "connect": "net_event", "accept": "net_event", "bind": "net_event", "listen": "net_event",
    **{k: "priv_event" for k in FAMILIES["priv"]},
    "cgroup_mkdir": "cgroup_event", "cgroup_rmdir": "cgroup_event",
}


def _layout(fields: tuple[Field, ...], start: int = 0) -> tuple[list[tuple[Field, int]], int]:
    """C natural-alignment layout: (field, offset) pairs and the end offset (unpadded)."""
    out, off = [], start
    for f in fields:
        off = (off + f.align - 1) // f.align * f.align
        out.append((f, off))
        off += f.size
    return out, off


def _struct_align(fields: tuple[Field, ...]) -> int:
    return max(f.align for f in fields)


def offsets(name: str) -> dict[str, int]:
    """Byte offset of every member of a struct, header members as `hdr.x`."""
    hdr, hdr_end = _layout(HEADER)
    hdr_size = _round(hdr_end, _struct_align(HEADER))
    if name == "event_hdr":
        return {f.name: o for f, o in hdr}
    body, _ = _layout(STRUCTS[name], hdr_size)
    res = {f"hdr.{f.name}": o for f, o in hdr}
    res.update({f.name: o for f, o in body})
    return res


def sizeof(name: str) -> int:
    hdr_end = _layout(HEADER)[1]
    hdr_size = _round(hdr_end, _struct_align(HEADER))
    if name == "event_hdr":
        return hdr_size
    fields = STRUCTS[name]
    end = _layout(fields, hdr_size)[1]
    return _round(end, max(_struct_align(fields), _struct_align(HEADER)))


def _round(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def struct_format(fields: tuple[Field, ...], start: int = 0) -> str:
    """A `struct` module format ('<' plus explicit pad bytes) for the fields."""
    fmt, off = ["<"], start
    for f, o in _layout(fields, start)[0]:
        if o > off:
            fmt.append(f"{o - off}x")
        if f.ctype == "char" or (f.ctype == "u8" and f.dims):
            fmt.append(f"{f.size}s")
        else:
            code = _C_TYPES[f.ctype][1]
            n = f.size // _C_TYPES[f.ctype][2]
            fmt.append(code * n if n > 1 else code)
        off = o + f.size
    return "".join(fmt)


HEADER_STRUCT = struct.Struct(struct_format(HEADER))


def body_struct(name: str) -> struct.Struct:
    """Format of the members after the header, to unpack at offset sizeof(event_hdr); for a
    struct of VARIABLE_TAIL, of the members before its tail."""
    hdr_size = sizeof("event_hdr")
    fields = STRUCTS[name]
    if name in VARIABLE_TAIL:
        fields = tuple(f for f in fields if f.name != VARIABLE_TAIL[name])
    fmt = struct_format(fields, hdr_size)
    return struct.Struct(fmt)


def min_size(name: str) -> int:
    """The shortest record of a struct: its whole size, or up to its variable tail's NUL."""
    if name in VARIABLE_TAIL:
        return offsets(name)[VARIABLE_TAIL[name]] + 1
    return sizeof(name)


def c_header() -> str:
    """The text of bpf/events.h."""
    out = [
        "/* Generated by `python -m agent.sensor.layout` from agent/sensor/layout.py.",
        " * Do not edit: change layout.py and run `make gen`. */",
        "#ifndef MAMORI_EVENTS_H",
        "#define MAMORI_EVENTS_H",
        "",
    ]
    for const, val in (("COMM_LEN", COMM_LEN), ("PATH_LEN", PATH_LEN), ("NAME_LEN", NAME_LEN),
                       ("PATH_DEPTH", PATH_DEPTH), ("RPATH_LEN", RPATH_LEN),
                       ("RPATH_DEPTH", RPATH_DEPTH), ("ARGS_LEN", ARGS_LEN),
                       ("ARGS_TAIL", ARGS_TAIL),
                       ("UNIX_PATH_LEN", UNIX_PATH_LEN), ("SHORT_STR", SHORT_STR),
                       ("CGROUP_PATH_LEN", CGROUP_PATH_LEN),
                       ("EV_MAX", len(KINDS) + 1)):
        out.append(f"#define {const} {val}")
    out.append("")
    for flag, bit in FLAGS.items():
        out.append(f"#define F_{flag} {bit:#x}")
    out.append(f"#define OVL_UPPER {OVL_UPPER}")
    out.append(f"#define OVL_LOWER {OVL_LOWER}")
    for name, bit in DRIFT.items():
        out.append(f"#define DRIFT_{name} {bit:#x}")
    for name, bit in UTIME_FLAGS.items():
        out.append(f"#define UTIME_{name} {bit:#x}")
    out += ["", "enum event_kind {"]
    out += [f"    EV_{k.upper()} = {KIND_ID[k]}," for k in KINDS]
    out += ["};", "", "enum syscall_id {"]
    out += [f"    SYS_{s.upper()} = {SYSCALL_ID[s]}," for s in SYSCALLS]
    out += ["};", ""]

    def members(fields):
        for f in fields:
            ctype = "char" if f.ctype == "char" else f.ctype
            dims = "".join(f"[{d}]" for d in f.dims)
            yield f"    {ctype} {f.name}{dims};"

    out += ["struct event_hdr {", *members(HEADER), "};", ""]
    for name, fields in STRUCTS.items():
        out += [f"struct {name} {{", "    struct event_hdr hdr;", *members(fields), "};", ""]
    out += ["#endif"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(c_header(), end="")
