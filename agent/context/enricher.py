"""Adds who-did-it to each event: the process and its ancestry, the container, the pod.

Never waits: a container whose pod the API has not told us about yet is reported with its
container context, and events after the pod arrives carry the pod too."""
from __future__ import annotations

import os
from typing import NamedTuple

from ..fields import snapshot
from .containers import ContainerInfo
from .pods import PodContainer, PodInfo
from .process_tree import ProcessTree
from .registry import ContainerRegistry


def program_name(comm: str, filename: str, args: tuple) -> str:
    """proc.name: the kernel's comm, except for a program re-executed through
    /proc/self/exe (busybox applets in Alpine-style images, runc), whose comm is just "exe":
    there the name it was run as (argv[0]'s base name) says what ran."""
    if comm == "exe" and filename == "/proc/self/exe" and args:
        return args[0].rsplit("/", 1)[-1][:15] or comm
    return comm


def host_mount_namespace() -> int:
    """The inode of the host's mount namespace: pid 1's (the agent runs with the host's pid
    namespace), else — where pid 1's cannot be read — the agent's own (it runs on the host's
    mounts); 0 when neither can be read."""
    for path in ("/proc/1/ns/mnt", "/proc/self/ns/mnt"):
        try:
            return os.stat(path).st_ino
        except OSError:
            continue
    return 0


class Enriched(NamedTuple):
    event: object
    name: str                 # proc.name (see program_name)
    exe: str
    args: tuple
    cwd: str
    ancestors: tuple          # ((pid, exe, exec_id, name), …) parent first
    runtime_setup: bool
    container: ContainerInfo | None
    pod: PodInfo | None
    pod_container: PodContainer | None
    drift: object = None      # agent.drift.detector.Drift on exec events that drifted
    exec_id: str = ""         # proc.exec_id (agent/context/process_tree.py Proc.exec_id)

    @property
    def kind(self) -> str:
        return self.event.kind

    def fields(self) -> dict:
        """The snapshot an alert carries: every field the registry gives this kind
        (agent/fields.py)."""
        return snapshot(self)


class Enricher:
    def __init__(self, tree: ProcessTree, registry: ContainerRegistry, pods=None,
                 ancestors_depth: int = 8, drift=None):
        self.drift = drift          # a DriftDetector, or None
        self.tree = tree
        self.registry = registry
        self.pods = pods
        self.depth = ancestors_depth
        self.attached = None        # pid -> (cgroup moved into, mover's cgroup) | None
        # the host's mount namespace: a setup process of the runtime that executes a program
        # while still in it (runc re-executing its cloned binary after the move into the
        # container's cgroup) is still the runtime; a container's own processes never are
        self.host_mntns = host_mount_namespace()

    def enrich(self, ev) -> Enriched:
        kind = ev.kind
        container = self.registry.lookup(ev.cgroup_id, ev.pid)
        tree = self.tree
        setup = False
        if kind == "exec":
            tree.apply(ev)
            p = tree.lookup(ev.pid)
            name = program_name(ev.comm, ev.filename, ev.args)
            if p is not None:
                p.comm = name
                if container is not None and self.host_mntns and \
                        ev.mntns == self.host_mntns and tree.runtime_setup(
                            p, ev.ppid, container.id, self.registry.lookup, self.attached,
                            first_event=True):
                    setup = True        # the runtime re-running itself (runc's cloned binary)
                else:
                    tree.on_exec_in(p, container.id if container is not None else None)
        else:
            p = tree.lookup(ev.pid) if container is None else tree.lookup_event(ev)
            name = p.comm if p is not None and p.comm else ev.comm
            if container is not None:
                if p.setup is not None and p.setup_in == container.id:   # decided before
                    setup = p.setup
                else:
                    setup = tree.runtime_setup(p, ev.ppid, container.id,
                                               self.registry.lookup, self.attached)
            if kind == "fork":
                tree.apply(ev)            # the child inherits the parent's answer
        if container is not None and container.rootfs is None and not setup and \
                kind != "exit":
            container = self.registry.refresh_rootfs(container, ev.pid)
        pod = pc = None
        if container is not None and self.pods is not None:
            pod = self.pods.pod_of_container(container.id)
            if pod is None and container.pod_uid:
                pod = self.pods.pod_by_uid(container.pod_uid)
            if pod is not None:
                pc = pod.containers.get(container.id)
        ancestors = tree.ancestry(ev.pid, self.depth)
        if kind == "exec":
            exe, args = ev.exe, ev.args
        else:
            exe, args = (p.exe, p.args) if p else ("", ())
        drift = None
        if kind == "exec" and container is not None and self.drift is not None:
            drift = self.drift.check(ev, container, p.cwd if p else "")
        out = Enriched(ev, name, exe, args, p.cwd if p else "", ancestors, setup, container,
                       pod, pc, drift, p.exec_id if p else "")
        if kind == "exit":
            tree.apply(ev)
        return out
