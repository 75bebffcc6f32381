"""The fields a rule can use: type, the event kinds that carry them, and how to read each
from an enriched event without building the whole field dict (rules touch a few fields of
each event; building all forty costs more than evaluating the rules)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..sensor.layout import FAMILIES, KINDS
from ..sensor.names import writable

STR, INT, BOOL, STRS, INTS, MAP = "string", "number", "boolean", "list of strings", \
    "list of numbers", "map"
LIST_TYPES = (STRS, INTS)

EVENT_KINDS = tuple(k for k in KINDS if not k.startswith("cgroup_"))
ALL = frozenset(EVENT_KINDS)
SYSCALL_KINDS = ALL - {"exec", "fork", "exit", "mmap_exec"}   # those with a result
MAPPING = frozenset({"mmap_exec"})      # reported at syscall entry: a syscall, no result
FILE = frozenset(FAMILIES["file"])
NET = frozenset(FAMILIES["net"])


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str
    kinds: frozenset
    get: Callable


def _ev(attr):
    def get(item, _a=attr):
        return getattr(item.event, _a, None)
    return get


def _detail(name):
    def get(item, _n=name):
        ev = item.event
        return ev.get(_n) if hasattr(ev, "details") else None
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


_SPECS = [
    # event
    ("event.kind", STR, ALL, lambda i: i.event.kind),
    ("event.ts", INT, ALL, lambda i: i.event.ts),
    ("event.syscall", STR, SYSCALL_KINDS | MAPPING, _ev("syscall")),
    ("event.result", INT, SYSCALL_KINDS, _ev("result")),
    ("event.error", STR, SYSCALL_KINDS, _ev("error")),
    ("event.failed", BOOL, SYSCALL_KINDS, lambda i: getattr(i.event, "result", 0) < 0),
    # process
    ("proc.pid", INT, ALL, lambda i: i.event.pid),
    ("proc.tid", INT, ALL, lambda i: i.event.tid),
    ("proc.ppid", INT, ALL, lambda i: i.event.ppid),
    ("proc.vpid", INT, ALL, lambda i: i.event.vpid),
    ("proc.uid", INT, ALL, lambda i: i.event.uid),
    ("proc.gid", INT, ALL, lambda i: i.event.gid),
    ("proc.name", STR, ALL, lambda i: i.name),
    ("proc.cgroup_id", INT, ALL, lambda i: i.event.cgroup_id),
    ("proc.pidns", INT, ALL, lambda i: i.event.pidns),
    ("proc.mntns", INT, ALL, lambda i: i.event.mntns),
    ("proc.exe", STR, ALL, lambda i: i.exe),
    ("proc.exe_name", STR, ALL, lambda i: _basename(i.exe)),
    ("proc.args", STRS, ALL, lambda i: i.args),
    ("proc.cmdline", STR, ALL, lambda i: " ".join(i.args)),
    ("proc.cwd", STR, ALL, lambda i: i.cwd),
    ("proc.pexe", STR, ALL, lambda i: i.ancestors[0][1] if i.ancestors else None),
    ("proc.pname", STR, ALL, lambda i: _basename(i.ancestors[0][1]) if i.ancestors else None),
    ("proc.ancestors.exe", STRS, ALL, lambda i: tuple(a[1] for a in i.ancestors)),
    ("proc.ancestors.name", STRS, ALL, lambda i: tuple(_basename(a[1]) for a in i.ancestors)),
    ("proc.runtime_setup", BOOL, ALL, lambda i: i.runtime_setup),
    ("proc.exe_inode", INT, {"exec"}, _ev("exe_inode")),
    ("proc.exe_fs", STR, {"exec"}, _ev("exe_fs")),
    ("proc.exe_links", INT, {"exec"}, _ev("exe_links")),
    ("proc.exe_detached", BOOL, {"exec"}, _ev("exe_detached")),
    ("proc.args_truncated", BOOL, {"exec"}, _ev("args_truncated")),
    ("proc.exe_truncated", BOOL, {"exec"}, _ev("exe_truncated")),
    ("proc.stdin", STR, {"exec"}, _ev("stdin")),
    ("proc.stdout", STR, {"exec"}, _ev("stdout")),
    ("proc.stdin_path", STR, {"exec"}, _ev("stdin_path")),
    ("proc.stderr", STR, {"exec"}, _ev("stderr")),
    ("exec.filename", STR, {"exec"}, _ev("filename")),
    ("fork.child_pid", INT, {"fork"}, _ev("child_pid")),
    ("exit.code", INT, {"exit"}, _ev("code")),
    ("exit.signal", INT, {"exit"}, _ev("signal")),
    # files
    ("file.path", STR, FILE | MAPPING, _ev("path")),
    ("file.name", STR, FILE | MAPPING, lambda i: _basename(getattr(i.event, "path", None))),
    ("file.new_path", STR, {"rename"}, _ev("new_path")),
    ("file.flags", STRS, FILE, _ev("flags")),
    ("file.mode", INT, FILE, _ev("mode")),
    ("file.path_truncated", BOOL, FILE | MAPPING, _ev("path_truncated")),
    ("file.requested_path", STR, FILE, _ev("requested_path")),
    ("file.resolved", BOOL, FILE, _ev("resolved")),
    ("file.own_proc", BOOL, FILE, _own_proc),
    ("file.fd", INT, FILE, _ev("fd")),
    ("file.setuid", BOOL, {"chmod"}, lambda i: bool(getattr(i.event, "mode", 0) & 0o4000)),
    ("file.setgid", BOOL, {"chmod"}, lambda i: bool(getattr(i.event, "mode", 0) & 0o2000)),
    ("file.writable", BOOL, {"open"},
     lambda i: i.event.kind == "open" and writable(i.event.flags)),
    # code mapped executable (mmap_exec): the mapped file, and the mapping
    ("file.inode", INT, MAPPING, _ev("inode")),
    ("file.dev", INT, MAPPING, _ev("dev")),
    ("file.fs", STR, MAPPING, _ev("fs")),
    ("file.links", INT, MAPPING, _ev("links")),
    ("file.detached", BOOL, MAPPING, _ev("detached")),
    ("file.upper_layer", BOOL, MAPPING, _ev("upper")),
    ("file.lower_layer", BOOL, MAPPING, _ev("lower")),
    ("mmap.prot", STRS, MAPPING, _ev("prot")),
    ("mmap.flags", STRS, MAPPING, _ev("mflags")),
    ("mmap.fd", INT, MAPPING, _ev("fd")),
    # network
    ("net.family", STR, NET, _ev("family")),
    ("net.protocol", STR, NET, _ev("protocol")),
    ("net.type", STR, NET, _ev("sock_type")),
    ("net.saddr", STR, NET, _ev("saddr")),
    ("net.sport", INT, NET, _ev("sport")),
    ("net.daddr", STR, NET, _ev("daddr")),
    ("net.dport", INT, NET, _ev("dport")),
    ("net.path", STR, NET, _ev("unix_path")),
    ("net.fd", INT, NET, _ev("fd")),
    # privilege and escape
    ("ptrace.request", STR, {"ptrace"}, _detail("ptrace.request")),
    ("ptrace.target", INT, {"ptrace"}, _detail("ptrace.target")),
    ("mount.source", STR, {"mount"}, _detail("mount.source")),
    ("mount.target", STR, {"mount", "umount"}, _detail("mount.target")),
    ("mount.fstype", STR, {"mount"}, _detail("mount.fstype")),
    ("mount.flags", STRS, {"mount", "umount"}, _detail("mount.flags")),
    ("ns.types", STRS, {"unshare", "setns"}, _detail("ns.types")),
    ("ns.fd", INT, {"setns"}, _detail("ns.fd")),
    ("cred.ruid", INT, {"setuid"}, _detail("cred.ruid")),
    ("cred.euid", INT, {"setuid"}, _detail("cred.euid")),
    ("cred.suid", INT, {"setuid"}, _detail("cred.suid")),
    ("cred.fsuid", INT, {"setuid"}, _detail("cred.fsuid")),
    ("cred.rgid", INT, {"setgid"}, _detail("cred.rgid")),
    ("cred.egid", INT, {"setgid"}, _detail("cred.egid")),
    ("cred.sgid", INT, {"setgid"}, _detail("cred.sgid")),
    ("memfd.name", STR, {"memfd"}, _detail("memfd.name")),
    ("memfd.flags", STRS, {"memfd"}, _detail("memfd.flags")),
    ("module.params", STR, {"module"}, _detail("module.params")),
    ("io_uring.entries", INT, {"io_uring"}, _detail("io_uring.entries")),
    ("io_uring.flags", STRS, {"io_uring"}, _detail("io_uring.flags")),
    # container and pod
    ("container.id", STR, ALL, _container("id")),
    ("container.runtime", STR, ALL, _container("runtime")),
    ("container.cgroup", STR, ALL, _container("cgroup_path")),
    ("container.name", STR, ALL, _cname),
    ("container.image", STR, ALL, _image),
    ("container.image_id", STR, ALL, _image_id),
    ("k8s.ns", STR, ALL, _pod("namespace", "pod_namespace")),
    ("k8s.pod", STR, ALL, _pod("name", "pod_name")),
    ("k8s.pod_uid", STR, ALL, _pod("uid", "pod_uid")),
    ("k8s.labels", MAP, ALL, lambda i: i.pod.labels if i.pod is not None else {}),
    ("k8s.owner_kind", STR, ALL, _pod("owner_kind")),
    ("k8s.owner_name", STR, ALL, _pod("owner_name")),
    # drift (filled by the drift stage on exec events; decided by the kernel on mmap_exec)
    ("drift.kind", STR, {"exec"} | MAPPING, _drift("kind", "drift_kind")),
    ("drift.path", STR, {"exec"} | MAPPING, _drift("path", "drift_path")),
    ("drift.sha256", STR, {"exec"}, _drift("sha256")),
    ("drift.size", INT, {"exec"}, _drift("size")),
    ("drift.unknown_reason", STR, {"exec"} | MAPPING, _drift("unknown_reason", "drift_reason")),
    ("drift.prevented", BOOL, {"exec"} | MAPPING, _drift("prevented", "drift_prevented")),
    ("drift.script", BOOL, {"exec"}, _drift("script")),
    ("drift.hash_error", STR, {"exec"}, _drift("hash_error")),
]

FIELDS: dict[str, Field] = {n: Field(n, t, frozenset(k), g) for n, t, k, g in _SPECS}


def lookup(name: str) -> Field | None:
    """A field by name; `k8s.labels.<key>` gives one label (a string field)."""
    f = FIELDS.get(name)
    if f is not None:
        return f
    if name.startswith("k8s.labels.") and len(name) > len("k8s.labels."):
        key = name[len("k8s.labels."):]

        def get(item, _k=key):
            return item.pod.labels.get(_k) if item.pod is not None else None
        return Field(name, STR, ALL, get)
    return None
