"""The pods on this node, from the Kubernetes API: one watch (spec.nodeName field selector)
with the official client. List, then watch from the list's resourceVersion with bookmarks;
on 410 Gone, list again; on any other failure, reconnect with backoff. Maps container ids
(containerStatuses[].containerID) and pod uids to pod metadata, resolving a ReplicaSet owner
to its Deployment. Runs in its own thread: the event pipeline never waits for the API.

Pod objects are read as the JSON the API server sent, field by field, never through the
client's models: one object the models would refuse (a status without a required field,
`metadata: null`) is skipped and counted (`bad_objects`), and the list or watch goes on past
it. ReplicaSet -> Deployment lookups run on a thread of their own, answers and failures
cached (bounded): a slow or failing apps API never holds the watch back; a pod is known by
its ReplicaSet until the answer arrives.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

log = logging.getLogger("mamori.pods")


class BadObject(ValueError):
    """A pod object without what every pod has (metadata.uid, namespace, name)."""


@dataclass(frozen=True, slots=True)
class PodContainer:
    name: str
    image: str
    image_id: str


@dataclass(frozen=True, slots=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    labels: dict = field(default_factory=dict)
    owner_kind: str = ""
    owner_name: str = ""
    node: str = ""
    containers: dict = field(default_factory=dict)   # container id -> PodContainer


def strip_runtime(container_id: str) -> str:
    """'containerd://abc' -> 'abc'."""
    return container_id.split("://", 1)[-1] if container_id else ""


def api_client(mode: str = "auto", kubeconfig: str = ""):
    """An ApiClient for the configured mode, or None for standalone (no cluster)."""
    if mode == "off":
        return None
    from kubernetes import client, config
    cfg = client.Configuration()
    if mode == "in-cluster" or (mode == "auto" and os.environ.get("KUBERNETES_SERVICE_HOST")):
        config.load_incluster_config(client_configuration=cfg)
    else:
        path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        if not os.path.exists(path):
            if mode == "kubeconfig":
                raise FileNotFoundError(f"kubeconfig {path} not found")
            return None
        config.load_kube_config(config_file=path, client_configuration=cfg)
    cfg.retries = False          # we retry, with backoff, and say so
    return client.ApiClient(cfg)


class PodWatcher:
    def __init__(self, api_client, node_name: str, backoff=(0.2, 0.5, 1, 2, 5, 10),
                 watch_timeout: int = 300, owner_cache: int = 4096,
                 owner_retry_s: float = 60.0):
        from kubernetes import client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.node_name = node_name
        self.backoff = backoff
        self.watch_timeout = watch_timeout
        self.by_uid: dict[str, PodInfo] = {}
        self.by_container: dict[str, PodInfo] = {}
        self.resource_version: str | None = None
        self.synced = threading.Event()
        self.relists = 0
        self.errors = 0
        self.bad_objects = 0          # pod objects or watch events skipped as malformed
        self.last_error = ""
        self._lock = threading.Lock()   # the maps are replaced whole, under this lock
        self._owners = OwnerCache(owner_cache, owner_retry_s)
        self._owner_queue: queue.Queue = queue.Queue(maxsize=owner_cache)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner_thread: threading.Thread | None = None
        self._resp = None

    # -- lookups (any thread) ----------------------------------------------------------
    def pod_of_container(self, container_id: str) -> PodInfo | None:
        return self.by_container.get(container_id)

    def pod_by_uid(self, uid: str) -> PodInfo | None:
        return self.by_uid.get(uid)

    # -- the loop ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)
        self._owner_thread = threading.Thread(target=self._resolve_owners,
                                              name="pod-owners", daemon=True)
        self._thread.start()
        self._owner_thread.start()

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp                  # unblock a read waiting for the next event
        if resp is not None:
            try:
                if hasattr(resp, "shutdown"):      # urllib3 >= 2.3: wakes a blocked read
                    resp.shutdown()
                resp.close()
            except Exception:  # noqa: BLE001 - closing a dying connection
                pass
        for t in (self._thread, self._owner_thread):
            if t is not None:
                t.join(timeout=5)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self.list()
                self.watch_once()
                failures = 0
            except Exception as e:  # noqa: BLE001 - every failure is retried and counted
                if self._stop.is_set():
                    return
                from kubernetes.client.exceptions import ApiException
                if isinstance(e, (ApiException, WatchExpired)) and \
                        getattr(e, "status", None) == 410:
                    log.info("pod watch expired (410 Gone): listing again")
                    self.resource_version = None
                    continue
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"
                delay = self.backoff[min(failures, len(self.backoff) - 1)]
                failures += 1
                log.warning("pod watch failed (%s); retrying in %.1fs", self.last_error, delay)
                self._stop.wait(delay)

    def _selector(self) -> str:
        return f"spec.nodeName={self.node_name}"

    def list(self) -> None:
        resp = self.core.list_pod_for_all_namespaces(
            field_selector=self._selector(), _request_timeout=30, _preload_content=False)
        try:
            body = json.loads(resp.data)
        finally:
            resp.release_conn()
        if not isinstance(body, dict):
            raise ValueError("the pod list is not a JSON object")
        by_uid = {}
        for item in body.get("items") or ():
            try:
                info = self._info(item)
            except BadObject as e:
                self._bad(f"listed pod skipped: {e}")
                continue
            by_uid[info.uid] = info
        with self._lock:
            self.by_uid = by_uid
            self.by_container = {cid: p for p in by_uid.values() for cid in p.containers}
        self.resource_version = str(_get(body, "metadata", "resourceVersion") or "") or None
        if self.resource_version is None:
            raise ValueError("the pod list has no metadata.resourceVersion")
        self.relists += 1
        self.synced.set()
        log.info("pods on %s: %d (resourceVersion %s)", self.node_name, len(by_uid),
                 self.resource_version)

    def watch_once(self) -> None:
        from kubernetes.watch.watch import iter_resp_lines
        resp = self.core.list_pod_for_all_namespaces(
            field_selector=self._selector(), resource_version=self.resource_version,
            allow_watch_bookmarks=True, timeout_seconds=self.watch_timeout, watch=True,
            _request_timeout=self.watch_timeout + 30, _preload_content=False)
        self._resp = resp
        try:
            if self._stop.is_set():         # stop() came while the request was made
                return
            for line in iter_resp_lines(resp):
                if self._stop.is_set():
                    break
                self.handle_event(line)
        finally:
            self._resp = None
            resp.release_conn()

    def handle_event(self, line) -> None:
        """One line of the watch stream. A malformed event is counted and skipped; the
        resourceVersion moves past it whenever the event says where it is."""
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        if not line or line.isspace():
            return
        try:
            ev = json.loads(line)
        except ValueError:
            self._bad("watch event is not JSON")
            return
        if not isinstance(ev, dict):
            self._bad("watch event is not a JSON object")
            return
        kind, obj = ev.get("type"), ev.get("object")
        if kind == "ERROR":
            code = _get(obj, "code")
            if code == 410:
                raise WatchExpired(str(_get(obj, "message") or "410 Gone"))
            raise ValueError(f"watch error {code}: {_get(obj, 'message')}")
        rv = _get(obj, "metadata", "resourceVersion")
        try:
            if kind == "BOOKMARK":
                pass
            elif kind == "DELETED":
                self._forget(_uid_of(obj))
            elif kind in ("ADDED", "MODIFIED"):
                self._remember(self._info(obj))
            else:
                raise BadObject(f"unknown watch event type {kind!r}")
        except BadObject as e:
            self._bad(f"watch event {kind} skipped: {e}")
        if isinstance(rv, str) and rv:
            self.resource_version = rv

    def _bad(self, why: str) -> None:
        self.bad_objects += 1
        log.warning("%s (%d malformed so far)", why, self.bad_objects)

    # -- model -------------------------------------------------------------------------
    def _remember(self, info: PodInfo) -> None:
        with self._lock:
            old = self.by_uid.get(info.uid)
            self.by_uid = {**self.by_uid, info.uid: info}
            by_container = dict(self.by_container)
            if old is not None:
                for cid in old.containers:
                    by_container.pop(cid, None)
            by_container.update({cid: info for cid in info.containers})
            self.by_container = by_container

    def _forget(self, uid: str) -> None:
        with self._lock:
            if uid not in self.by_uid:
                return
            self.by_uid = {k: v for k, v in self.by_uid.items() if k != uid}
            self.by_container = {k: v for k, v in self.by_container.items() if v.uid != uid}

    def _info(self, pod) -> PodInfo:
        """A PodInfo from the pod's JSON; BadObject when it lacks uid, namespace or name.
        Optional parts that are malformed (a status entry that is not an object, labels
        that are not strings) are left out, not fatal."""
        md = _get(pod, "metadata")
        uid, ns, name = _get(md, "uid"), _get(md, "namespace"), _get(md, "name")
        if not all(isinstance(x, str) and x for x in (uid, ns, name)):
            raise BadObject("no metadata.uid, namespace and name")
        status = _get(pod, "status")
        containers = {}
        for group in ("containerStatuses", "initContainerStatuses",
                      "ephemeralContainerStatuses"):
            entries = _get(status, group)
            for cs in entries if isinstance(entries, list) else ():
                cid = strip_runtime(_str(_get(cs, "containerID")))
                if cid:
                    containers[cid] = PodContainer(_str(_get(cs, "name")),
                                                   _str(_get(cs, "image")),
                                                   _str(_get(cs, "imageID")))
        labels = _get(md, "labels")
        labels = {k: v for k, v in labels.items() if isinstance(k, str) and
                  isinstance(v, str)} if isinstance(labels, dict) else {}
        owner_kind = owner_name = ""
        refs = _get(md, "ownerReferences")
        for ref in refs if isinstance(refs, list) else ():
            if _get(ref, "controller") is True:
                owner_kind, owner_name = _str(_get(ref, "kind")), _str(_get(ref, "name"))
        if owner_kind == "ReplicaSet" and owner_name:
            hit = self._owners.get((ns, owner_name))
            if hit is not None:
                owner_kind, owner_name = hit
            else:
                self._ask_owner(ns, owner_name, uid)
        return PodInfo(ns, name, uid, labels, owner_kind, owner_name,
                       _str(_get(pod, "spec", "nodeName")), containers)

    # -- owners, off the watch thread --------------------------------------------------
    def _ask_owner(self, namespace: str, rs_name: str, uid: str) -> None:
        if self._owners.pending((namespace, rs_name)):
            return
        try:
            self._owner_queue.put_nowait((namespace, rs_name))
        except queue.Full:
            self._owners.done((namespace, rs_name))      # asked again with the next event

    def _resolve_owners(self) -> None:
        while not self._stop.is_set():
            try:
                key = self._owner_queue.get(timeout=0.2)
            except queue.Empty:
                continue
            answer = self._deployment_of(*key)
            self._owners.done(key)
            if answer is None:
                continue
            with self._lock:
                stale = [p for p in self.by_uid.values() if p.namespace == key[0] and
                         (p.owner_kind, p.owner_name) == ("ReplicaSet", key[1])]
            for p in stale:
                if self.by_uid.get(p.uid) is p:
                    self._remember(replace(p, owner_kind=answer[0], owner_name=answer[1]))

    def _deployment_of(self, namespace: str, rs_name: str) -> tuple[str, str] | None:
        """A ReplicaSet's controlling Deployment, or itself when it has none; None when the
        API could not say (cached as a failure, asked again after owner_retry_s)."""
        key = (namespace, rs_name)
        try:
            resp = self.apps.read_namespaced_replica_set(rs_name, namespace,
                                                         _request_timeout=10,
                                                         _preload_content=False)
            try:
                rs = json.loads(resp.data)
            finally:
                resp.release_conn()
        except Exception as e:  # noqa: BLE001 - the pod is still known, by its ReplicaSet
            self._owners.fail(key)
            log.info("owner of replicaset %s/%s unknown: %s", namespace, rs_name, e)
            return None
        result = ("ReplicaSet", rs_name)
        refs = _get(rs, "metadata", "ownerReferences")
        for ref in refs if isinstance(refs, list) else ():
            if _get(ref, "controller") is True and _get(ref, "kind") == "Deployment":
                result = ("Deployment", _str(_get(ref, "name")))
        self._owners.put(key, result)
        return result


class WatchExpired(Exception):
    status = 410


class OwnerCache:
    """ReplicaSet -> owner answers (LRU, bounded), failures remembered for retry_s, and
    the keys being asked now (so a burst of pods asks once)."""

    def __init__(self, size: int, retry_s: float, clock=time.monotonic):
        self.size, self.retry_s, self._clock = size, retry_s, clock
        self._answers: OrderedDict = OrderedDict()
        self._failed: OrderedDict = OrderedDict()
        self._pending: set = set()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            hit = self._answers.get(key)
            if hit is not None:
                self._answers.move_to_end(key)
            return hit

    def pending(self, key) -> bool:
        """True if the key is being asked, or failed less than retry_s ago; else marks it
        as being asked and returns False."""
        with self._lock:
            t = self._failed.get(key)
            if t is not None and self._clock() - t < self.retry_s:
                return True
            if key in self._pending or len(self._pending) >= self.size:
                return True
            self._pending.add(key)
            return False

    def done(self, key) -> None:
        with self._lock:
            self._pending.discard(key)

    def put(self, key, value) -> None:
        with self._lock:
            self._failed.pop(key, None)
            self._answers[key] = value
            self._answers.move_to_end(key)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)

    def fail(self, key) -> None:
        with self._lock:
            self._failed[key] = self._clock()
            self._failed.move_to_end(key)
            while len(self._failed) > self.size:
                self._failed.popitem(last=False)


def _get(obj, *path):
    """obj[path0][path1]… for JSON objects; None where a step is missing or not an object."""
    for p in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(p)
    return obj


def _str(v) -> str:
    return v if isinstance(v, str) else ""


def _uid_of(obj) -> str:
    uid = _get(obj, "metadata", "uid")
    if not isinstance(uid, str) or not uid:
        raise BadObject("no metadata.uid")
    return uid
