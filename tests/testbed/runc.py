"""Real containers for the tests: runc over an overlayfs root (the image folder as the lower
layer), each in its own cgroup2 directory (mamori-test/<id>) and namespaces, optionally in a
network namespace with a veth pair to the host. Everything is cleaned up on stop(), also
when a test failed."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time

from agent.sensor import cgroups

# Containers' cgroups are <CGROUP_PARENT>/<id>. "mamori-test" is what the shipped
# configuration watches (make demo, the benchmarks). The test suite gives each test process
# a parent of its own (tests/conftest.py), because several run at once
# (scripts/pytest_parallel.py): an agent watching another process's containers would see —
# and with an enforcing policy kill — that process's test workload. Its agents watch their
# own parent, from the first instruction of each container: agent_config().
CGROUP_PARENT = "mamori-test"


def agent_config() -> dict:
    """The configuration sections that make an agent watch this process's containers."""
    return {"sensor": {"watched_cgroups": [CGROUP_PARENT]},
            "context": {"container_parents": [CGROUP_PARENT]}}


def agent_overrides() -> dict:
    """The same, as config.load() overrides."""
    return {f"{section}.{key}": value for section, keys in agent_config().items()
            for key, value in keys.items()}
_seq = itertools.count(1)


def _run(*cmd, check=True, **kw):
    return subprocess.run(list(cmd), check=check, capture_output=True, **kw)


class Container:
    def __init__(self, image_rootfs: str, workdir: str, *, name: str | None = None,
                 annotations: dict | None = None, network: bool = False,
                 command: list[str] | None = None, env: list[str] | None = None,
                 volumes: list[tuple[str, str]] | None = None):
        n = next(_seq)
        self.id = name or f"mamori-{os.getpid()}-{n}"
        self.image = image_rootfs
        self.dir = os.path.join(workdir, self.id)
        self.upper = os.path.join(self.dir, "upper")
        self.work = os.path.join(self.dir, "work")
        self.rootfs = os.path.join(self.dir, "merged")
        self.bundle = os.path.join(self.dir, "bundle")
        self.annotations = annotations or {}
        self.command = command or ["/bin/sleep", "3600"]
        self.env = env or []
        self.volumes = volumes or []        # (host directory, path in the container)
        self.cgroup_path = f"{CGROUP_PARENT}/{self.id}"
        self.netns = f"mamori{os.getpid() % 10000}n{n}" if network else None
        self.host_if = self.cont_if = None
        self.host_ip = self.cont_ip = None
        self._net_index = n
        self.pid = None          # host pid of the container's init
        self._mounted = False

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "Container":
        for d in (self.upper, self.work, self.rootfs, self.bundle):
            os.makedirs(d, exist_ok=True)
        _run("mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={self.image},upperdir={self.upper},workdir={self.work}", self.rootfs)
        self._mounted = True
        if self.netns:
            self._make_network()
        with open(os.path.join(self.bundle, "config.json"), "w") as f:
            json.dump(self.oci_config(), f, indent=1)
        # The container's init inherits runc's stdio: give it a log file, not a pipe that
        # would never reach EOF.
        with open(os.path.join(self.dir, "console.log"), "ab") as log:
            subprocess.run(["runc", "create", "--bundle", self.bundle, self.id], check=True,
                           stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        state = json.loads(_run("runc", "state", self.id).stdout)
        self.pid = state["pid"]
        _run("runc", "start", self.id)
        return self

    def oci_config(self) -> dict:
        namespaces = [{"type": t} for t in ("pid", "mount", "ipc", "uts")]
        if self.netns:
            namespaces.append({"type": "network", "path": f"/var/run/netns/{self.netns}"})
        return {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False, "user": {"uid": 0, "gid": 0}, "args": self.command,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "HOME=/root", *self.env],
                "cwd": "/",
                "capabilities": {k: ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER",
                                     "CAP_KILL", "CAP_SETUID", "CAP_SETGID",
                                     "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT"]
                                 for k in ("bounding", "effective", "permitted")},
                "noNewPrivileges": False,
            },
            "root": {"path": self.rootfs, "readonly": False},
            "hostname": "sandbox",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666",
                             "mode=0620"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]},
                *({"destination": dest, "type": "bind", "source": src,
                   "options": ["rbind", "rw"]} for src, dest in self.volumes),
            ],
            "annotations": self.annotations,
            "linux": {
                "cgroupsPath": self.cgroup_path,
                "namespaces": namespaces,
                "maskedPaths": ["/proc/kcore", "/proc/keys"],
                "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
            },
        }

    def _make_network(self) -> None:
        n = self._net_index % 250 + 1
        self.host_if, self.cont_if = f"mh{os.getpid() % 1000}x{n}", f"mc{os.getpid() % 1000}x{n}"
        self.host_ip, self.cont_ip = f"10.213.{n}.1", f"10.213.{n}.2"
        _run("ip", "netns", "add", self.netns)
        _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.cont_if)
        _run("ip", "link", "set", self.cont_if, "netns", self.netns)
        _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _run("ip", "link", "set", self.host_if, "up")
        ns = ("ip", "netns", "exec", self.netns)
        _run(*ns, "ip", "addr", "add", f"{self.cont_ip}/30", "dev", self.cont_if)
        _run(*ns, "ip", "link", "set", self.cont_if, "up")
        _run(*ns, "ip", "link", "set", "lo", "up")

    def stop(self) -> None:
        _run("runc", "kill", self.id, "KILL", check=False)
        for _ in range(50):
            if _run("runc", "delete", "--force", self.id, check=False).returncode == 0:
                break
            time.sleep(0.05)
        if self._mounted:
            _run("umount", "-l", self.rootfs, check=False)
            self._mounted = False
        if self.netns:
            _run("ip", "link", "del", self.host_if, check=False)
            _run("ip", "netns", "del", self.netns, check=False)
        try:
            os.rmdir(self.cgroup_dir)
        except OSError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- inside ------------------------------------------------------------------------
    def exec(self, *argv: str, check: bool = True, timeout: float = 30,
             input: bytes | None = None) -> subprocess.CompletedProcess:
        """Run a command inside the container (runc exec) and wait for it."""
        r = subprocess.run(["runc", "exec", self.id, *argv], capture_output=True,
                           timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise AssertionError(f"{argv} in {self.id} exited {r.returncode}: "
                                 f"{r.stderr.decode()}")
        return r

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess:
        return self.exec("/bin/sh", "-c", script, **kw)

    def popen(self, *argv: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(["runc", "exec", self.id, *argv], **kw)

    @property
    def cgroup_dir(self) -> str:
        return os.path.join(cgroups.cgroup2_root(), self.cgroup_path)

    @property
    def cgroup_id(self) -> int:
        return cgroups.cgroup_id(self.cgroup_dir)

    def pids(self) -> list[int]:
        """Host pids of every process in the container's cgroup."""
        try:
            with open(os.path.join(self.cgroup_dir, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
