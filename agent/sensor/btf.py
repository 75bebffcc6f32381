"""Kernel struct offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux).

The probes never dereference `task->field` through the kernel headers: the installed headers
may be for another kernel version, and every offset would be wrong. Instead the agent reads
the offsets it needs from BTF at start and passes them to bcc as -D constants; the C code reads
`*(ptr + OFFSET)` with bpf_probe_read_kernel. This also makes the agent portable across kernels.

Only what the agent needs is parsed: struct and union members, typedef/const chains, arrays.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

BTF_PATH = "/sys/kernel/btf/vmlinux"
_MAGIC = 0xEB9F

# BTF kinds
_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT, \
    _FUNC, _FUNC_PROTO, _VAR, _DATASEC, _FLOAT, _DECL_TAG, _TYPE_TAG, _ENUM64 = range(1, 20)
_MODIFIERS = (_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG)


class BTFError(Exception):
    """BTF is missing, malformed, or lacks a struct or member the agent needs."""


@dataclass(frozen=True, slots=True)
class _Member:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int


class BTF:
    def __init__(self, data: bytes):
        if len(data) < 24:
            raise BTFError("BTF data too short")
        magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != _MAGIC:
            raise BTFError(f"bad BTF magic {magic:#x}")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self._types_at = hdr_len + type_off
        self._strs = data[hdr_len + str_off: hdr_len + str_off + str_len]
        self._data = data
        # id -> (kind, name_off, size_or_type, vlen, kind_flag, offset of extra data)
        self._types: list[tuple[int, int, int, int, int, int] | None] = [None]
        self._by_name: dict[str, list[int]] = {}
        self._parse(self._types_at, self._types_at + type_len)

    @classmethod
    def load(cls, path: str = BTF_PATH) -> "BTF":
        try:
            with open(path, "rb") as f:
                return cls(f.read())
        except FileNotFoundError:
            raise BTFError(
                f"{path} not found: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF). Mamori "
                "reads kernel struct offsets from BTF and cannot run without it") from None

    def _name(self, off: int) -> str:
        end = self._strs.index(b"\0", off)
        return self._strs[off:end].decode()

    def _parse(self, pos: int, end: int) -> None:
        data, unpack = self._data, struct.unpack_from
        extra_fixed = {_INT: 4, _ARRAY: 12, _VAR: 4, _DECL_TAG: 4}
        extra_per = {_STRUCT: 12, _UNION: 12, _ENUM: 8, _FUNC_PROTO: 8, _DATASEC: 12,
                     _ENUM64: 12}
        while pos < end:
            name_off, info, size = unpack("<III", data, pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            kflag = info >> 31
            tid = len(self._types)
            self._types.append((kind, name_off, size, vlen, kflag, pos + 12))
            if kind in (_STRUCT, _UNION) and name_off:
                self._by_name.setdefault(self._name(name_off), []).append(tid)
            pos += 12 + extra_fixed.get(kind, 0) + extra_per.get(kind, 0) * vlen

    def _resolve(self, tid: int) -> int:
        """Follow typedef/const/volatile to the underlying type id."""
        for _ in range(32):
            t = self._types[tid]
            if t is None or t[0] not in _MODIFIERS:
                return tid
            tid = t[2]
        raise BTFError("typedef chain too long")

    def _members(self, tid: int) -> list[_Member]:
        kind, _n, _s, vlen, kflag, extra = self._types[tid]
        out = []
        for i in range(vlen):
            name_off, mtype, moff = struct.unpack_from("<III", self._data, extra + 12 * i)
            if kflag:
                out.append(_Member(self._name(name_off), mtype, moff & 0xFFFFFF, moff >> 24))
            else:
                out.append(_Member(self._name(name_off), mtype, moff, 0))
        return out

    def _struct_id(self, name: str) -> int:
        ids = self._by_name.get(name)
        if not ids:
            raise BTFError(f"struct {name} not in kernel BTF")
        # Prefer a complete definition (non-zero size) if there are several.
        return max(ids, key=lambda i: self._types[i][2])

    def sizeof(self, name: str) -> int:
        return self._types[self._struct_id(name)][2]

    def _find(self, tid: int, member: str) -> tuple[int, int] | None:
        """(bit offset, member type id) of `member` in struct/union tid, searching anonymous
        members (unnamed structs and unions) too."""
        for m in self._members(tid):
            if m.name == member:
                return m.bit_offset, m.type_id
            if not m.name:
                inner = self._resolve(m.type_id)
                if self._types[inner][0] in (_STRUCT, _UNION):
                    hit = self._find(inner, member)
                    if hit:
                        return m.bit_offset + hit[0], hit[1]
        return None

    def offsetof(self, path: str) -> int:
        """Byte offset of a member path: 'task_struct.real_parent', 'sock.__sk_common.skc_num'.
        Nested names go through embedded (not pointed-to) structs."""
        struct_name, *members = path.split(".")
        if not members:
            raise BTFError(f"no member in {path!r}")
        tid = self._struct_id(struct_name)
        bits = 0
        for m in members:
            hit = self._find(tid, m)
            if hit is None:
                raise BTFError(f"{path}: no member {m!r} in kernel BTF")
            bits += hit[0]
            tid = self._resolve(hit[1])
            if self._types[tid][0] == _ARRAY and m != members[-1]:
                raise BTFError(f"{path}: cannot descend into array member {m!r}")
        if bits % 8:
            raise BTFError(f"{path} is a bitfield")
        return bits // 8

    def member_size(self, path: str) -> int:
        """Size in bytes of the member's type (arrays: whole array)."""
        struct_name, *members = path.split(".")
        tid = self._struct_id(struct_name)
        for m in members:
            hit = self._find(tid, m)
            if hit is None:
                raise BTFError(f"{path}: no member {m!r} in kernel BTF")
            tid = self._resolve(hit[1])
        return self._size_of_type(tid)

    def _size_of_type(self, tid: int) -> int:
        kind, _n, size, _v, _k, extra = self._types[tid]
        if kind == _PTR:
            return 8
        if kind == _ARRAY:
            elem, _idx, nelems = struct.unpack_from("<III", self._data, extra)
            return nelems * self._size_of_type(self._resolve(elem))
        return size


# The offsets the probes use: constant name -> member path (or sizeof:struct).
OFFSETS = {
    "TASK_REAL_PARENT": "task_struct.real_parent",
    "TASK_TGID": "task_struct.tgid",
    "TASK_GROUP_LEADER": "task_struct.group_leader",
    "TASK_PID": "task_struct.pid",
    "TASK_START_BOOTTIME": "task_struct.start_boottime",
    "TASK_NSPROXY": "task_struct.nsproxy",
    "TASK_CRED": "task_struct.cred",
    "CRED_EUID": "cred.euid",
    "CRED_EGID": "cred.egid",
    "TASK_THREAD_PID": "task_struct.thread_pid",
    "TASK_FILES": "task_struct.files",
    "TASK_MM": "task_struct.mm",
    "TASK_EXIT_CODE": "task_struct.exit_code",
    "TASK_SIGNAL": "task_struct.signal",
    "SIGNAL_FLAGS": "signal_struct.flags",
    "SIGNAL_GROUP_EXIT_CODE": "signal_struct.group_exit_code",
    "SIGNAL_NR_THREADS": "signal_struct.nr_threads",
    "SIGNAL_LIVE": "signal_struct.live",
    "MM_ARG_START": "mm_struct.arg_start",
    "MM_ARG_END": "mm_struct.arg_end",
    "BPRM_FILE": "linux_binprm.file",
    "BPRM_FILENAME": "linux_binprm.filename",
    "FILE_PATH_MNT": "file.f_path.mnt",
    "FILE_PATH_DENTRY": "file.f_path.dentry",
    "FILE_INODE": "file.f_inode",
    "FILE_PRIVATE": "file.private_data",
    "DENTRY_PARENT": "dentry.d_parent",
    "DENTRY_NAME_PTR": "dentry.d_name.name",
    "DENTRY_NAME_LEN": "dentry.d_name.len",
    "TASK_FS": "task_struct.fs",
    "FS_ROOT_MNT": "fs_struct.root.mnt",
    "FS_ROOT_DENTRY": "fs_struct.root.dentry",
    "FS_PWD_MNT": "fs_struct.pwd.mnt",
    "FS_PWD_DENTRY": "fs_struct.pwd.dentry",
    "MOUNT_MNT": "mount.mnt",
    "MOUNT_PARENT": "mount.mnt_parent",
    "MOUNT_MOUNTPOINT": "mount.mnt_mountpoint",
    "VFSMOUNT_ROOT": "vfsmount.mnt_root",
    "INODE_MODE": "inode.i_mode",
    "INODE_INO": "inode.i_ino",
    "INODE_SB": "inode.i_sb",
    "INODE_NLINK": "inode.__i_nlink",
    "INODE_RDEV": "inode.i_rdev",
    "SB_MAGIC": "super_block.s_magic",
    "SB_DEV": "super_block.s_dev",
    "NSPROXY_MNT_NS": "nsproxy.mnt_ns",
    "MNTNS_INUM": "mnt_namespace.ns.inum",
    "PIDNS_INUM": "pid_namespace.ns.inum",
    "PID_LEVEL": "pid.level",
    "PID_NUMBERS": "pid.numbers",
    "UPID_NR": "upid.nr",
    "UPID_NS": "upid.ns",
    "UPID_SIZE": "sizeof:upid",
    "FILES_FDT": "files_struct.fdt",
    "FDT_MAX_FDS": "fdtable.max_fds",
    "FDT_FD": "fdtable.fd",
    "SOCKET_SK": "socket.sk",
    "SK_FAMILY": "sock.__sk_common.skc_family",
    "SK_NUM": "sock.__sk_common.skc_num",
    "SK_DPORT": "sock.__sk_common.skc_dport",
    "SK_RCV_SADDR": "sock.__sk_common.skc_rcv_saddr",
    "SK_DADDR": "sock.__sk_common.skc_daddr",
    "SK_V6_RCV_SADDR": "sock.__sk_common.skc_v6_rcv_saddr",
    "SK_V6_DADDR": "sock.__sk_common.skc_v6_daddr",
    "SK_TYPE": "sock.sk_type",
    "SK_PROTOCOL": "sock.sk_protocol",
}


# Offsets that only some kernels have; the probes compile the code that needs them only when
# they resolve (HAVE_<group>).
OPTIONAL_OFFSETS = {
    # io_uring opens: the request's opcode and its struct io_open (the request's command
    # area, at its start), read when an IORING_OP_OPENAT(2) completes (bpf/file.c)
    "URING_OPEN": {
        "IO_KIOCB_OPCODE": "io_kiocb.opcode",
        "IO_OPEN_DFD": "io_open.dfd",
        "IO_OPEN_FILE_SLOT": "io_open.file_slot",
        "IO_OPEN_HOW_FLAGS": "io_open.how.flags",
        "IO_OPEN_HOW_MODE": "io_open.how.mode",
    },
    "OVL": {  # overlayfs: which layers an executable is in (drift detection and prevention)
        "OVL_INODE_VFS": "ovl_inode.vfs_inode",
        "OVL_INODE_UPPER": "ovl_inode.__upperdentry",
        "OVL_INODE_OE": "ovl_inode.oe",
        "OVL_ENTRY_NUMLOWER": "ovl_entry.__numlower",
    },
}


def optional_offsets(btf: BTF) -> tuple[dict[str, int], dict[str, str]]:
    """(resolved constants incl. HAVE_<group>=1, {group: why missing})."""
    out, missing = {}, {}
    for group, paths in OPTIONAL_OFFSETS.items():
        try:
            vals = {c: btf.offsetof(p) for c, p in paths.items()}
        except BTFError as e:
            missing[group] = str(e)
            continue
        out.update(vals)
        out[f"HAVE_{group}"] = 1
    return out, missing


def kernel_offsets(btf: BTF) -> dict[str, int]:
    """Every constant in OFFSETS, resolved against this kernel. Raises BTFError naming the
    first member the kernel does not have."""
    out = {}
    for const, path in OFFSETS.items():
        if path.startswith("sizeof:"):
            out[const] = btf.sizeof(path[len("sizeof:"):])
        else:
            out[const] = btf.offsetof(path)
    # Width of members whose type changed across kernel versions.
    out["SK_PROTOCOL_SIZE"] = btf.member_size("sock.sk_protocol")
    out["INODE_NLINK_SIZE"] = btf.member_size("inode.__i_nlink")
    out["INODE_CTIME_SEC"], out["INODE_CTIME_NSEC"] = _ctime_offsets(btf)
    return out


def _ctime_offsets(btf: BTF) -> tuple[int, int]:
    """Where an inode keeps its ctime: i_ctime_sec/i_ctime_nsec (Linux 6.11+), a
    timespec64 __i_ctime (6.6-6.10) or i_ctime (before)."""
    for sec, nsec in (("inode.i_ctime_sec", "inode.i_ctime_nsec"),
                      ("inode.__i_ctime.tv_sec", "inode.__i_ctime.tv_nsec"),
                      ("inode.i_ctime.tv_sec", "inode.i_ctime.tv_nsec")):
        try:
            return btf.offsetof(sec), btf.offsetof(nsec)
        except BTFError:
            continue
    raise BTFError("struct inode has no ctime member this agent knows "
                   "(i_ctime_sec, __i_ctime, i_ctime)")
