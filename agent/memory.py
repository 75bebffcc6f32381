"""Give back what compiling the probes took, once they are loaded.

bcc compiles bpf/*.c with clang and LLVM inside the agent's process, at start only (the
probes, then the isolation programs). Afterwards nothing calls the compiler again, yet its
code (libLLVM, libclang-cpp: ~85 MiB of touched pages) stays resident and the heap it
freed stays with the process. Two calls fix that without unloading anything:

- madvise(MADV_PAGEOUT) on the compiler libraries' mappings: the kernel reclaims those
  clean, file-backed pages now instead of under memory pressure; they would be read back
  from disk if a compile ever happened again.
- malloc_trim(0): glibc returns free heap pages to the kernel.

Measured in docs/benchmarks.md (resident memory at idle and under load).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("mamori.memory")

MADV_PAGEOUT = 21                       # Linux 5.4
COMPILER_LIBS = ("libLLVM", "libclang")


def resident_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def release_compiler_memory() -> tuple[int, int]:
    """Page out the compiler's code and trim the heap; (resident KiB before, after)."""
    before = resident_kib()
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and any(n in parts[5] for n in COMPILER_LIBS):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                ranges.append((lo, hi))
    failed = 0
    for lo, hi in ranges:
        if libc.madvise(lo, hi - lo, MADV_PAGEOUT) != 0:
            failed += 1
    if failed:
        log.debug("madvise(MADV_PAGEOUT) refused on %d of %d mappings (errno %d)", failed,
                  len(ranges), ctypes.get_errno())
    libc.malloc_trim(0)
    return before, resident_kib()
