"""Inventory off the event path: a queue, one worker thread, and a memory-capped child
process per image.

    worker = InventoryWorker(cfg.inventory, pods_fn=lambda: pipeline.pods)
    worker.start()
    worker.container_started(cgroup_id, cgroup_path, container_id)   # from discovery
    worker.container_gone(cgroup_id)

container_started only puts the container on a bounded queue (put_nowait: a full queue
drops it and counts it), so the event pipeline never waits for an inventory. The worker
thread finds the container's image from what the runtime left on disk (runc state: the
init pid, OCI annotations), reads the root mount of that init from /proc/PID/mountinfo, and
keys the image (store.image_key). A key already inventoried only gains the container. A new
one is read in a child process (agent/inventory/child.py, a fresh interpreter: nothing of
the agent's threads or memory is inherited) that first sets RLIMIT_AS to inventory.memory_limit and is killed after
inventory.time_limit_s; it reads the overlay's lower dirs (top first), never the upper dir,
or /proc/PID/root when the root is not an overlay.

Failure modes: a child that runs out of memory (MemoryError under RLIMIT_AS, or killed) or
out of time marks the image too_large with the limit in force; a child that dies otherwise
marks it failed with why. Neither touches the agent. A too_large image is read again when
a container of it starts under a larger limit (set_limits, or a restart with a larger
inventory.memory_limit)."""
from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict

from ..context import containers as ct
from .extract import Extracted
from .package import OSRelease, Package
from .rootfs import Limits
from .store import DONE, FAILED, PENDING, TOO_LARGE, InventoryStore, image_key

log = logging.getLogger("mamori.inventory")
RESOLVE_WAIT_S = 5.0
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_capped(source: dict, limits: Limits, memory_limit: int, time_limit_s: float):
    """(state, Extracted or None, reason) of one image read in a capped child
    (agent/inventory/child.py)."""
    req = json.dumps({"source": source, "limits": asdict(limits),
                      "memory_limit": memory_limit}).encode()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": _ROOT,
           "PYTHONDONTWRITEBYTECODE": "1"}
    mib = memory_limit >> 20
    p = subprocess.Popen([sys.executable, "-m", "agent.inventory.child"], env=env,
                         cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, close_fds=True)
    try:
        out, err = p.communicate(req, timeout=time_limit_s)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return TOO_LARGE, None, f"over the time limit of {time_limit_s:g} s " \
                                f"(inventory.time_limit_s)"
    try:
        msg = json.loads(out) if out else {}
    except ValueError:
        msg = {}
    state = msg.get("state") if isinstance(msg, dict) else None
    if state == "ok":
        try:
            return DONE, _extracted(msg["result"]), ""
        except (KeyError, TypeError, ValueError) as e:
            return FAILED, None, f"the reader's answer did not parse: {e}"
    if state == "memory" or (state is None and (p.returncode < 0 or
                                                 b"MemoryError" in err[-4096:])):
        return TOO_LARGE, None, f"over the memory limit of {mib} MiB (inventory.memory_limit)"
    if state == "error":
        return FAILED, None, str(msg.get("reason", ""))[:1000]
    tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    return FAILED, None, f"the reader exited with code {p.returncode}: {tail[0][:500]}"


def _extracted(d: dict) -> Extracted:
    pkgs = [Package(**{**p, "files": tuple(p.get("files") or ())}) for p in d["packages"]]
    return Extracted(os=OSRelease(**d["os"]), packages=pkgs, errors=list(d["errors"]),
                     files_seen=int(d["files_seen"]), truncated=str(d["truncated"]),
                     seconds=float(d["seconds"]))


class InventoryWorker:
    def __init__(self, cfg, pods_fn=lambda: None, state_dirs=ct.RUNTIME_STATE_DIRS,
                 store: InventoryStore | None = None):
        self.cfg = cfg
        self.pods_fn = pods_fn
        self.state_dirs = state_dirs
        self.store = store or InventoryStore(cfg.max_images)
        self.on_done: list = []      # callables(Inventory) told of each image read (they queue)
        self.memory_limit = cfg.memory_limit
        self.time_limit_s = cfg.time_limit_s
        self.limits = Limits(cfg.max_file_bytes, cfg.max_binary_bytes, cfg.max_files,
                             cfg.max_depth)
        self.queue: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        self.dropped = 0                     # containers not queued (queue full)
        self.counts = Counter()              # inventories finished, per state
        self.seconds = 0.0                   # spent reading images, in all
        self.unresolved = 0                  # containers whose image was not found
        self._cgroups: dict[int, str] = {}   # cgroup id -> container id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.busy = threading.Event()        # set while an image is being read

    # -- from discovery (the event path: never blocks) ---------------------------------
    def container_started(self, cgroup_id: int, cgroup_path: str, container_id: str) -> None:
        try:
            self.queue.put_nowait(("start", cgroup_id, container_id, time.monotonic()))
        except queue.Full:
            self.dropped += 1

    def container_gone(self, cgroup_id: int) -> None:
        try:
            self.queue.put_nowait(("gone", cgroup_id, "", 0.0))
        except queue.Full:
            self.dropped += 1

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="inventory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self.queue.put_nowait(("stop", 0, "", 0.0))
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout=10)

    def set_limits(self, memory_limit: int | None = None, time_limit_s: float | None = None):
        """New limits; images that were too large under smaller ones are read again."""
        grew = (memory_limit or 0) > self.memory_limit or (time_limit_s or 0) > self.time_limit_s
        if memory_limit:
            self.memory_limit = memory_limit
        if time_limit_s:
            self.time_limit_s = time_limit_s
        if grew:
            for inv in self.store.all():
                if inv.state == TOO_LARGE and inv.containers:
                    try:
                        self.queue.put_nowait(("retry", 0, inv.key, 0.0))
                    except queue.Full:
                        self.dropped += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            what, cgroup_id, cid, since = self.queue.get()
            try:
                if what == "start":
                    self._started(cgroup_id, cid, since)
                elif what == "gone":
                    gone = self._cgroups.pop(cgroup_id, None)
                    if gone:
                        self.store.remove_container(gone)
                elif what == "retry":
                    inv = self.store.get(cid)
                    if inv is not None and inv.state == TOO_LARGE:
                        self._read(inv.key, inv.layers, inv.source)
            except Exception:                       # noqa: BLE001 - survive, say so
                log.exception("inventory of container %s failed; going on", cid)

    # -- one container -----------------------------------------------------------------
    def _started(self, cgroup_id: int, container_id: str, since: float) -> None:
        described = self._describe(container_id, since)
        if described is None:
            self.unresolved += 1
            log.info("container %s: its image is not known (no runtime state or root mount)",
                     container_id)
            return
        image, image_id, rootfs, pid = described
        if rootfs.is_overlay and rootfs.lowerdirs:
            layers, source = rootfs.lowerdirs, {"layers": list(rootfs.lowerdirs)}
        else:
            layers, source = (f"/proc/{pid}/root",), {"pid": pid}
        key = image_key(image_id, rootfs.lowerdirs if rootfs.is_overlay else (),
                        container_id)
        self._cgroups[cgroup_id] = container_id
        inv, new = self.store.add_container(key, container_id, image=image,
                                            image_id=image_id, layers=tuple(layers))
        inv.source = source
        if new or (inv.state == TOO_LARGE and (inv.memory_limit < self.memory_limit or
                                               inv.time_limit_s < self.time_limit_s)) or \
                (inv.state == FAILED and not rootfs.is_overlay):
            self._read(key, layers, source)

    def _describe(self, container_id: str, since: float):
        """(image name, image id, RootFS, init pid) from the runtime's state, waiting a
        little for a container the runtime is still setting up."""
        deadline = since + RESOLVE_WAIT_S
        while True:
            state = ct.runc_state(container_id, self.state_dirs)
            pid = state.get("init_process_pid") if state else None
            rootfs = ct.rootfs_of(pid) if isinstance(pid, int) and pid > 0 else None
            if rootfs is not None:
                meta = ct.from_annotations(ct.oci_annotations(state))
                image_id = meta.get("image_id", "")
                image = meta.get("image", "")
                pods = self.pods_fn()
                pod = pods.pod_of_container(container_id) if pods is not None else None
                if pod is not None:
                    for pc in (pod.containers.get(container_id),):
                        if pc is not None:
                            image = image or pc.image
                            image_id = image_id or pc.image_id.split("://", 1)[-1]
                return image, image_id, rootfs, pid
            if time.monotonic() >= deadline or self._stop.is_set():
                return None
            time.sleep(0.1)

    def _read(self, key: str, layers, source: dict) -> None:
        self.store.update(key, state=PENDING)
        self.busy.set()
        t0 = time.monotonic()
        try:
            state, result, reason = run_capped(source, self.limits, self.memory_limit,
                                               self.time_limit_s)
        finally:
            self.busy.clear()
        took = time.monotonic() - t0
        self.seconds += took
        self.counts[state] += 1
        inv = self.store.get(key)
        values = dict(state=state, reason=reason, memory_limit=self.memory_limit,
                      time_limit_s=self.time_limit_s, seconds=took, made_at=time.time(),
                      attempts=(inv.attempts + 1) if inv else 1)
        if result is not None:
            values.update(os=result.os, packages=tuple(result.packages),
                          errors=tuple(result.errors), files_seen=result.files_seen)
        else:
            values.update(packages=(), errors=())
        self.store.update(key, **values)
        if state == DONE:
            inv = self.store.get(key)
            for fn in self.on_done:
                try:
                    fn(inv)
                except Exception:            # noqa: BLE001 - a listener must not stop us
                    log.exception("inventory listener failed for %s", key)
        log.info("inventory of %s: %s%s (%.2f s)", key, state,
                 f", {len(result.packages)} packages" if result else f": {reason}", took)
