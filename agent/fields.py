"""The field registry: every dotted field (`proc.exe`, `file.path`, `net.dport`, `k8s.ns`…)
declared once — its type, the event kinds that carry it, how to read it from an enriched
event, what it means, and where it goes in the gRPC message (mamori.v1.Alert).

Everything else is derived from this table:
  rules        agent/rules/fields.py: the fields a condition may name, and their getters
  alerts       Enriched.fields(): the snapshot an alert carries (and `mamori trace` prints)
  gRPC         agent/api/server.py to_proto(): each field at its place in the message, the
               ones without a typed place in Event.other by dotted name, as text
  docs         docs/fields.md, written by `python -m agent.fields > docs/fields.md`

tests/unit/test_field_registry.py checks that they agree.

A field is used one of four ways:
  ALL       rules, the alert snapshot and the proto
  RULE      rules only: derived from fields the snapshot already has (proc.exe_name is
            the base name of proc.exe), so alerts do not carry it twice
  SNAPSHOT  alerts and the proto only, with the reason rules cannot use it (`why`)
  MATCH     set on the alerts of threshold and sequence rules (what was counted, the
            earlier steps), not by the event: an output can name them, a condition cannot
  INTERNAL  the agent's own (cgroup.* of the discovery events it consumes itself): never
            printed, alerted on or matched
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Callable

from .sensor.layout import FAMILIES, KINDS
from .sensor.names import writable

STR, INT, BOOL, STRS, INTS, MAP = "string", "number", "boolean", "list of strings", \
    "list of numbers", "map"
ANCESTRY = "list of {pid, exe, exec_id, name}"
STEPS = "list of {event.kind, event.ts, proc.pid, …}"
LIST_TYPES = (STRS, INTS)

EVENT_KINDS = tuple(k for k in KINDS if not k.startswith("cgroup_"))
ALL_KINDS = frozenset(EVENT_KINDS)
SYSCALL_KINDS = ALL_KINDS - {"exec", "fork", "exit", "mmap_exec"}   # those with a result
MAPPING = frozenset({"mmap_exec"})      # reported at syscall entry: a syscall, no result
FILE = frozenset(FAMILIES["file"])
NET = frozenset(FAMILIES["net"])
CGROUP = frozenset({"cgroup_mkdir", "cgroup_rmdir"})

ALL, RULE, SNAPSHOT, INTERNAL = "all", "rule", "snapshot", "internal"
MATCH = "match"                # set by a threshold or sequence rule on its own alerts
OTHER = "event.other"          # proto: Event.other[dotted name], the value as text


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str
    kinds: frozenset
    get: Callable              # enriched event -> value (None: not known)
    section: str = ""          # docs/fields.md's section ("" for a rule's k8s.labels.<key>)
    doc: str = ""
    proto: object = OTHER      # a path in mamori.v1.Alert ("process.pid"), OTHER, or
    #                            ((kinds, path), …): the first whose kinds hold the event's
    use: str = ALL
    why: str = ""              # SNAPSHOT: why rules cannot use it

    @property
    def in_rules(self) -> bool:
        return self.use in (ALL, RULE)

    @property
    def in_snapshot(self) -> bool:
        return self.use in (ALL, SNAPSHOT)

    def proto_path(self, kind: str) -> str:
        """Where this field of an event of `kind` goes in mamori.v1.Alert."""
        p = self.proto
        if isinstance(p, str):
            return p
        for kinds, path in p:
            if kind in kinds:
                return path
        return OTHER


# -- getters ------------------------------------------------------------------------------

def _ev(attr):
    def get(item, _a=attr):
        return getattr(item.event, _a, None)
    return get


def _detail(name):
    def get(item, _n=name):
        ev = item.event
        return ev.get(_n) if hasattr(ev, "details") else None
    return get


def _per_item(fn):
    """fn(item), computed once for the item rules are evaluated on (several rules read
    proc.cmdline or proc.exe_name of one exec): the last item's value is kept. One slot,
    read and replaced whole, so a reader in another thread gets a pair that belongs
    together."""
    slot = [(None, None)]

    def get(item):
        last = slot[0]
        if last[0] is item:
            return last[1]
        v = fn(item)
        slot[0] = (item, v)
        return v
    return get


def _basename(path):
    return path.rsplit("/", 1)[-1] if path else path


def _own_proc(item):
    """file.path is below /proc/<the process's own pid>/ (its own memory, maps, environ;
    /proc/self and /proc/thread-self resolve there)."""
    p = getattr(item.event, "path", None)
    if not p or not p.startswith("/proc/"):
        return False
    return p[6:].split("/", 1)[0] == str(item.event.vpid)


_BARE_HOST = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3})(?::\d+)?(?:/|$)"      # 1.2.3.4[:p][/…]
                        r"|([a-z0-9-]+(?:\.[a-z0-9-]+)+)(?::\d+(?:/|$)|/)")  # a.tld:p, a.tld/…
_LOCAL_SUFFIXES = (".localhost", ".svc", ".cluster.local", ".local")


def _url_host(arg: str) -> str | None:
    """The host an argument names as a URL (`scheme://[user@]host[:port]/…`, or
    `host.tld/…`, `host:port/…`, `1.2.3.4` without a scheme, as curl and wget take them)."""
    a = arg[:512].lower()
    if "://" in a:
        a = a.split("://", 1)[1]
        a = a.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
        if a.startswith("["):
            return a[1:].split("]", 1)[0]
        return a.split(":", 1)[0] or None
    if a.startswith("-") or a.startswith("/") or a.startswith("."):
        return None
    m = _BARE_HOST.match(a)
    return (m.group(1) or m.group(2)) if m else None


def _remote(host: str) -> bool:
    """Does the host leave the pod and the cluster? Loopback, the unspecified address, and
    cluster names (one label — a Service in the namespace — or *.svc, *.cluster.local) do
    not."""
    if host in ("localhost", "::1", "0.0.0.0", "::", "ip6-localhost") or \
            host.startswith("127.") or host.endswith(_LOCAL_SUFFIXES):
        return False
    return "." in host or ":" in host


def _remote_hosts(item) -> tuple:
    out = []
    for arg in item.args[1:]:
        h = _url_host(arg)
        if h and _remote(h) and h not in out:
            out.append(h)
    return tuple(out)


def _container(attr):
    def get(item, _a=attr):
        c = item.container
        return getattr(c, _a) if c is not None else None
    return get


def _pod(attr, standalone_attr=None):
    def get(item, _a=attr, _s=standalone_attr):
        if item.pod is not None:
            return getattr(item.pod, _a)
        c = item.container
        if c is not None and _s and c.pod_name:
            return getattr(c, _s)
        return None
    return get


def _image(item):
    c, pc = item.container, item.pod_container
    if c is None:
        return None
    return pc.image if pc is not None and pc.image else c.image


def _image_id(item):
    c, pc = item.container, item.pod_container
    if c is None:
        return None
    return pc.image_id if pc is not None and pc.image_id else c.image_id


def _cname(item):
    c, pc = item.container, item.pod_container
    if c is None:
        return None
    return pc.name if pc is not None else c.name


def _drift(attr, own=None):
    """A drift.* field: from the drift stage's verdict (exec), else the event's own (mmap_exec:
    the kernel decides; attribute `own` of the event)."""
    def get(item, _a=attr, _o=own):
        d = getattr(item, "drift", None)
        if d is not None:
            return getattr(d, _a, None)
        return getattr(item.event, _o, None) if _o else None
    return get


def _utime_mtime(item):
    """utime events carry the mtime they set in the FileEvent's mode slot (None: not given)."""
    ev = item.event
    return ev.mode if ev.kind == "utime" else None


def _pexe(item):
    return item.ancestors[0][1] if item.ancestors else None


# -- the sections of docs/fields.md --------------------------------------------------------

SECTIONS = (
    ("event", "Every event", ""),
    ("context", "Context (every event `mamori run` reports)",
     "Added by the context stage from the process table, the container registry and the "
     "pod watch (`agent/context`)."),
    ("syscall", "Syscall events (every kind but exec, fork, exit; mmap_exec has "
     "`event.syscall` only)", ""),
    ("exec", "exec", ""),
    ("drift", "Drift (exec, mmap_exec)",
     "Set by the drift stage on an exec that runs a program or script not in the image, "
     "and by the kernel on mmap_exec (docs/drift.md says how each is decided)."),
    ("mmap", "mmap_exec",
     "Code mapped executable from a file that is drift (docs/drift.md): what the dynamic "
     "loader does with a program it is asked to run (`ld.so /tmp/x`) and with each library "
     "it loads (`LD_PRELOAD`, `dlopen`, ctypes). Reported at the syscall's entry, only for "
     "drift: the image's own libraries are never reported."),
    ("fork", "fork, exit", ""),
    ("file", "open, unlink, rename, chmod, mkdir, utime (file.path and file.path_truncated "
     "also on mmap_exec)", ""),
    ("net", "connect, accept, bind, listen", ""),
    ("priv", "ptrace, mount, umount, unshare, setns, setuid, setgid, memfd, module, "
     "io_uring, kill", ""),
    ("match", "Threshold and sequence rules (on their alerts)",
     "A rule with `threshold:` or `sequence:` (docs/rules.md, \"Rules over time\") adds "
     "these to the alert it raises, over the snapshot of the event that completed the "
     "match; its output can name them. Conditions cannot: they are the outcome of the "
     "match, not a property of the event."),
    ("cgroup", "cgroup_mkdir, cgroup_rmdir (container discovery)",
     "The agent's own discovery events. It consumes them itself (they are never printed, "
     "alerted on or matched by rules), so their fields are not listed here: the new or "
     "removed cgroup's id, its depth and its path below the cgroup2 root."),
)

_NOT_RULES = "the agent consumes discovery events itself"
_MATCH = "the outcome of a threshold or sequence match, not a property of the event"


def _nothing(item):
    return None
_UTIME = frozenset({"utime"})
_KILL = frozenset({"kill"})
_EXEC = frozenset({"exec"})
_DRIFT = _EXEC | MAPPING

_SPECS = (
    # name, type, kinds, getter, section, doc, [proto, [use, [why]]]
    ("event.kind", STR, ALL_KINDS | CGROUP, lambda i: i.event.kind, "event",
     "exec, fork, exit, mmap_exec, open, unlink, rename, chmod, mkdir, utime, connect, "
     "accept, bind, listen, ptrace, mount, umount, unshare, setns, setuid, setgid, memfd, "
     "module, io_uring, kill (and, for the agent's own discovery, cgroup_mkdir, "
     "cgroup_rmdir)",
     "event.kind"),
    ("event.ts", INT, ALL_KINDS | CGROUP, lambda i: i.event.ts, "event",
     "monotonic timestamp, ns (CLOCK_MONOTONIC)", "event.ts"),
    ("proc.pid", INT, ALL_KINDS | CGROUP, lambda i: i.event.pid, "event",
     "process id (thread group id) in the host pid namespace", "process.pid"),
    ("proc.tid", INT, ALL_KINDS | CGROUP, lambda i: i.event.tid, "event", "thread id"),
    ("proc.ppid", INT, ALL_KINDS | CGROUP, lambda i: i.event.ppid, "event",
     "parent's process id", "process.ppid"),
    ("proc.vpid", INT, ALL_KINDS | CGROUP, lambda i: i.event.vpid, "event",
     "process id inside the process's own pid namespace (what a container sees)"),
    ("proc.uid", INT, ALL_KINDS | CGROUP, lambda i: i.event.uid, "event", "real user id",
     "process.uid"),
    ("proc.gid", INT, ALL_KINDS | CGROUP, lambda i: i.event.gid, "event", "real group id"),
    ("proc.name", STR, ALL_KINDS | CGROUP, lambda i: i.name, "event",
     "the kernel's command name (comm, at most 15 characters); with context (`mamori run`, "
     "`mamori trace`), a program re-executed through `/proc/self/exe` (busybox applets, as "
     "in Alpine images) is named by the name it was run as (argv[0]) instead of `exe`",
     "process.name"),
    ("proc.exec_id", STR, ALL_KINDS, lambda i: i.exec_id or None, "event",
     "the process's identity for its whole life, across execs: `<boot>:<start tick>:<pid>` "
     "(the first 8 hex digits of the boot id, its start in clock ticks since boot as "
     "/proc/PID/stat field 22 gives it, its pid). A process that gets the pid after it "
     "has another; null when the process's start is not known (gone before it was seen)",
     "process.exec_id"),
    ("proc.cgroup_id", INT, ALL_KINDS | CGROUP, lambda i: i.event.cgroup_id, "event",
     "cgroup v2 id (the inode number of the cgroup directory)"),
    ("proc.pidns", INT, ALL_KINDS | CGROUP, lambda i: i.event.pidns, "event",
     "pid namespace inode number"),
    ("proc.mntns", INT, ALL_KINDS | CGROUP, lambda i: i.event.mntns, "event",
     "mount namespace inode number"),

    ("proc.exe", STR, ALL_KINDS, lambda i: i.exe, "context",
     "the process's program (for exec: the new program, from the kernel's `bprm->file`, "
     "symlinks resolved), as a path in the process's own mount namespace: inside a "
     "container, the path inside the container", "process.exe"),
    ("proc.exe_name", STR, ALL_KINDS, _per_item(lambda i: _basename(i.exe)), "context",
     "the base name of `proc.exe`", None, RULE),
    ("proc.args", STRS, ALL_KINDS, lambda i: i.args, "context",
     "argv, argv[0] included (for exec: the new program's; when it is longer than 4096 "
     "bytes, its first 3072 and its last 1024 bytes, each cut argument kept, cut, and of "
     "more than 64 arguments the first 48 and the last 16 — so what follows padding is "
     "seen)", "process.args"),
    ("proc.cmdline", STR, ALL_KINDS, _per_item(lambda i: " ".join(i.args)), "context",
     "`proc.args` joined by spaces", None, RULE),
    ("proc.remote_hosts", STRS, ALL_KINDS, _remote_hosts, "context",
     "the hosts the arguments name as URLs (`scheme://host…`, or `host.tld/…`, `host:port/…` "
     "and bare IPv4 addresses, as curl and wget take them) that are outside the pod and "
     "the cluster: not loopback, not a one-label Service name, not `*.svc`, "
     "`*.cluster.local`, `*.local`", None, RULE),
    ("proc.argc", INT, ALL_KINDS, lambda i: len(i.args), "context",
     "how many arguments `proc.args` has, argv[0] included (of a cut argv, the ones kept)",
     None, RULE),
    ("proc.cwd", STR, ALL_KINDS, lambda i: i.cwd, "context",
     "working directory, as the host sees it (empty when the process was gone before it "
     "could be read)", "process.cwd"),
    ("proc.ancestors", ANCESTRY, ALL_KINDS,
     lambda i: [{"pid": a[0], "exe": a[1], "exec_id": a[2], "name": a[3]}
                for a in i.ancestors],
     "context", "parent first: `[{\"pid\": …, \"exe\": …, \"exec_id\": …, \"name\": …}, "
     "…]` (name: what `proc.name` was for it), up to `context.ancestors_depth` (a parent "
     "whose pid a later process holds now ends it)",
     "process.ancestors", SNAPSHOT,
     "a list of records: rules use `proc.ancestors.pid`, `proc.ancestors.exe`, "
     "`proc.ancestors.name`, `proc.ancestors.comm` and `proc.ancestors.exec_id`"),
    ("proc.ancestors.pid", INTS, ALL_KINDS, lambda i: tuple(a[0] for a in i.ancestors),
     "context", "the ancestors' pids, parent first", None, RULE),
    ("proc.ancestors.exec_id", STRS, ALL_KINDS, lambda i: tuple(a[2] for a in i.ancestors),
     "context", "the ancestors' `proc.exec_id`, parent first", None, RULE),
    ("proc.ancestors.exe", STRS, ALL_KINDS, lambda i: tuple(a[1] for a in i.ancestors),
     "context", "the ancestors' programs, parent first", None, RULE),
    ("proc.ancestors.name", STRS, ALL_KINDS,
     lambda i: tuple(_basename(a[1]) for a in i.ancestors), "context",
     "the base names of the ancestors' programs", None, RULE),
    ("proc.ancestors.comm", STRS, ALL_KINDS, lambda i: tuple(a[3] for a in i.ancestors),
     "context", "what `proc.name` was for each ancestor, parent first (comm: a process can "
     "set its own, unlike `proc.ancestors.name`; a busybox applet by the name it was run "
     "as, where `proc.ancestors.name` says busybox)", None, RULE),
    ("proc.pexe", STR, ALL_KINDS, _pexe, "context", "the parent's program"),
    ("proc.pname", STR, ALL_KINDS, lambda i: _basename(_pexe(i)), "context",
     "the base name of the parent's program"),
    ("proc.pcomm", STR, ALL_KINDS, lambda i: i.ancestors[0][3] if i.ancestors else None,
     "context", "what `proc.name` is for the parent (see `proc.ancestors.comm`)", None, RULE),
    ("proc.runtime_setup", BOOL, ALL_KINDS, lambda i: i.runtime_setup, "context",
     "the process is the container runtime's own setup (`runc:[2:INIT]`…), not the "
     "workload: the kernel saw it moved into the container's cgroup from outside, and it "
     "has not executed a program since (never decided from comm or a file name)"),
    ("container.id", STR, ALL_KINDS, _container("id"), "context",
     "container id (null on the host)", "container.id"),
    ("container.runtime", STR, ALL_KINDS, _container("runtime"), "context",
     "containerd, cri-o, docker, podman, runc", "container.runtime"),
    ("container.cgroup", STR, ALL_KINDS, _container("cgroup_path"), "context",
     "the container's cgroup path below the cgroup2 root"),
    ("container.name", STR, ALL_KINDS, _cname, "context",
     "the container's name in its pod (from the API, else the runtime's annotations)",
     "container.name"),
    ("container.image", STR, ALL_KINDS, _image, "context",
     "image reference, e.g. `ghcr.io/acme/checkout:1.2`", "container.image"),
    ("container.image_id", STR, ALL_KINDS, _image_id, "context",
     "image digest as the kubelet reports it (`imageID`)", "container.image_digest"),
    ("k8s.ns", STR, ALL_KINDS, _pod("namespace", "pod_namespace"), "context",
     "the pod's namespace (from the API; standalone: from the runtime's annotations)",
     "pod.namespace"),
    ("k8s.pod", STR, ALL_KINDS, _pod("name", "pod_name"), "context",
     "the pod's name (from the API; standalone: from the runtime's annotations)",
     "pod.name"),
    ("k8s.pod_uid", STR, ALL_KINDS, _pod("uid", "pod_uid"), "context", "the pod's uid",
     "pod.uid"),
    ("k8s.labels", MAP, ALL_KINDS, lambda i: i.pod.labels if i.pod is not None else {},
     "context", "the pod's labels; in a rule `k8s.labels contains KEY` asks for a key and "
     "`k8s.labels.KEY` reads one label", "pod.labels"),
    ("k8s.owner_kind", STR, ALL_KINDS, _pod("owner_kind"), "context",
     "the kind of the pod's controller; a ReplicaSet is resolved to its Deployment",
     "pod.owner_kind"),
    ("k8s.owner_name", STR, ALL_KINDS, _pod("owner_name"), "context",
     "the name of the pod's controller", "pod.owner_name"),

    ("event.syscall", STR, SYSCALL_KINDS | MAPPING, _ev("syscall"), "syscall",
     "the exact syscall (openat, accept4, renameat2, …; mmap_exec: mmap, mprotect, "
     "pkey_mprotect, shmat)", "event.syscall"),
    ("event.result", INT, SYSCALL_KINDS, _ev("result"), "syscall",
     "the return value; negative errno on failure",
     ((FILE, "event.file.result"), (NET, "event.network.result"))),
    ("event.error", STR, SYSCALL_KINDS, _ev("error"), "syscall",
     "errno name when the call failed (ENOENT, EACCES, …), else null"),
    ("event.failed", BOOL, SYSCALL_KINDS, lambda i: getattr(i.event, "result", 0) < 0,
     "syscall", "`event.result` is negative", None, RULE),

    ("proc.euid", INT, _EXEC, _ev("euid"), "exec",
     "the effective user id the new program runs with: 0 for a setuid-root program, whoever "
     "ran it (`proc.uid` stays the real one)"),
    ("proc.egid", INT, _EXEC, _ev("egid"), "exec",
     "the effective group id the new program runs with (setgid programs)"),
    ("proc.exe_inode", INT, _EXEC, _ev("exe_inode"), "exec",
     "the program's inode (as `stat` reports `st_ino`)"),
    ("proc.exe_dev", INT, _EXEC, _ev("exe_dev"), "exec",
     "the program's device (as `stat` reports `st_dev`)"),
    ("proc.exe_fs", STR, _EXEC, _ev("exe_fs"), "exec",
     "filesystem type of the program (overlay, ext4, tmpfs, …)", "event.exec.exe_fs"),
    ("proc.exe_links", INT, _EXEC, _ev("exe_links"), "exec",
     "hard links left (0: the file was deleted)"),
    ("proc.exe_truncated", BOOL, _EXEC, _ev("exe_truncated"), "exec",
     "the path was deeper than the walk bound (32 entries)"),
    ("proc.exe_detached", BOOL, _EXEC, _ev("exe_detached"), "exec",
     "the program has no path to a root: a memfd or a detached tree"),
    ("proc.exe_upper_layer", BOOL, _EXEC, _ev("exe_upper"), "exec",
     "overlayfs: the program has a copy in the container's writable (upper) layer — "
     "created or changed since the container started"),
    ("proc.exe_lower_layer", BOOL, _EXEC, _ev("exe_lower"), "exec",
     "overlayfs: the program exists in an image (lower) layer"),
    ("exec.prevented", BOOL, _EXEC, _ev("prevented"), "exec",
     "drift prevention killed the program before its first instruction",
     "event.exec.prevented"),
    ("exec.filename", STR, _EXEC, _ev("filename"), "exec",
     "the path `execve` was asked to run (may be a symlink or `/proc/self/exe`)",
     "event.exec.filename"),
    ("proc.args_truncated", BOOL, _EXEC, _ev("args_truncated"), "exec",
     "argv was longer than 4096 bytes or 64 entries (the default rule \"Arguments too long "
     "to check in a container\" watches it for shells, download, archive, network and "
     "encoding tools and interpreters)"),
    ("proc.stdin", STR, _EXEC, _ev("stdin"), "exec",
     "what fd 0 is at exec: tty, pipe, socket, file, chardev, dir, none", "event.exec.stdin"),
    ("proc.stdout", STR, _EXEC, _ev("stdout"), "exec", "what fd 1 is, the same way",
     "event.exec.stdout"),
    ("proc.stderr", STR, _EXEC, _ev("stderr"), "exec", "what fd 2 is, the same way",
     "event.exec.stderr"),
    ("proc.stdin_path", STR, _EXEC, _ev("stdin_path"), "exec",
     "exec with stdin a regular file (`sh < script`): that file, resolved by the probe from "
     "fd 0 at exec (empty otherwise); drift judges an interpreter's stdin script from it"),

    ("drift.kind", STR, _DRIFT, _drift("kind", "drift_kind"), "drift",
     "new, modified, fileless, tmpfs, deleted; null when undecided (mmap_exec: the "
     "kernel's verdict; modified there is copied up and opened for writing since, not a "
     "comparison of contents)", "drift.kind"),
    ("drift.path", STR, _DRIFT, _drift("path", "drift_path"), "drift",
     "the drifted file as the container sees it, symbolic links resolved inside the "
     "container (mmap_exec: the same as `file.path`)", "drift.path"),
    ("drift.script", BOOL, _EXEC, _drift("script"), "drift",
     "the file is a script given to an interpreter (false for a program given to the "
     "loader)", "drift.script"),
    ("drift.size", INT, _EXEC, _drift("size"), "drift",
     "its size in bytes when the agent opened it (`st_size` of the descriptor it hashed)",
     "drift.size"),
    ("drift.sha256", STR, _EXEC, _drift("sha256"), "drift",
     "sha256 of the whole file, read from that one descriptor; empty when it was not "
     "hashed", "drift.sha256"),
    ("drift.hash_error", STR, _EXEC, _drift("hash_error"), "drift",
     "why `drift.sha256` is empty (docs/drift.md lists the values)"),
    ("drift.unknown_reason", STR, _DRIFT, _drift("unknown_reason", "drift_reason"), "drift",
     "why `drift.kind` is empty (mmap_exec, in an enforced container: a file on a mount "
     "that is neither the root overlay nor allowed, `mapped from a volume (ext4), not from "
     "the image`)", "drift.unknown_reason"),
    ("drift.prevented", BOOL, _DRIFT, _drift("prevented", "drift_prevented"), "drift",
     "the kernel killed the process before the program's first instruction (mmap_exec: "
     "before the mapped code could run)", "drift.prevented"),

    ("file.inode", INT, MAPPING, _ev("inode"), "mmap",
     "the mapped file's inode (as `stat` reports `st_ino`)"),
    ("file.dev", INT, MAPPING, _ev("dev"), "mmap",
     "its device (as `stat` reports `st_dev`)"),
    ("file.fs", STR, MAPPING, _ev("fs"), "mmap",
     "its filesystem type (overlay, ext4, tmpfs, …)"),
    ("file.links", INT, MAPPING, _ev("links"), "mmap", "hard links left (0: deleted)"),
    ("file.detached", BOOL, MAPPING, _ev("detached"), "mmap",
     "the file has no path to a root: a memfd, a SysV segment"),
    ("file.upper_layer", BOOL, MAPPING, _ev("upper"), "mmap",
     "overlayfs: it has a copy in the container's writable layer"),
    ("file.lower_layer", BOOL, MAPPING, _ev("lower"), "mmap",
     "overlayfs: it exists in an image layer"),
    ("mmap.prot", STRS, MAPPING, _ev("prot"), "mmap",
     "`PROT_*` asked for (`PROT_READ` alone when the process set `READ_IMPLIES_EXEC`)"),
    ("mmap.flags", STRS, MAPPING, _ev("mflags"), "mmap",
     "mmap's `MAP_*`; mprotect: the mapping's `MAP_SHARED` or `MAP_PRIVATE`"),
    ("mmap.fd", INT, MAPPING, _ev("fd"), "mmap",
     "mmap's file descriptor; -1 for mprotect; shmat: the segment id"),

    ("fork.child_pid", INT, frozenset({"fork"}), _ev("child_pid"), "fork",
     "the new process (threads are not reported)"),
    ("exit.code", INT, frozenset({"exit"}), _ev("code"), "fork",
     "exit status when the process exited normally, else null"),
    ("exit.signal", INT, frozenset({"exit"}), _ev("signal"), "fork",
     "the signal that killed it, 0 if none"),
    ("exit.core_dumped", BOOL, frozenset({"exit"}), _ev("core_dumped"), "fork",
     "a core was dumped"),

    ("file.path", STR, FILE | MAPPING, _ev("path"), "file",
     "the file the kernel resolved, as a path in the process's own mount namespace (inside "
     "a container, the path inside the container). A successful open (and fchmod, "
     "futimens): walked "
     "by the probe from the new descriptor's dentry and mount at syscall exit, so `//`, "
     "`.`, `..`, relative paths, symlinks, `/proc/self/root`, padding and a buffer "
     "rewritten during the call all give the file that was really opened. Otherwise "
     "(unlink, rename, chmod, mkdir and utime by path, a failed call): the requested path "
     "joined to the "
     "directory it starts from — the process's root, its working directory or `file.fd`'s "
     "directory, walked by the probe — and normalised (`//`, `.`, `..`; a symlink on the "
     "way is not followed). mmap_exec: the mapped file, walked like `proc.exe` (empty for "
     "a SysV segment)", ((FILE, "event.file.path"),)),
    ("file.name", STR, FILE | MAPPING, lambda i: _basename(getattr(i.event, "path", None)),
     "file", "the base name of `file.path`", None, RULE),
    ("file.requested_path", STR, FILE, _ev("requested_path"), "file",
     "the path exactly as the process passed it (empty for fchmod and futimens)",
     "event.file.requested_path"),
    ("file.resolved", BOOL, FILE, _ev("resolved"), "file",
     "`file.path` is the file the kernel opened (a successful open, fchmod or futimens)",
     "event.file.resolved"),
    ("file.own_proc", BOOL, FILE, _own_proc, "file",
     "`file.path` is below `/proc/<the process's own pid>/` (where `/proc/self` and "
     "`/proc/thread-self` resolve)", None, RULE),
    ("file.new_path", STR, frozenset({"rename"}), _ev("new_path"), "file",
     "rename: the target path, resolved as for rename's `file.path`", "event.file.new_path"),
    ("file.flags", STRS, FILE, _ev("flags"), "file",
     "open: `O_*` names; unlink: `AT_REMOVEDIR`; rename: `RENAME_*`; fchmodat2: `AT_*`; "
     "mkdir: none; utime: utimensat's `AT_*`, and `TIMES_GIVEN` when the call sets explicit "
     "times (utimensat: atime or mtime neither `UTIME_NOW` nor `UTIME_OMIT`; utimes, "
     "futimesat, utime: any times) rather than the current time (`touch f`: not given; "
     "`touch -d …`, `touch -r …`: given)", "event.file.flags"),
    ("file.mode", INT, FILE - _UTIME, _ev("mode"), "file",
     "permission bits asked for: open with `O_CREAT`/`O_TMPFILE`, chmod, mkdir (open and "
     "mkdir: before the umask)", "event.file.mode"),
    ("file.fd", INT, FILE, _ev("fd"), "file",
     "the directory fd paths are relative to (-100 is the working directory), or the fd of "
     "a call without a path (fchmod; utimensat and futimesat with a NULL path, as futimens "
     "does)"),
    ("file.path_truncated", BOOL, FILE | MAPPING, _ev("path_truncated"), "file",
     "`file.path` is only the end of the path: a resolved path longer than 511 bytes or 48 "
     "entries (its whole names from the file up are kept), or a requested path longer than "
     "255 bytes that could not be resolved (the default rule \"Path too long to check in a "
     "container\" watches it and `proc.exe_truncated`); mmap_exec: deeper than 32 entries"),
    ("file.setuid", BOOL, frozenset({"chmod"}),
     lambda i: bool(getattr(i.event, "mode", 0) & 0o4000), "file",
     "chmod: `file.mode` sets the set-user-id bit", None, RULE),
    ("file.setgid", BOOL, frozenset({"chmod"}),
     lambda i: bool(getattr(i.event, "mode", 0) & 0o2000), "file",
     "chmod: `file.mode` sets the set-group-id bit", None, RULE),
    ("utime.mtime", INT, _UTIME, _utime_mtime, "file",
     "utime: the modification time the call sets, in seconds since the epoch, when it "
     "gives it explicitly (`TIMES_GIVEN` and an mtime that is not `UTIME_NOW`/"
     "`UTIME_OMIT`); null otherwise — also when the times could not be read (`TIMES_GIVEN` "
     "then says only that times were passed). Times are read when the call starts; before "
     "1970 reads 0, after 2106 reads 4294967295"),
    ("file.writable", BOOL, frozenset({"open"}),
     lambda i: i.event.kind == "open" and writable(i.event.flags), "file",
     "open: `file.flags` write, create, truncate or append", None, RULE),

    ("net.family", STR, NET, _ev("family"), "net", "inet, inet6, unix",
     "event.network.family"),
    ("net.protocol", STR, NET, _ev("protocol"), "net", "tcp, udp, icmp, …",
     "event.network.protocol"),
    ("net.type", STR, NET, _ev("sock_type"), "net", "stream, dgram, raw, seqpacket"),
    ("net.saddr", STR, NET, _ev("saddr"), "net",
     "local address (bind: the address asked for)", "event.network.saddr"),
    ("net.sport", INT, NET, _ev("sport"), "net", "local port", "event.network.sport"),
    ("net.daddr", STR, NET, _ev("daddr"), "net",
     "remote address (connect: the address asked for; accept: the peer)",
     "event.network.daddr"),
    ("net.dport", INT, NET, _ev("dport"), "net", "remote port", "event.network.dport"),
    ("net.path", STR, NET, _ev("unix_path"), "net", "unix socket path",
     "event.network.path"),
    ("net.fd", INT, NET, _ev("fd"), "net",
     "the socket (accept: the listening socket; the new one is `event.result`)"),
    ("net.backlog", INT, NET, _ev("backlog"), "net", "listen's backlog"),

    ("ptrace.request", STR, frozenset({"ptrace"}), _detail("ptrace.request"), "priv",
     "PTRACE_ATTACH, PTRACE_POKETEXT, …"),
    ("ptrace.target", INT, frozenset({"ptrace"}), _detail("ptrace.target"), "priv",
     "the traced pid"),
    ("mount.source", STR, frozenset({"mount"}), _detail("mount.source"), "priv",
     "mount's source"),
    ("mount.target", STR, frozenset({"mount", "umount"}), _detail("mount.target"), "priv",
     "mount's (umount's) target"),
    ("mount.fstype", STR, frozenset({"mount"}), _detail("mount.fstype"), "priv",
     "mount's filesystem type"),
    ("mount.flags", STRS, frozenset({"mount", "umount"}), _detail("mount.flags"), "priv",
     "`MS_*` names (umount: `MNT_*`)"),
    ("ns.types", STRS, frozenset({"unshare", "setns"}), _detail("ns.types"), "priv",
     "namespaces unshared or joined: mnt, net, pid, user, uts, ipc, cgroup, time (unshare "
     "may add files, fs, sysvsem)"),
    ("ns.fd", INT, frozenset({"setns"}), _detail("ns.fd"), "priv",
     "setns's namespace fd"),
    ("cred.ruid", INT, frozenset({"setuid"}), _detail("cred.ruid"), "priv",
     "real uid a setuid-family call sets (null: left unchanged)"),
    ("cred.euid", INT, frozenset({"setuid"}), _detail("cred.euid"), "priv",
     "effective uid it sets; `setuid(u)` is reported as `cred.euid`"),
    ("cred.suid", INT, frozenset({"setuid"}), _detail("cred.suid"), "priv",
     "saved uid it sets"),
    ("cred.fsuid", INT, frozenset({"setuid"}), _detail("cred.fsuid"), "priv",
     "filesystem uid (setfsuid)"),
    ("cred.caller_euid", INT, frozenset({"setuid", "setgid"}), _detail("cred.caller_euid"),
     "priv", "the caller's effective uid when it made the call: not 0 for a process that was "
     "not root (`proc.uid` is the real uid, read as the call returns)"),
    ("cred.rgid", INT, frozenset({"setgid"}), _detail("cred.rgid"), "priv",
     "real gid a setgid-family call sets (null: left unchanged)"),
    ("cred.egid", INT, frozenset({"setgid"}), _detail("cred.egid"), "priv",
     "effective gid it sets"),
    ("cred.sgid", INT, frozenset({"setgid"}), _detail("cred.sgid"), "priv",
     "saved gid it sets"),
    ("cred.fsgid", INT, frozenset({"setgid"}), _detail("cred.fsgid"), "priv",
     "filesystem gid (setfsgid)"),
    ("memfd.name", STR, frozenset({"memfd"}), _detail("memfd.name"), "priv",
     "memfd_create's name"),
    ("memfd.flags", STRS, frozenset({"memfd"}), _detail("memfd.flags"), "priv",
     "memfd_create's `MFD_*` flags"),
    ("module.params", STR, frozenset({"module"}), _detail("module.params"), "priv",
     "init_module/finit_module parameters"),
    ("module.fd", INT, frozenset({"module"}), _detail("module.fd"), "priv",
     "finit_module's fd (null for init_module)"),
    ("signal.target", INT, _KILL, _detail("signal.target"), "priv",
     "kill: the pid as passed, signed (-1: every process the sender may signal, 0: its own "
     "process group, below -1: the process group -N); tkill: the thread; tgkill: the "
     "thread group. A number in the sender's pid namespace: compare it with `proc.vpid`, not "
     "`proc.pid` (in a container, 1 is the container's first process). Signal 0 (does it "
     "exist?) is not reported"),
    ("signal.number", INT, _KILL, _detail("signal.number"), "priv",
     "the signal sent (9, 15, …)"),
    ("signal.name", STR, _KILL, _detail("signal.name"), "priv",
     "its name: `SIGKILL`, `SIGTERM`, `SIGSTOP`, real-time ones as `SIGRTMIN+N` / "
     "`SIGRTMAX-N` (as `kill -l`); a number that is no signal as itself"),
    ("io_uring.entries", INT, frozenset({"io_uring"}), _detail("io_uring.entries"), "priv",
     "io_uring_setup: the ring's entries asked for"),
    ("io_uring.flags", STRS, frozenset({"io_uring"}), _detail("io_uring.flags"), "priv",
     "its `IORING_SETUP_*` flags (what is submitted through the ring is not traced one "
     "operation at a time: see docs/drift.md)"),

    ("match.count", INT, ALL_KINDS, _nothing, "match",
     "threshold: the events (or distinct values) counted when it fired; sequence: its "
     "steps", OTHER, MATCH, _MATCH),
    ("match.within", STR, ALL_KINDS, _nothing, "match", "the rule's window, as written "
     "(`2s`)", OTHER, MATCH, _MATCH),
    ("match.first_ts", INT, ALL_KINDS, _nothing, "match",
     "`event.ts` of the first event counted (threshold) or of the first step (sequence)",
     OTHER, MATCH, _MATCH),
    ("match.group", MAP, ALL_KINDS, _nothing, "match",
     "the `group_by` fields and their values, e.g. `{\"container.id\": \"…\"}`", OTHER,
     MATCH, _MATCH),
    ("match.field", STR, ALL_KINDS, _nothing, "match",
     "threshold with `distinct:`: the field whose values were counted", OTHER, MATCH,
     _MATCH),
    ("match.values", STRS, ALL_KINDS, _nothing, "match",
     "threshold with `distinct:`: the first 16 distinct values (each cut at 256 "
     "characters)", OTHER, MATCH, _MATCH),
    ("match.steps", STEPS, ALL_KINDS, _nothing, "match",
     "sequence: the earlier steps' events, first first, each with `event.kind`, `event.ts`, "
     "`proc.pid`, `proc.exec_id`, `proc.exe`, `proc.cmdline` and `file.path`, "
     "`file.new_path`, `net.daddr`, `net.dport` where its kind has them (the last step is "
     "the alert's own event)", OTHER, MATCH, _MATCH),

    ("cgroup.id", INT, CGROUP, _ev("id"), "cgroup",
     "the cgroup's id (inode number of its cgroup2 directory)", None, INTERNAL, _NOT_RULES),
    ("cgroup.level", INT, CGROUP, _ev("level"), "cgroup",
     "depth below the cgroup2 root (the root is 0)", None, INTERNAL, _NOT_RULES),
    ("cgroup.path", STR, CGROUP, _ev("path"), "cgroup",
     "path below the cgroup2 root, e.g. `/kubepods/besteffort/pod…/<id>`", None, INTERNAL,
     _NOT_RULES),
)


def _field(spec) -> Field:
    name, typ, kinds, get, section, doc, *rest = spec
    return Field(name, typ, frozenset(kinds), get, section, doc, *rest)


REGISTRY: dict[str, Field] = {}
for _s in _SPECS:
    _f = _field(_s)
    if _f.name in REGISTRY:
        raise AssertionError(f"field {_f.name} declared twice")
    REGISTRY[_f.name] = _f

# per kind, the fields an alert's snapshot carries, in registry order
SNAPSHOT_FIELDS: dict[str, tuple[Field, ...]] = {
    k: tuple(f for f in REGISTRY.values() if f.in_snapshot and k in f.kinds)
    for k in EVENT_KINDS}


def snapshot(item) -> dict:
    """The event's fields under their dotted names: what an alert carries."""
    return {f.name: f.get(item) for f in SNAPSHOT_FIELDS[item.event.kind]}


# -- docs/fields.md -------------------------------------------------------------------------

_USE_DOC = {ALL: "rules, alerts, gRPC", RULE: "rules only",
            MATCH: "alerts of threshold and sequence rules, gRPC; outputs"}
_TYPE_DOC = {STR: "string", INT: "number", BOOL: "boolean", STRS: "strings",
             INTS: "numbers", MAP: "map", ANCESTRY: "list",
             STEPS: "list"}


def _proto_doc(f: Field) -> str:
    if not f.in_snapshot and f.use != MATCH:
        return "—"
    if isinstance(f.proto, str):
        return "`other`" if f.proto == OTHER else f"`{f.proto}`"
    return ", ".join(f"`{p}`" for _, p in f.proto) + ", else `other`"


def markdown() -> str:
    """docs/fields.md, from the registry."""
    out = ["# Event fields", "",
           "One vocabulary everywhere: these dotted names mean the same thing in `mamori "
           "trace` output, rules, alerts, the gRPC API and these docs. They are declared "
           "once, in `agent/fields.py`, and this page is written from it (`python -m "
           "agent.fields > docs/fields.md`); a test checks that rules, the alert snapshot, "
           "the gRPC mapping and this page agree.", "",
           "**Used in**: *rules, alerts, gRPC* — a rule can test it, every alert carries it "
           "and the gRPC message has it; *rules only* — derived from fields alerts already "
           "carry, so alerts do not repeat it; *alerts, gRPC* — carried, but not for rules "
           "(the reason is given). **gRPC** is where it is in `mamori.v1.Alert` "
           "(proto/mamori/v1/alerts.proto); `other` is `event.other`, the map of every field "
           "without a typed place, by dotted name, the value as text.", ""]
    for key, title, intro in SECTIONS:
        fields = [f for f in REGISTRY.values() if f.section == key and f.use != INTERNAL]
        out += [f"## {title}", ""]
        if intro:
            out += [intro, ""]
        if not fields:
            continue
        out += ["| field | type | meaning | used in | gRPC |", "|---|---|---|---|---|"]
        for f in fields:
            use = _USE_DOC.get(f.use) or f"alerts, gRPC (not rules: {f.why})"
            out.append(f"| `{f.name}` | {_TYPE_DOC[f.type]} | {f.doc} | {use} | "
                       f"{_proto_doc(f)} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(markdown())
