"""Typed events, one frozen dataclass per family of kinds.

Attribute names are short Python names; `fields()` gives the same values under the dotted
vocabulary that rules, alerts, gRPC and docs use (docs/fields.md lists them all).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    kind: str           # event.kind
    ts: int             # event.ts: monotonic ns (bpf_ktime_get_ns, CLOCK_MONOTONIC)
    pid: int            # proc.pid: process id (thread group id) in the host pid namespace
    tid: int            # proc.tid
    ppid: int           # proc.ppid
    vpid: int           # proc.vpid: process id in its own pid namespace (a container's view)
    uid: int            # proc.uid
    gid: int            # proc.gid
    comm: str           # proc.name: the kernel's comm (16 bytes at most)
    cgroup_id: int      # proc.cgroup_id: cgroup2 inode number
    pidns: int          # proc.pidns: pid namespace inode
    mntns: int          # proc.mntns: mount namespace inode

    _DOTTED = (("event.kind", "kind"), ("event.ts", "ts"), ("proc.pid", "pid"),
               ("proc.tid", "tid"), ("proc.ppid", "ppid"), ("proc.vpid", "vpid"),
               ("proc.uid", "uid"), ("proc.gid", "gid"), ("proc.name", "comm"),
               ("proc.cgroup_id", "cgroup_id"), ("proc.pidns", "pidns"),
               ("proc.mntns", "mntns"))

    def fields(self) -> dict:
        """The event under its dotted field names."""
        return {dotted: getattr(self, attr) for dotted, attr in self._all_dotted()}

    @classmethod
    def _all_dotted(cls):
        return Event._DOTTED + cls.__dict__.get("_OWN", ())


@dataclass(frozen=True, slots=True)
class ExecEvent(Event):
    exe: str                 # proc.exe: the real binary (bprm->file), path in its namespace
    exe_inode: int           # proc.exe_inode
    exe_dev: int             # proc.exe_dev: as stat(2) st_dev reports it
    exe_fs: str              # proc.exe_fs: filesystem type (overlay, ext4, tmpfs…)
    exe_links: int           # proc.exe_links: hard links left (0: deleted)
    exe_truncated: bool      # proc.exe_truncated: deeper than the walk bound
    exe_detached: bool       # proc.exe_detached: no path to a root (memfd, deleted tree)
    filename: str            # exec.filename: the path execve was asked to run
    args: tuple[str, ...]    # proc.args: argv, argv[0] included
    args_truncated: bool     # proc.args_truncated
    stdin: str               # proc.stdin: tty | pipe | socket | file | chardev | dir | none
    stdout: str              # proc.stdout
    stderr: str              # proc.stderr

    _OWN = (("proc.exe", "exe"), ("proc.exe_inode", "exe_inode"), ("proc.exe_dev", "exe_dev"),
            ("proc.exe_fs", "exe_fs"), ("proc.exe_links", "exe_links"),
            ("proc.exe_truncated", "exe_truncated"), ("proc.exe_detached", "exe_detached"),
            ("exec.filename", "filename"), ("proc.args", "args"),
            ("proc.args_truncated", "args_truncated"), ("proc.stdin", "stdin"),
            ("proc.stdout", "stdout"), ("proc.stderr", "stderr"))


@dataclass(frozen=True, slots=True)
class ForkEvent(Event):
    child_pid: int           # fork.child_pid

    _OWN = (("fork.child_pid", "child_pid"),)


@dataclass(frozen=True, slots=True)
class ExitEvent(Event):
    code: int | None         # exit.code: exit status when the process exited normally
    signal: int              # exit.signal: the signal that killed it, 0 if none
    core_dumped: bool        # exit.core_dumped

    _OWN = (("exit.code", "code"), ("exit.signal", "signal"),
            ("exit.core_dumped", "core_dumped"))


@dataclass(frozen=True, slots=True)
class SyscallEvent(Event):
    syscall: str             # event.syscall: the exact syscall (openat, accept4…)
    result: int              # event.result: the return value (negative errno on failure)
    error: str | None        # event.error: errno name when the call failed (ENOENT…)

    _OWN = (("event.syscall", "syscall"), ("event.result", "result"),
            ("event.error", "error"))

    @classmethod
    def _all_dotted(cls):
        return Event._DOTTED + SyscallEvent._OWN + cls.__dict__.get("_OWN", ())


@dataclass(frozen=True, slots=True)
class FileEvent(SyscallEvent):
    path: str                # file.path: as passed (relative to file.fd when not absolute)
    new_path: str | None     # file.new_path: rename target
    flags: tuple[str, ...]   # file.flags: O_* (open), AT_* (unlink), RENAME_* (rename)
    mode: int                # file.mode: permission bits (open with O_CREAT, chmod)
    fd: int                  # file.fd: the directory fd (AT_FDCWD = -100) or fchmod's fd
    path_truncated: bool     # file.path_truncated

    _OWN = (("file.path", "path"), ("file.new_path", "new_path"), ("file.flags", "flags"),
            ("file.mode", "mode"), ("file.fd", "fd"), ("file.path_truncated", "path_truncated"))


@dataclass(frozen=True, slots=True)
class NetEvent(SyscallEvent):
    family: str              # net.family: inet | inet6 | unix | other numbers as text
    protocol: str            # net.protocol: tcp | udp | icmp | … ("" when unknown)
    sock_type: str           # net.type: stream | dgram | raw | seqpacket
    saddr: str               # net.saddr: local address
    sport: int               # net.sport: local port
    daddr: str               # net.daddr: remote address
    dport: int               # net.dport: remote port
    unix_path: str           # net.path: unix socket path (connect, bind)
    fd: int                  # net.fd: the socket fd (accept: the listening socket)
    backlog: int             # net.backlog: listen backlog

    _OWN = (("net.family", "family"), ("net.protocol", "protocol"), ("net.type", "sock_type"),
            ("net.saddr", "saddr"), ("net.sport", "sport"), ("net.daddr", "daddr"),
            ("net.dport", "dport"), ("net.path", "unix_path"), ("net.fd", "fd"),
            ("net.backlog", "backlog"))


@dataclass(frozen=True, slots=True)
class PrivEvent(SyscallEvent):
    """ptrace, mount, umount, unshare, setns, setuid, setgid, memfd, module. `details` holds
    the kind's own dotted fields (ptrace.request, mount.target, ns.types, cred.euid…)."""
    details: tuple[tuple[str, object], ...]

    def fields(self) -> dict:
        out = SyscallEvent.fields(self)
        out.update(self.details)
        return out

    def get(self, dotted: str):
        return dict(self.details).get(dotted)


EVENT_CLASSES = (ExecEvent, ForkEvent, ExitEvent, FileEvent, NetEvent, PrivEvent)
