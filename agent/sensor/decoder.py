"""Raw ring-buffer records -> typed events. The formats come from layout.py, the same
source the C header is generated from."""
from __future__ import annotations

import ipaddress

from . import layout, names
from .events import (CgroupEvent, ExecEvent, ExitEvent, FileEvent, ForkEvent, MmapEvent,
                     NetEvent, PrivEvent)

_HDR = layout.HEADER_STRUCT
_HDR_SIZE = layout.sizeof("event_hdr")
_BODY = {name: layout.body_struct(name) for name in layout.STRUCTS}
_SIZE = {name: layout.min_size(name) for name in layout.STRUCTS}
_TAIL = {name: layout.offsets(name)[m] for name, m in layout.VARIABLE_TAIL.items()}
_KIND_NAME = {i: k for k, i in layout.KIND_ID.items()}
_STRUCT_OF = {layout.KIND_ID[k]: s for k, s in layout.STRUCT_OF_KIND.items()}
_SYSCALL_NAME = {i: s for s, i in layout.SYSCALL_ID.items()}
_F = layout.FLAGS
_NAME_LEN = layout.NAME_LEN


class MalformedEvent(ValueError):
    """A record that does not match any event layout. Counted and skipped, never fatal."""


_tnew = tuple.__new__   # builds an event positionally, without NamedTuple's keyword __new__


def text(raw: bytes) -> str:
    """A NUL-terminated C string. Bytes that are not UTF-8 are kept, escaped as \\xNN."""
    end = raw.find(b"\0")
    if end >= 0:
        raw = raw[:end]
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


_comms: dict[bytes, str] = {}


def _comm(raw: bytes) -> str:
    """comm values repeat: decode each once (bounded cache)."""
    s = _comms.get(raw)
    if s is None:
        s = text(raw)
        if len(_comms) < 8192:
            _comms[raw] = s
    return s


def _addr(raw: bytes, family: int) -> str:
    if family == 2:
        return str(ipaddress.IPv4Address(raw[:4]))
    if family == 10:
        return str(ipaddress.IPv6Address(raw))
    return ""


def decode(raw: bytes):
    if len(raw) < _HDR_SIZE:
        raise MalformedEvent(f"record of {len(raw)} bytes is shorter than the header")
    (ts, cgroup_id, kind_id, pid, tid, ppid, uid, gid, pidns, mntns, vpid, flags,
     comm) = _HDR.unpack_from(raw, 0)
    sname = _STRUCT_OF.get(kind_id)
    if sname is None:
        raise MalformedEvent(f"unknown event kind {kind_id}")
    if len(raw) < _SIZE[sname]:
        raise MalformedEvent(f"{_KIND_NAME[kind_id]} record of {len(raw)} bytes, "
                             f"expected at least {_SIZE[sname]}")
    kind = _KIND_NAME[kind_id]
    common = (kind, ts, pid, tid, ppid, vpid, uid, gid, _comm(comm), cgroup_id, pidns, mntns)
    body = _BODY[sname].unpack_from(raw, _HDR_SIZE)
    tail = _TAIL.get(sname)
    if tail is not None:
        body += (raw[tail:],)
    return _DECODERS[sname](common, flags, body)


def _exec(common, flags, b) -> ExecEvent:
    (start, ino, dev, fs_magic, nlink, _mode, m0, m1, m2, r0, r1, r2, args_len, depth, ovl,
     total, euid, egid,
     s_ino, s_dev, s_magic, s_nlink, s_ovl, filename, comps, args, s_path) = b
    exe = _path(comps, depth)
    argv = args[:min(args_len, layout.ARGS_LEN)]
    args_truncated = bool(flags & _F["TRUNC_ARGS"])
    if args_truncated and total > layout.ARGS_LEN and len(argv) == layout.ARGS_LEN:
        # its head and its tail (bpf/process.c): each part's cut argument is kept
        cut = layout.ARGS_LEN - layout.ARGS_TAIL
        arglist = _argv(argv[:cut]) + _argv(argv[cut:])
    else:
        arglist = _argv(argv)
    if len(arglist) > layout.MAX_ARGS:             # the first ones and the last ones
        keep = layout.MAX_ARGS - layout.MAX_ARGS_TAIL
        arglist = arglist[:keep] + arglist[-layout.MAX_ARGS_TAIL:]
        args_truncated = True
    return _tnew(ExecEvent, common + (
        exe, ino, names.user_dev(dev), names.FS_MAGIC.get(fs_magic, f"{fs_magic:#x}"), nlink,
        bool(flags & _F["TRUNC_PATH"]), bool(flags & _F["EXE_UNREACHABLE"]),
        bool(ovl & layout.OVL_UPPER), bool(ovl & layout.OVL_LOWER),
        bool(flags & _F["PREVENTED"]), text(filename),
        tuple(arglist), args_truncated, names.fd_kind(m0, r0), names.fd_kind(m1, r1),
        names.fd_kind(m2, r2), text(s_path) if s_ino else "",
        (s_ino, names.user_dev(s_dev), names.FS_MAGIC.get(s_magic, f"{s_magic:#x}"), s_nlink,
         bool(s_ovl & layout.OVL_UPPER), bool(s_ovl & layout.OVL_LOWER)) if s_ino else None,
        start, euid, egid))


def _argv(block: bytes) -> list[str]:
    """NUL-separated arguments (the last one's NUL may be missing: cut there)."""
    if block.endswith(b"\0"):
        block = block[:-1]
    return [text(a) for a in block.split(b"\0")] if block else []


def _path(comps: bytes, depth: int) -> str:
    """A dentry walk (leaf first, an empty slot for each mount crossed) as a path."""
    depth = min(depth, layout.PATH_DEPTH)
    parts = [text(comps[i * _NAME_LEN:(i + 1) * _NAME_LEN]) for i in range(depth - 1, -1, -1)]
    return "/" + "/".join(p for p in parts if p)


_D = layout.DRIFT


def mapping_drift(drift: int, detached: bool, fs: str, path: str) -> tuple:
    """(drift.kind, drift.unknown_reason) from the kernel's DRIFT_* bits, in the order the exec
    drift stage decides (agent/drift/detector.py): fileless, deleted, tmpfs, new, modified.
    `modified` here is the kernel's test — copied up and opened for writing since, not found
    unchanged since — not a comparison of contents."""
    if detached:
        memory = drift & _D["MEMFS"] or path.rsplit("/", 1)[-1].startswith("memfd:")
        return ("fileless" if memory else "deleted"), None
    if drift & _D["DELETED"]:
        return "deleted", None
    if drift & _D["MEMFS"]:
        return "tmpfs", None
    if drift & _D["UPPER_ONLY"]:
        return "new", None
    if drift & _D["WRITTEN"]:
        return "modified", None
    if drift & _D["OTHER_FS"]:
        return None, f"mapped from a volume ({fs}), not from the image"
    return None, None


def _mmap(common, flags, b) -> MmapEvent:
    ino, dev, fs_magic, nlink, ovl, drift, prot, mflags, sys_id, fd, depth, comps = b
    detached = bool(flags & _F["EXE_UNREACHABLE"])
    path = _path(comps, depth) if depth else ""
    fs = names.FS_MAGIC.get(fs_magic, f"{fs_magic:#x}") if fs_magic else ""
    kind, reason = mapping_drift(drift, detached, fs, path)
    return _tnew(MmapEvent, common + (
        _SYSCALL_NAME.get(sys_id, str(sys_id)), path, ino, names.user_dev(dev) if dev else 0,
        fs, nlink, bool(flags & _F["TRUNC_PATH"]), detached, bool(ovl & layout.OVL_UPPER),
        bool(ovl & layout.OVL_LOWER), names.bit_names(prot, names.PROT_FLAGS),
        names.map_flags(mflags), fd, kind, path, reason, bool(flags & _F["PREVENTED"])))


def _fork(common, flags, b) -> ForkEvent:
    return _tnew(ForkEvent, common + (b[0], b[2]))


def _exit(common, flags, b) -> ExitEvent:
    code = b[0]
    sig = code & 0x7F
    return _tnew(ExitEvent, common + (None if sig else (code >> 8) & 0xFF, sig,
                                      bool(code & 0x80)))


def _syscall(sys_id: int, ret: int) -> tuple[str, int, str | None]:
    return _SYSCALL_NAME.get(sys_id, str(sys_id)), ret, (names.errno_name(ret) if ret < 0
                                                         else None)


def _file(common, flags, b) -> FileEvent:
    ret, fd, sys_id, fflags, mode, path, rpath = b
    kind = common[0]
    if kind == "open":
        fnames = names.open_flags(fflags)
        mode = mode & 0o7777 if fflags & (0o100 | 0o20000000) else 0  # O_CREAT, O_TMPFILE
    elif kind == "unlink":
        fnames = names.bit_names(fflags, names.UNLINK_FLAGS)
    elif kind == "utime":
        # flags: AT_* and layout.UTIME_FLAGS; mode: the mtime set (u32 seconds), when given
        mode = mode if fflags & _MTIME_GIVEN else None
        fnames = names.bit_names(fflags & ~_MTIME_GIVEN, names.UTIME_FLAGS)
    else:   # chmod, mkdir (no flags)
        fnames = names.bit_names(fflags, names.CHMOD_FLAGS)
        mode &= 0o7777
    requested = text(path)
    resolved = bool(flags & _F["RESOLVED"])
    if resolved:
        where, cut = text(rpath), bool(flags & _F["TRUNC_RPATH"])
    else:
        where, cut = joined(text(rpath), requested), bool(flags & _TRUNC_ANY)
    return _tnew(FileEvent, common + _syscall(sys_id, ret) + (
        where, None, fnames, mode, fd, cut, requested, resolved))


_TRUNC_ANY = _F["TRUNC_PATH"] | _F["TRUNC_PATH2"] | _F["TRUNC_RPATH"]
_MTIME_GIVEN = layout.UTIME_FLAGS["MTIME_GIVEN"]


def joined(base: str, requested: str) -> str:
    """A requested path joined to the directory the kernel said it starts from (root for an
    absolute path, cwd or dirfd for a relative one) and normalised: `//`, `.` and `..` (at
    the root `..` stays there), as the kernel walks them when no symlink is on the way.
    Without a start directory (gone before the walk) an absolute path is still normalised;
    a relative one is kept as it was."""
    if not base:
        if not requested.startswith("/"):
            return requested
        base = "/"
    parts: list[str] = []
    for comp in (base + "/" + requested).split("/"):
        if comp == "..":
            if parts:
                parts.pop()
        elif comp and comp != ".":
            parts.append(comp)
    return "/" + "/".join(parts)


def _rename(common, flags, b) -> FileEvent:
    ret, olddirfd, _newdirfd, sys_id, rflags, path, new_path, rbase, rbase2 = b
    requested = text(path)
    return _tnew(FileEvent, common + _syscall(sys_id, ret) + (
        joined(text(rbase), requested), joined(text(rbase2), text(new_path)),
        names.bit_names(rflags, names.RENAME_FLAGS), 0, olddirfd,
        bool(flags & _TRUNC_ANY), requested, False))


_NO_REMOTE = ("bind", "listen")  # a socket being bound or put to listen has no peer


def _net(common, flags, b) -> NetEvent:
    (ret, fd, sys_id, family, sport, dport, protocol, stype, backlog, saddr, daddr,
     unix_path) = b
    return _tnew(NetEvent, common + _syscall(sys_id, ret) + (
        names.FAMILIES.get(family, str(family)), names.PROTOCOLS.get(protocol, str(protocol)),
        names.SOCK_TYPES.get(stype & 0xF, str(stype)), _addr(saddr, family), sport,
        "" if common[0] in _NO_REMOTE else _addr(daddr, family), dport,
        text(unix_path) if family == 1 else "", fd, backlog))


def _unchanged(v: int) -> int | None:
    return None if v & 0xFFFFFFFF == 0xFFFFFFFF else v & 0xFFFFFFFF


def _s32(v: int) -> int:
    """The low 32 bits of a slot as a C int (a pid as passed: -1, 0, -pgid…)."""
    return ((v & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000


def _priv(common, flags, b) -> PrivEvent:
    ret, a0, a1, a2, a3, sys_id, caller_euid, s1, s2, s3 = b
    kind = common[0]
    sysname = _SYSCALL_NAME.get(sys_id, str(sys_id))
    if kind == "ptrace":
        d = (("ptrace.request", names.PTRACE_REQUESTS.get(a0, str(a0))),
             ("ptrace.target", a1 & 0xFFFFFFFF))
    elif kind == "mount":
        d = (("mount.source", text(s2)), ("mount.target", text(s1)),
             ("mount.fstype", text(s3)), ("mount.flags", names.mount_flags(a3)))
    elif kind == "umount":
        d = (("mount.target", text(s1)), ("mount.flags", names.bit_names(a1, names.UMOUNT_FLAGS)))
    elif kind == "unshare":
        d = (("ns.types", names.bit_names(a0 & ~0x40600, names.NS_TYPES)
              + names.bit_names(a0 & 0x40600, names.UNSHARE_OTHER)),)
    elif kind == "setns":
        d = (("ns.fd", a0 & 0xFFFFFFFF), ("ns.types", names.bit_names(a1, names.NS_TYPES)))
    elif kind == "setuid":
        d = (("cred.ruid", _unchanged(a0)), ("cred.euid", _unchanged(a1)),
             ("cred.suid", _unchanged(a2)), ("cred.fsuid", _unchanged(a3) if sysname == "setfsuid" else None),
             ("cred.caller_euid", caller_euid))
    elif kind == "setgid":
        d = (("cred.rgid", _unchanged(a0)), ("cred.egid", _unchanged(a1)),
             ("cred.sgid", _unchanged(a2)), ("cred.fsgid", _unchanged(a3) if sysname == "setfsgid" else None),
             ("cred.caller_euid", caller_euid))
    elif kind == "memfd":
        d = (("memfd.name", text(s1)), ("memfd.flags", names.bit_names(a1, names.MEMFD_FLAGS)))
    elif kind == "kill":
        sig = a1 & 0xFFFFFFFF
        d = (("signal.target", _s32(a0)), ("signal.number", sig),
             ("signal.name", names.signal_name(sig)))
    elif kind == "io_uring":
        d = (("io_uring.entries", a0 & 0xFFFFFFFF),
             ("io_uring.flags", names.bit_names(a1 & 0xFFFFFFFF, names.IORING_SETUP_FLAGS)))
    else:  # module
        d = (("module.params", text(s1)),
             ("module.fd", a0 if sysname == "finit_module" else None))
    return _tnew(PrivEvent, common + _syscall(sys_id, ret) + (d,))


def _cgroup(common, flags, b) -> CgroupEvent:
    cid, _root, level, path = b
    return _tnew(CgroupEvent, common + (cid, level, text(path)))


_DECODERS = {"exec_event": _exec, "fork_event": _fork, "exit_event": _exit,
             "mmap_event": _mmap,
             "file_event": _file, "rename_event": _rename, "net_event": _net,
             "priv_event": _priv, "cgroup_event": _cgroup}
