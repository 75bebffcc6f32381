"""Typed events, one immutable class per family of kinds.

Each class is a typing.NamedTuple: immutable, typed, and cheap to build. (A frozen dataclass
with the same 21 fields took 2.4 µs to construct, more than everything else the decoder does
for an event together; a NamedTuple built positionally takes about 0.3 µs. At 200k events/s
that is the difference between keeping up and dropping.)

Every class starts with the same header fields; the classes are built from one list of
(attribute, dotted name, type) per family so that the header is written once. Attribute
names are short Python names; `fields()` gives the same values under the dotted vocabulary
that rules, alerts, gRPC and docs use (docs/fields.md says what each one means).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

# (attribute, dotted name, type) of the fields every event starts with, in order.
HEADER = (
    ("kind", "event.kind", str),            # exec, open, connect, …
    ("ts", "event.ts", int),                # monotonic ns (bpf_ktime_get_ns)
    ("pid", "proc.pid", int),               # thread group id, host pid namespace
    ("tid", "proc.tid", int),
    ("ppid", "proc.ppid", int),
    ("vpid", "proc.vpid", int),             # pid in the process's own pid namespace
    ("uid", "proc.uid", int),
    ("gid", "proc.gid", int),
    ("comm", "proc.name", str),             # the kernel's comm, 15 characters at most
    ("cgroup_id", "proc.cgroup_id", int),   # cgroup2 inode number
    ("pidns", "proc.pidns", int),           # pid namespace inode
    ("mntns", "proc.mntns", int),           # mount namespace inode
)
SYSCALL = (
    ("syscall", "event.syscall", str),      # the exact syscall: openat, accept4, …
    ("result", "event.result", int),        # return value, negative errno on failure
    ("error", "event.error", Optional[str]),  # errno name when it failed, else None
)


def _fields(self) -> dict:
    """The event under its dotted names."""
    return dict(zip(self._DOTTED, self))


def _event(name: str, own: tuple, doc: str, extra: tuple = ()):
    """A NamedTuple class: the header, the family's own fields (with dotted names), then
    `extra` fields that have no dotted name of their own."""
    spec = HEADER + own
    cls = NamedTuple(name, [(a, t) for a, _, t in spec] + list(extra))
    cls.__doc__ = doc
    cls._DOTTED = tuple(d for _, d, _ in spec)
    cls.fields = _fields
    return cls


ExecEvent = _event("ExecEvent", (
    ("exe", "proc.exe", str),               # the real binary (bprm->file), in its namespace
    ("exe_inode", "proc.exe_inode", int),
    ("exe_dev", "proc.exe_dev", int),       # as stat(2) st_dev reports it
    ("exe_fs", "proc.exe_fs", str),         # overlay, ext4, tmpfs…
    ("exe_links", "proc.exe_links", int),   # hard links left (0: deleted)
    ("exe_truncated", "proc.exe_truncated", bool),
    ("exe_detached", "proc.exe_detached", bool),    # no path to a root (memfd…)
    ("exe_upper", "proc.exe_upper_layer", bool),    # overlayfs: a copy in the upper layer
    ("exe_lower", "proc.exe_lower_layer", bool),    # overlayfs: in an image (lower) layer
    ("prevented", "exec.prevented", bool),  # drift prevention killed it before it ran
    ("filename", "exec.filename", str),     # the path execve was asked to run
    ("args", "proc.args", tuple),           # argv, argv[0] included
    ("args_truncated", "proc.args_truncated", bool),
    ("stdin", "proc.stdin", str),           # tty | pipe | socket | file | chardev | dir | none
    ("stdout", "proc.stdout", str),
    ("stderr", "proc.stderr", str),
    ("stdin_path", "proc.stdin_path", str),  # stdin a regular file: its resolved path
), "exec: a process started a program.", extra=(
    # stdin a regular file (`sh < script`), from the kernel at exec: (inode, dev as stat
    # reports it, fs, links, upper layer, lower layer); None otherwise
    ("stdin_facts", Optional[tuple]),
    ("start", int),           # the process's start, ns since boot (task->start_boottime)
    ("euid", int),            # the credentials the new program runs with
    ("egid", int),
))

MmapEvent = _event("MmapEvent", (
    ("syscall", "event.syscall", str),      # mmap | mprotect | pkey_mprotect | shmat
    ("path", "file.path", str),             # the mapped file, in the process's namespace
    ("inode", "file.inode", int),
    ("dev", "file.dev", int),               # as stat(2) st_dev reports it
    ("fs", "file.fs", str),                 # overlay, ext4, tmpfs…
    ("links", "file.links", int),           # hard links left (0: deleted)
    ("path_truncated", "file.path_truncated", bool),
    ("detached", "file.detached", bool),    # no path to a root (memfd, SysV segment…)
    ("upper", "file.upper_layer", bool),    # overlayfs: a copy in the writable layer
    ("lower", "file.lower_layer", bool),    # overlayfs: in an image layer
    ("prot", "mmap.prot", tuple),           # PROT_* asked for
    ("mflags", "mmap.flags", tuple),        # MAP_* (mprotect: the mapping's sharing type)
    ("fd", "mmap.fd", int),                 # mmap's fd; -1 for mprotect; shmat: segment id
    ("drift_kind", "drift.kind", Optional[str]),    # new | modified | tmpfs | fileless | deleted
    ("drift_path", "drift.path", str),      # = file.path
    ("drift_reason", "drift.unknown_reason", Optional[str]),  # a volume, in an enforced container
    ("drift_prevented", "drift.prevented", bool),   # killed before the code could run
), "mmap_exec: code mapped executable from a file that is drift.")

ForkEvent = _event("ForkEvent", (
    ("child_pid", "fork.child_pid", int),
), "fork: a new process (threads are not reported).", extra=(
    ("child_start", int),     # the child's start, ns since boot (task->start_boottime)
))

ExitEvent = _event("ExitEvent", (
    ("code", "exit.code", Optional[int]),   # exit status when it exited normally
    ("signal", "exit.signal", int),         # the signal that killed it, 0 if none
    ("core_dumped", "exit.core_dumped", bool),
), "exit: the last thread of a process ended.")

class FileEvent(_event("FileEvent", SYSCALL + (
    ("path", "file.path", str),             # resolved: what the kernel opened, or the
                                            # requested path joined to its start directory
    ("new_path", "file.new_path", Optional[str]),   # rename target, resolved the same way
    ("flags", "file.flags", tuple),         # O_* (open), AT_* (unlink, chmod, utime),
                                            # RENAME_* (rename); utime: + TIMES_GIVEN
    ("mode", "file.mode", Optional[int]),   # permission bits (open with O_CREAT, chmod,
                                            # mkdir); utime: utime.mtime (below)
    ("fd", "file.fd", int),                 # directory fd (AT_FDCWD = -100), or the fd of
                                            # a call without a path (fchmod, futimens)
    ("path_truncated", "file.path_truncated", bool),
    ("requested_path", "file.requested_path", str),  # as the caller passed it
    ("resolved", "file.resolved", bool),    # file.path is the file the kernel opened
), "")):
    """open, unlink, rename, chmod, mkdir, utime. A utime event sets no mode: its `mode`
    holds the modification time it sets (seconds since the epoch; None unless the call gave
    it explicitly), which `fields()` names `utime.mtime`."""
    __slots__ = ()

    def fields(self) -> dict:
        out = dict(zip(self._DOTTED, self))
        if self[0] == "utime":
            out["utime.mtime"] = out.pop("file.mode")
        return out

NetEvent = _event("NetEvent", SYSCALL + (
    ("family", "net.family", str),          # inet | inet6 | unix
    ("protocol", "net.protocol", str),      # tcp | udp | …
    ("sock_type", "net.type", str),         # stream | dgram | raw | seqpacket
    ("saddr", "net.saddr", str),            # local address
    ("sport", "net.sport", int),
    ("daddr", "net.daddr", str),            # remote address
    ("dport", "net.dport", int),
    ("unix_path", "net.path", str),         # unix socket path
    ("fd", "net.fd", int),                  # the socket (accept: the listening one)
    ("backlog", "net.backlog", int),
), "connect, accept, bind, listen.")

CgroupEvent = _event("CgroupEvent", (
    ("id", "cgroup.id", int),               # the new or removed cgroup's id (inode number)
    ("level", "cgroup.level", int),         # depth below the root (root = 0)
    ("path", "cgroup.path", str),           # below the cgroup2 root, e.g. /kubepods/...
), "cgroup_mkdir, cgroup_rmdir: the cgroup2 tree changed (for container discovery).")


class PrivEvent(_event("PrivEvent", SYSCALL, "", extra=(("details", tuple),))):
    """ptrace, mount, umount, unshare, setns, setuid, setgid, memfd, module, io_uring, kill.
    `details` holds the kind's own dotted fields (ptrace.request, mount.target, ns.types,
    cred.euid, io_uring.flags, signal.name…)."""
    __slots__ = ()

    def fields(self) -> dict:
        out = dict(zip(self._DOTTED, self))
        out.update(self.details)
        return out

    def get(self, dotted: str):
        for k, v in self.details:
            if k == dotted:
                return v
        return None
