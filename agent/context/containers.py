"""Which container a cgroup belongs to, and what is known about that container without a
cluster: its runtime's state on disk (OCI config.json annotations) and its root filesystem.

cgroup paths by runtime and driver (v1 hierarchies use the same paths under each
controller; v2 puts them under the one unified tree):

    containerd/CRI, systemd   /kubepods.slice/kubepods-burstable.slice/
                              kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope
    containerd/CRI, cgroupfs  /kubepods/burstable/pod<uid>/<id>
    CRI-O, systemd            /kubepods.slice/.../crio-<id>.scope   (crio-conmon-<id>: not)
    CRI-O, cgroupfs           /kubepods/besteffort/pod<uid>/crio-<id>
    Docker, systemd           /system.slice/docker-<id>.scope
    Docker, cgroupfs          /docker/<id>
    podman                    /machine.slice/libpod-<id>.scope, /libpod_parent/libpod-<id>
    crun (nested)             .../<container scope>/container
    runc/crun run by hand     whatever cgroupsPath says: known from the runtime's state
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

_HEX64 = r"[0-9a-f]{64}"
_POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_]"
                      r"[0-9a-f]{12})")
_PATTERNS = (  # (regex on the last path component, runtime)
    (re.compile(rf"^cri-containerd-({_HEX64})\.scope$"), "containerd"),
    (re.compile(rf"^crio-conmon-{_HEX64}\.scope$"), None),      # conmon, not a container
    (re.compile(rf"^crio-({_HEX64})(?:\.scope)?$"), "cri-o"),
    (re.compile(rf"^docker-({_HEX64})\.scope$"), "docker"),
    (re.compile(rf"^libpod-conmon-{_HEX64}\.scope$"), None),
    (re.compile(rf"^libpod-({_HEX64})(?:\.scope)?$"), "podman"),
    (re.compile(rf"^({_HEX64})$"), None),   # bare id: runtime from the parent (below)
)

@dataclass(frozen=True, slots=True)
class ContainerRef:
    """What the cgroup path alone tells."""
    id: str
    runtime: str            # containerd | cri-o | docker | podman | runc | unknown
    pod_uid: str | None     # Kubernetes pod uid, when the path has one
    cgroup_path: str        # relative to the cgroup root, e.g. /kubepods/.../<id>


def parse_cgroup_path(path: str, runc_ids: frozenset[str] | set[str] = frozenset()
                      ) -> ContainerRef | None:
    """The container a cgroup path belongs to, or None for host cgroups. `runc_ids` are the
    ids of containers a runtime's state directory knows (for runc/crun run by hand, whose
    cgroup paths follow no convention)."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if parts[-1] == "container" and len(parts) > 1:     # crun's nested sub-cgroup
        inner = parse_cgroup_path("/" + "/".join(parts[:-1]), runc_ids)
        return ContainerRef(inner.id, inner.runtime, inner.pod_uid, path) if inner else None
    last = parts[-1]
    m = _POD_UID.search(path)
    pod_uid = m.group(1).replace("_", "-") if m else None
    for rx, runtime in _PATTERNS:
        hit = rx.match(last)
        if not hit:
            continue
        if not hit.groups():
            return None                                  # conmon and the like
        cid = hit.group(1)
        if runtime is None:                              # bare 64-hex id
            parent = parts[-2] if len(parts) > 1 else ""
            if parent == "docker":
                runtime = "docker"
            elif pod_uid:
                runtime = "containerd"                   # kubelet cgroupfs driver
            elif cid in runc_ids:
                runtime = "runc"
            else:
                return None
        return ContainerRef(cid, runtime, pod_uid, path)
    if last in runc_ids:
        return ContainerRef(last, "runc", pod_uid, path)
    return None


# -- what the runtime leaves on disk ----------------------------------------------------

# Where runc (and crun, which writes the same state) keep their state, by who runs them.
RUNTIME_STATE_DIRS = (
    "/run/runc",                                   # runc by hand, CRI-O
    "/run/containerd/runc/k8s.io",                 # containerd CRI
    "/run/containerd/runc/moby",
    "/run/docker/runtime-runc/moby",               # Docker
    "/run/crun",
)

# OCI annotations that CRI runtimes set (containerd's io.kubernetes.cri.*, CRI-O's
# io.kubernetes.*), mapped to what they tell.
ANNOTATIONS = {
    "name": ("io.kubernetes.cri.container-name", "io.kubernetes.container.name"),
    "image": ("io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName",
              "org.opencontainers.image.ref.name"),
    "image_id": ("io.kubernetes.cri-o.ImageRef", "io.kubernetes.cri.image-id"),
    "pod_name": ("io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"),
    "pod_namespace": ("io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace"),
    "pod_uid": ("io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"),
}


@dataclass(frozen=True, slots=True)
class RootFS:
    """A container's root filesystem as the kernel sees it."""
    fstype: str                      # overlay, or whatever else the snapshotter made
    lowerdirs: tuple[str, ...] = ()  # image layers, top first (overlay only)
    upperdir: str | None = None      # the writable layer (overlay only)

    @property
    def is_overlay(self) -> bool:
        return self.fstype == "overlay"


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    id: str
    runtime: str
    cgroup_path: str
    pod_uid: str | None = None
    name: str = ""
    image: str = ""
    image_id: str = ""
    pod_name: str = ""
    pod_namespace: str = ""
    rootfs: RootFS | None = None
    annotations: dict = field(default_factory=dict)


def runc_state(container_id: str, dirs=RUNTIME_STATE_DIRS) -> dict | None:
    for d in dirs:
        p = os.path.join(d, container_id, "state.json")
        try:
            with open(p) as f:
                return json.load(f)
        except (OSError, ValueError):
            continue
    return None


def known_runtime_ids(dirs=RUNTIME_STATE_DIRS) -> set[str]:
    ids = set()
    for d in dirs:
        try:
            ids.update(e for e in os.listdir(d) if os.path.isfile(os.path.join(d, e, "state.json")))
        except OSError:
            pass
    return ids


def oci_annotations(state: dict) -> dict:
    """Annotations of a container from its runc state: the state itself (newer runc) or the
    bundle's config.json."""
    cfg = state.get("config") or {}
    ann = dict(cfg.get("annotations") or {})
    bundle = None
    for label in cfg.get("labels") or ():
        if label.startswith("bundle="):
            bundle = label[len("bundle="):]
    if bundle:
        try:
            with open(os.path.join(bundle, "config.json")) as f:
                ann.update(json.load(f).get("annotations") or {})
        except (OSError, ValueError):
            pass
    return ann


def from_annotations(ann: dict) -> dict:
    out = {}
    for key, names in ANNOTATIONS.items():
        for n in names:
            if ann.get(n):
                out[key] = ann[n]
                break
    return out


def _unescape(s: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


MOUNTINFO_MAX = 4 << 20      # a container that can mount may make its mount table huge


def read_mountinfo(pid: int) -> list[str] | None:
    """/proc/<pid>/mountinfo as lines, at most MOUNTINFO_MAX bytes (a cut last line is
    dropped); None if the process is gone."""
    try:
        with open(f"/proc/{pid}/mountinfo", "rb") as f:
            data = f.read(MOUNTINFO_MAX + 1)
    except OSError:
        return None
    if len(data) > MOUNTINFO_MAX:
        data = data[:data.rfind(b"\n", 0, MOUNTINFO_MAX) + 1]
    return data.decode("utf-8", "surrogateescape").splitlines()


def rootfs_of(pid: int) -> RootFS | None:
    """The root mount of a process, from /proc/<pid>/mountinfo."""
    lines = read_mountinfo(pid)
    return parse_root_mount(lines) if lines is not None else None


def parse_root_mount(lines) -> RootFS | None:
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split(" ")
        if len(fields) < 5 or fields[4] != "/":
            continue
        rparts = right.split(" ")
        fstype = rparts[0]
        opts = rparts[2] if len(rparts) > 2 else ""
        if fstype != "overlay":
            return RootFS(fstype)
        lower, upper = (), None
        for opt in _split_opts(opts):
            if opt.startswith("lowerdir="):
                lower = tuple(_unescape(p) for p in opt[len("lowerdir="):].split(":") if p)
            elif opt.startswith("upperdir="):
                upper = _unescape(opt[len("upperdir="):])
        return RootFS("overlay", lower, upper)
    return None


def _split_opts(opts: str):
    """Super options split on commas (overlay escapes commas in paths as \\,)."""
    cur = ""
    i = 0
    while i < len(opts):
        c = opts[i]
        if c == "\\" and i + 1 < len(opts) and opts[i + 1] == ",":
            cur += ","
            i += 2
            continue
        if c == ",":
            yield cur
            cur = ""
        else:
            cur += c
        i += 1
    if cur:
        yield cur
