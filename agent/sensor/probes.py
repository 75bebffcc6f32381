"""Load the eBPF programs, keep the in-kernel filter current, read the ring buffer in
batches, and decode what it holds.

    sensor = Sensor(families=("process", "file"), ring_bytes=16 << 20)
    sensor.start()                       # compile with BTF offsets, attach, ~1-3 s
    sensor.watch_cgroup(cgroup_id)        # that cgroup and everything below it
    events = sensor.poll()                # consume what the kernel wrote, decoded
"""
from __future__ import annotations

import ctypes
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import decoder, layout, ring
from .btf import BTF, BTF_PATH, BTFError, kernel_offsets, optional_offsets

log = logging.getLogger("mamori.sensor")

BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
TRACING = Path("/sys/kernel/tracing")
FAMILY_SOURCES = {"process": "process.c", "file": "file.c", "net": "net.c", "priv": "priv.c",
                  "cgroup": "cgroup.c"}

# Syscall tracepoints that some kernels lack; each is compiled only where it exists.
OPTIONAL_TRACEPOINTS = {
    "sys_enter_openat2": "no tracepoint (kernel older than 5.6)",
    "sys_enter_fchmodat2": "no tracepoint (kernel older than 6.6)",
    "sys_enter_init_module": "no tracepoint (kernel built without module support)",
    "sys_enter_finit_module": "no tracepoint (kernel built without module support)",
    "sys_enter_io_uring_setup": "no tracepoint (kernel built without io_uring)",
    # legacy syscalls that newer architectures (arm64, riscv) never had: there mkdirat and
    # utimensat, always traced, are what libc calls
    "sys_enter_mkdir": "no tracepoint (not a syscall on this architecture: mkdirat is)",
    "sys_enter_utime": "no tracepoint (not a syscall on this architecture: utimensat is)",
    "sys_enter_utimes": "no tracepoint (not a syscall on this architecture: utimensat is)",
    "sys_enter_futimesat": "no tracepoint (not a syscall on this architecture: utimensat is)",
}
# Optional offset groups (agent/sensor/btf.py OPTIONAL_OFFSETS) whose code also needs a
# tracepoint: compiled only where both are there.
GROUP_TRACEPOINTS = {
    "URING_OPEN": ("io_uring", "io_uring_complete"),
}


# Offsets the mmap_exec probes (bpf/process.c) read beyond agent/sensor/btf.py's OFFSETS and
# OPTIONAL_OFFSETS. MAPLE: the vma behind an mprotect address (maple tree, 6.1+); without it
# mprotect and pkey_mprotect are not traced.
MAPPING_OFFSETS = {
    "MOUNT_ID": "mount.mnt_id",
    "MOUNT_NS": "mount.mnt_ns",
    "VFSMOUNT_FLAGS": "vfsmount.mnt_flags",
    "VFSMOUNT_SB": "vfsmount.mnt_sb",
    "DENTRY_INODE": "dentry.d_inode",
    "PATH_MNT": "path.mnt",
    "PATH_DENTRY": "path.dentry",
    "TASK_PERSONALITY": "task_struct.personality",
}
MAPPING_OPTIONAL_OFFSETS = {
    # overlayfs puts a backing file (6.5+) in the vma; its user path is the overlay file
    "BACKING": {"BACKING_USER_PATH": "backing_file.user_path"},
    "MAPLE": {
        "MM_MT_ROOT": "mm_struct.mm_mt.ma_root",
        "MR64_PIVOT": "maple_range_64.pivot",
        "MR64_SLOT": "maple_range_64.slot",
        "MA64_PIVOT": "maple_arange_64.pivot",
        "MA64_SLOT": "maple_arange_64.slot",
        "VMA_START": "vm_area_struct.vm_start",
        "VMA_END": "vm_area_struct.vm_end",
        "VMA_FLAGS": "vm_area_struct.vm_flags",
        "VMA_FILE": "vm_area_struct.vm_file",
    },
}
# What a missing optional group leaves untraced. (Without BACKING, on kernels before 6.5, an
# mprotect of an overlay mapping sees the layer's real file, not the overlay's.)
OPTIONAL_GROUP_SYSCALLS = {"MAPLE": ("mprotect", "pkey_mprotect")}


def mapping_offsets(btf: BTF) -> tuple[dict[str, int], dict[str, str]]:
    """(constants incl. HAVE_<group>=1, {syscall: why it is not traced}). Raises BTFError
    for a missing required member."""
    out = {c: btf.offsetof(p) for c, p in MAPPING_OFFSETS.items()}
    missing = {}
    for group, paths in MAPPING_OPTIONAL_OFFSETS.items():
        try:
            vals = {c: btf.offsetof(p) for c, p in paths.items()}
        except BTFError as e:
            for sc in OPTIONAL_GROUP_SYSCALLS.get(group, ()):
                missing[sc] = f"not in kernel BTF: {e}"
            continue
        out.update(vals)
        out[f"HAVE_{group}"] = 1
    return out, missing


class SensorError(Exception):
    """The sensor cannot start; the message says what is missing."""


@dataclass
class SensorStats:
    received: Counter = field(default_factory=Counter)    # per kind, decoded
    malformed: Counter = field(default_factory=Counter)   # per reason


def ring_pages(ring_bytes: int) -> int:
    """Ring size in pages: a power of two, at least one page."""
    page = os.sysconf("SC_PAGE_SIZE")
    pages = max(1, ring_bytes // page)
    return 1 << (pages - 1).bit_length()


def tracepoint_exists(category: str, name: str) -> bool:
    return (TRACING / "events" / category / name).is_dir()


class Sensor:
    def __init__(self, families=("process", "file", "net", "priv"), ring_bytes: int = 16 << 20,
                 all_processes: bool = False, btf_path: str = BTF_PATH,
                 budget_per_window: int = 2000, write_tracking_entries: int = 65536):
        unknown = set(families) - set(FAMILY_SOURCES)
        if unknown:
            raise SensorError(f"unknown probe families: {', '.join(sorted(unknown))} "
                              f"(known: {', '.join(FAMILY_SOURCES)})")
        self.families = tuple(f for f in FAMILY_SOURCES if f in families)
        self.ring_pages = ring_pages(ring_bytes)
        self.all_processes = all_processes
        self.btf_path = btf_path
        self.unavailable: dict[str, str] = {}   # syscall -> why it is not traced
        self.stats = SensorStats()
        self._bpf = None
        self._raw: list[bytes] = []
        self._ring: ring.RingReader | None = None
        self._watched: set[int] = set()
        self.cgroup_root = ""      # where cgroup2 is mounted (set by the pipeline)
        self._generation = 0
        self.congested = False
        self.budget = budget_per_window
        self.write_tracking_entries = write_tracking_entries

    # -- start -------------------------------------------------------------------------
    def cflags(self) -> list[str]:
        """-D constants: BTF offsets of this kernel, ring size, optional tracepoints."""
        if not os.path.exists(self.btf_path):
            raise SensorError(
                f"{self.btf_path} not found: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF=y "
                "is required). Mamori reads kernel struct offsets from BTF and will not "
                "guess them from headers")
        try:
            btf = BTF.load(self.btf_path)
            offsets = kernel_offsets(btf)
            mapping, untraced = mapping_offsets(btf)
        except BTFError as e:
            raise SensorError(f"kernel BTF: {e}") from None
        offsets.update(mapping)
        if "process" in self.families:
            self.unavailable.update(untraced)
        extra, missing = optional_offsets(btf)
        for group, why in missing.items():
            self.unavailable[group.lower()] = f"not in kernel BTF: {why}"
        for group, (category, tp) in GROUP_TRACEPOINTS.items():   # and the tracepoint too
            if extra.get(f"HAVE_{group}") and not tracepoint_exists(category, tp):
                del extra[f"HAVE_{group}"]
                self.unavailable[group.lower()] = f"no {category}:{tp} tracepoint"
        offsets.update(extra)
        flags = [f"-I{BPF_DIR}", f"-DRING_PAGES={self.ring_pages}",
                 f"-DWRITE_TRACKING_ENTRIES={self.write_tracking_entries}"]
        flags += [f"-D{k}={v}" for k, v in offsets.items()]
        for tp, why in OPTIONAL_TRACEPOINTS.items():
            if tracepoint_exists("syscalls", tp):
                flags.append(f"-DHAVE_{tp}")
            else:
                self.unavailable[tp[len("sys_enter_"):]] = why
        return flags

    def source(self) -> str:
        """bpf/common.h and the selected bpf/*.c files, joined into one text: bcc rewrites
        map calls (`m.lookup()`) and generates TRACEPOINT_PROBE argument structs only in
        its main text, not in #included files. Each file's own `#include "common.h"` is
        then a no-op thanks to the include guard."""
        parts = ["common.h", "task_epoch.c", *(FAMILY_SOURCES[f] for f in self.families)]
        return "".join(f'#line 1 "{p}"\n' + (BPF_DIR / p).read_text() for p in parts)

    def start(self) -> None:
        if os.geteuid() != 0:
            raise SensorError("loading eBPF programs needs root (CAP_BPF, CAP_PERFMON)")
        if not tracepoint_exists("syscalls", "sys_enter_openat"):
            raise SensorError(f"no syscall tracepoints under {TRACING}: mount tracefs there "
                              "(mount -t tracefs tracefs /sys/kernel/tracing) and make sure "
                              "the kernel has CONFIG_FTRACE_SYSCALLS")
        build = f"/lib/modules/{os.uname().release}/build"
        if not os.path.exists(os.path.join(build, "include")):
            raise SensorError(
                f"kernel headers for {os.uname().release} not found at {build}: bcc needs "
                "them to compile the probes (for types only; offsets come from BTF). On a "
                "node, mount the host's /lib/modules and /usr/src into the pod; on a "
                "machine, install linux-headers (scripts/setup.sh links them)")
        try:
            from bcc import BPF
        except ImportError:
            raise SensorError("the bcc Python module is missing: install Debian's "
                              "python3-bpfcc (scripts/setup.sh does)") from None
        cflags = self.cflags()
        try:
            self._bpf = BPF(text=self.source().encode(), cflags=cflags)
        except Exception as e:  # bcc raises plain Exception on compile or load failure
            raise SensorError(f"loading the probes failed: {e}") from None
        for fam in ("file", "priv"):     # the one program each sys_exit of it tail-calls
            if fam not in self.families:
                continue
            try:
                tail = self._bpf.load_func(f"{fam}_exit_tail".encode(), BPF.TRACEPOINT)
            except Exception as e:
                raise SensorError(f"loading the probes failed: {e}") from None
            self._bpf[f"{fam}_exit_prog".encode()][ctypes.c_int(0)] = ctypes.c_int(tail.fd)
        self._write_config()
        events = self._bpf[b"events"]
        if ring.available():
            self._ring = ring.RingReader(events.map_fd, self.ring_pages * ring.PAGE)
        else:                                      # bcc's reader, one call-back a record
            events.open_ring_buffer(self._on_record)

    def _on_record(self, _ctx, data, size):
        self._raw.append(ctypes.string_at(data, size))

    def _write_config(self) -> None:
        cfg = self._bpf[b"config"]
        leaf = cfg.Leaf()
        leaf.all_processes = 1 if self.all_processes else 0
        leaf.generation = self._generation
        leaf.self_tgid = os.getpid()
        leaf.congested = 1 if self.congested else 0
        leaf.budget = self.budget
        cfg[ctypes.c_int(0)] = leaf

    def set_congested(self, on: bool) -> None:
        """User space is (or is no longer) falling behind: containers over their budget
        shed bulk events in the kernel (bpf/common.h, shed())."""
        if on != self.congested:
            self.congested = on
            if self._bpf is not None:
                self._write_config()

    # -- the watched set ---------------------------------------------------------------
    def watch_cgroup(self, cgroup_id: int) -> None:
        """Watch the processes of a cgroup and of every cgroup below it."""
        self._bpf[b"watched_cgroups"][ctypes.c_uint64(cgroup_id)] = ctypes.c_uint8(1)
        self._watched.add(cgroup_id)
        self._bump()

    def unwatch_cgroup(self, cgroup_id: int) -> None:
        try:
            del self._bpf[b"watched_cgroups"][ctypes.c_uint64(cgroup_id)]
        except KeyError:
            pass
        self._watched.discard(cgroup_id)
        self._bump()

    # -- drift prevention --------------------------------------------------------------
    def enforce_drift(self, cgroup_id: int, on: bool) -> None:
        table = self._bpf[b"drift_enforced"]
        if on:
            table[ctypes.c_uint64(cgroup_id)] = ctypes.c_uint8(1)
        else:
            try:
                del table[ctypes.c_uint64(cgroup_id)]
            except KeyError:
                pass

    def set_exec_mounts(self, cgroup_id: int, root_dev: int, mount_ids=()) -> None:
        """Judge execs and executable mappings in an enforced container against its mounts:
        anything not on its root overlay (kernel dev_t root_dev) nor on one of mount_ids
        (mount ids as /proc/PID/mountinfo numbers them) is prevented. Replaces what the
        container had; the allowed mounts are written first, so the kernel never sees the
        root without them."""
        if self._bpf is None or "process" not in self.families:
            return
        allow = self._bpf[b"exec_allow"]
        wanted = set(mount_ids)
        for mid in wanted:
            allow[self._mount_key(allow, cgroup_id, mid)] = ctypes.c_uint8(1)
        stale = [k.mnt_id for k in allow.keys()
                 if k.cgroup_id == cgroup_id and k.mnt_id not in wanted]
        self._bpf[b"exec_roots"][ctypes.c_uint64(cgroup_id)] = ctypes.c_uint32(root_dev)
        for mid in stale:
            try:
                del allow[self._mount_key(allow, cgroup_id, mid)]
            except KeyError:
                pass

    def clear_exec_mounts(self, cgroup_id: int, mount_ids=()) -> None:
        if self._bpf is None or "process" not in self.families:
            return
        try:
            del self._bpf[b"exec_roots"][ctypes.c_uint64(cgroup_id)]
        except KeyError:
            pass
        allow = self._bpf[b"exec_allow"]
        for mid in mount_ids:
            try:
                del allow[self._mount_key(allow, cgroup_id, mid)]
            except KeyError:
                pass

    def exec_mounts(self, cgroup_id: int) -> tuple[int | None, set[int]]:
        """(root device, allowed mount ids) the kernel holds for a container."""
        if self._bpf is None or "process" not in self.families:
            return None, set()
        try:
            root = self._bpf[b"exec_roots"][ctypes.c_uint64(cgroup_id)].value
        except KeyError:
            root = None
        allowed = {k.mnt_id for k in self._bpf[b"exec_allow"].keys()
                   if k.cgroup_id == cgroup_id}
        return root, allowed

    @staticmethod
    def _mount_key(table, cgroup_id: int, mnt_id: int):
        k = table.Key()
        k.cgroup_id, k.mnt_id, k.pad = cgroup_id, mnt_id, 0
        return k

    def _inode_key(self, table, ino: int, kdev: int):
        k = table.Key()
        k.ino, k.dev, k.pad = ino, kdev, 0
        return k

    def inode_writes(self, ino: int, kdev: int) -> int:
        """Opens for writing the kernel counted on this overlay inode."""
        table = self._bpf[b"inode_writes"]
        try:
            return table[self._inode_key(table, ino, kdev)].value
        except KeyError:
            return 0

    def writes_uncounted(self) -> tuple[dict[int, tuple[int, int]], int]:
        """Writes the kernel could not count (inode_writes full): ({overlay dev: (writes,
        cgroup id of the last writer)}, writes not counted even per device)."""
        if self._bpf is None or "file" not in self.families:
            return {}, 0
        per = {k.value: (v.writes, v.cgroup_id)
               for k, v in self._bpf[b"writes_uncounted"].items()}
        return per, self._bpf[b"writes_uncounted_any"][ctypes.c_int(0)].value

    def forget_device(self, kdev: int) -> int:
        """An overlay that is gone (its container stopped): drop its write counts and
        verifications, and its fail-closed mark; how many entries went."""
        if self._bpf is None:
            return 0
        n = 0
        for name in (b"inode_writes", b"copyup_verified"):
            table = self._bpf[name]
            for k in [k for k in table.keys() if k.dev == kdev]:
                try:
                    del table[k]
                    n += 1
                except KeyError:
                    pass
        try:
            del self._bpf[b"writes_uncounted"][ctypes.c_uint32(kdev)]
        except KeyError:
            pass
        return n

    def mark_copyup_verified(self, ino: int, kdev: int, writes: int, ctime_ns: int) -> None:
        """User space found the copy unchanged, having seen `writes` opens for writing and
        its ctime at `ctime_ns` before it compared (bpf/process.c, drift_of)."""
        table = self._bpf[b"copyup_verified"]
        v = table.Leaf()
        v.writes, v.ctime_ns = writes, ctime_ns
        table[self._inode_key(table, ino, kdev)] = v

    def watched(self) -> set[int]:
        return set(self._watched)

    def set_all_processes(self, on: bool) -> None:
        self.all_processes = on
        self._bump()

    def _bump(self) -> None:
        """Invalidate the kernel's per-cgroup verdict cache."""
        self._generation = (self._generation + 1) & 0xFFFFFFFF
        self._write_config()

    # -- reading -----------------------------------------------------------------------
    def poll(self) -> list:
        """Consume every record in the ring now (no waiting), decode, return the events."""
        return self.decode_batch(self.poll_raw())

    def decode_batch(self, records: list[bytes]) -> list:
        """Decode raw records in order. Malformed ones are counted in stats.malformed and
        skipped; the others are counted per kind in stats.received."""
        out = []
        dec, received, malformed = decoder.decode, self.stats.received, self.stats.malformed
        for r in records:
            try:
                ev = dec(r)
            except decoder.MalformedEvent as e:
                malformed[str(e).split(" record")[0]] += 1
                continue
            received[ev.kind] += 1
            out.append(ev)
        return out

    def poll_raw(self) -> list[bytes]:
        """Consume the ring and return the records undecoded (for a decoder elsewhere)."""
        if self._ring is not None:
            raw: list[bytes] = []
            self._ring.drain(raw)
            return raw
        self._bpf.ring_buffer_consume()
        raw, self._raw = self._raw, []
        return raw

    def ring_pending(self) -> int | None:
        """Bytes in the ring not read yet (None where bcc's reader is used)."""
        return self._ring.pending() if self._ring is not None else None

    def drops(self) -> dict[str, int]:
        """Events the kernel could not send (ring full, in-flight table full), per kind."""
        return self._per_kind(self._bpf[b"drop_counts"])

    @staticmethod
    def _per_kind(table) -> dict[str, int]:
        out = {}
        size = len(table)
        for kind, kid in layout.KIND_ID.items():
            if kid >= size:
                continue
            n = sum(table[ctypes.c_int(kid)])
            if n:
                out[kind] = n
        return out

    def attached(self, pid: int) -> tuple[int, int] | None:
        """(cgroup it was moved into, cgroup of the task that moved it) for the last cgroup2
        move of task `pid` the kernel saw (bpf/task_epoch.c), or None."""
        try:
            a = self._bpf[b"attaches"][ctypes.c_uint32(pid)]
        except (KeyError, TypeError):
            return None
        return a.dst_cgroup, a.mover_cgroup

    def shed(self) -> dict[str, int]:
        """Bulk events shed in the kernel from containers over their budget, per kind."""
        return self._per_kind(self._bpf[b"shed_counts"])

    def shed_by_cgroup(self) -> dict[int, int]:
        return {k.value: v.value for k, v in self._bpf[b"shed_cgroups"].items()}

    def drops_by_cgroup(self) -> dict[int, int]:
        """Events lost in the kernel, per cgroup id (since start)."""
        return {k.value: v.value for k, v in self._bpf[b"drop_cgroups"].items()}

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None


