"""Adds who-did-it to each event: the process and its ancestry, the container, the pod.

Never waits: a container whose pod the API has not told us about yet is reported with its
container context, and events after the pod arrives carry the pod too."""
from __future__ import annotations

from typing import NamedTuple

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


class Enriched(NamedTuple):
    event: object
    name: str                 # proc.name (see program_name)
    exe: str
    args: tuple
    cwd: str
    ancestors: tuple          # ((pid, exe), …) parent first
    runtime_setup: bool
    container: ContainerInfo | None
    pod: PodInfo | None
    pod_container: PodContainer | None
    drift: object = None      # agent.drift.detector.Drift on exec events that drifted

    @property
    def kind(self) -> str:
        return self.event.kind

    def fields(self) -> dict:
        f = self.event.fields()
        f["proc.name"] = self.name
        f["proc.exe"] = self.exe
        f["proc.args"] = self.args
        f["proc.cwd"] = self.cwd
        f["proc.ancestors"] = [{"pid": pid, "exe": exe} for pid, exe in self.ancestors]
        parent = self.ancestors[0] if self.ancestors else (0, "")
        f["proc.pexe"] = parent[1]
        f["proc.pname"] = parent[1].rsplit("/", 1)[-1]
        f["proc.runtime_setup"] = self.runtime_setup
        d = self.drift
        if d is not None:
            f["drift.kind"], f["drift.path"], f["drift.script"] = d.kind, d.path, d.script
            f["drift.size"], f["drift.sha256"] = d.size, d.sha256
            f["drift.unknown_reason"], f["drift.prevented"] = d.unknown_reason, d.prevented
            f["drift.hash_error"] = d.hash_error
        c, pod, pc = self.container, self.pod, self.pod_container
        f["container.id"] = c.id if c else None
        f["container.runtime"] = c.runtime if c else None
        f["container.cgroup"] = c.cgroup_path if c else None
        f["container.name"] = (pc.name if pc else c.name) if c else None
        f["container.image"] = (pc.image if pc and pc.image else c.image) if c else None
        f["container.image_id"] = (pc.image_id if pc and pc.image_id else c.image_id) if c \
            else None
        if pod is not None:
            f["k8s.ns"], f["k8s.pod"], f["k8s.pod_uid"] = pod.namespace, pod.name, pod.uid
            f["k8s.labels"] = pod.labels
            f["k8s.owner_kind"], f["k8s.owner_name"] = pod.owner_kind, pod.owner_name
        elif c is not None and c.pod_name:         # standalone: from the runtime's annotations
            f["k8s.ns"], f["k8s.pod"], f["k8s.pod_uid"] = c.pod_namespace, c.pod_name, c.pod_uid
            f["k8s.labels"], f["k8s.owner_kind"], f["k8s.owner_name"] = {}, None, None
        else:
            f["k8s.ns"] = f["k8s.pod"] = f["k8s.pod_uid"] = None
            f["k8s.labels"], f["k8s.owner_kind"], f["k8s.owner_name"] = {}, None, None
        return f


class Enricher:
    def __init__(self, tree: ProcessTree, registry: ContainerRegistry, pods=None,
                 ancestors_depth: int = 8, drift=None):
        self.drift = drift          # a DriftDetector, or None
        self.tree = tree
        self.registry = registry
        self.pods = pods
        self.depth = ancestors_depth
        self.attached = None        # pid -> (cgroup moved into, mover's cgroup) | None

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
                       pod, pc, drift)
        if kind == "exit":
            tree.apply(ev)
        return out
