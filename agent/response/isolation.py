"""Node-local network isolation: attach bpf/isolate.c's programs to a container's cgroup2
directory (connect refused, packets dropped both ways) and detach them to release it.
Attached with BPF_F_ALLOW_MULTI, beside whatever else (a CNI) has programs there."""
from __future__ import annotations

import os
import threading
from pathlib import Path

BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
BPF_F_ALLOW_MULTI = 2


class Isolator:
    def __init__(self):
        from bcc import BPF, BPFAttachType
        self._BPF, self._T = BPF, BPFAttachType
        self.bpf = BPF(text=(BPF_DIR / "isolate.c").read_text().encode())
        t = BPFAttachType
        self.programs = [
            (self.bpf.load_func(b"deny_connect4", BPF.CGROUP_SOCK_ADDR,
                                attach_type=t.CGROUP_INET4_CONNECT), t.CGROUP_INET4_CONNECT),
            (self.bpf.load_func(b"deny_connect6", BPF.CGROUP_SOCK_ADDR,
                                attach_type=t.CGROUP_INET6_CONNECT), t.CGROUP_INET6_CONNECT),
            (self.bpf.load_func(b"drop_egress", BPF.CGROUP_SKB), t.CGROUP_INET_EGRESS),
            (self.bpf.load_func(b"drop_ingress", BPF.CGROUP_SKB), t.CGROUP_INET_INGRESS),
        ]
        self.isolated: dict[str, int] = {}      # cgroup directory -> its fd
        self._lock = threading.Lock()

    def isolate(self, cgroup_dir: str) -> None:
        with self._lock:
            if cgroup_dir in self.isolated:
                return
            fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
            for fn, kind in self.programs:
                self._BPF.attach_func(fn, fd, kind, BPF_F_ALLOW_MULTI)
            self.isolated[cgroup_dir] = fd

    def release(self, cgroup_dir: str) -> bool:
        with self._lock:
            fd = self.isolated.pop(cgroup_dir, None)
            if fd is None:
                return False
            try:
                for fn, kind in self.programs:
                    try:
                        self._BPF.detach_func(fn, fd, kind)
                    except Exception:  # noqa: BLE001 - the cgroup may be gone already
                        pass
            finally:
                os.close(fd)
            return True

    def close(self) -> None:
        for d in list(self.isolated):
            self.release(d)
        self.bpf.cleanup()
