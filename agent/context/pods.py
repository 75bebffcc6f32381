"""The pods on this node, from the Kubernetes API: one watch (spec.nodeName field selector)
with the official client. List, then watch from the list's resourceVersion with bookmarks;
on 410 Gone, list again; on any other failure, reconnect with backoff. Maps container ids
(containerStatuses[].containerID) and pod uids to pod metadata, resolving a ReplicaSet owner
to its Deployment. Runs in its own thread: the event pipeline never waits for the API."""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

log = logging.getLogger("mamori.pods")


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
                 watch_timeout: int = 300):
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
        self.last_error = ""
        self._rs_owner: dict[tuple[str, str], tuple[str, str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch = None

    # -- lookups (any thread) ----------------------------------------------------------
    def pod_of_container(self, container_id: str) -> PodInfo | None:
        return self.by_container.get(container_id)

    def pod_by_uid(self, uid: str) -> PodInfo | None:
        return self.by_uid.get(uid)

    # -- the loop ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        w = self._watch
        if w is not None:
            w.stop()
            resp = getattr(w, "_resp", None)   # unblock a read waiting for the next event
            if resp is not None:
                try:
                    resp.close()
                except Exception:  # noqa: BLE001 - closing a dying connection
                    pass
        if self._thread is not None:
            self._thread.join(timeout=5)

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
                if isinstance(e, ApiException) and e.status == 410:
                    log.info("pod watch expired (410 Gone): listing again")
                    self.resource_version = None
                    continue
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"
                delay = self.backoff[min(failures, len(self.backoff) - 1)]
                failures += 1
                log.warning("pod watch failed (%s); retrying in %.1fs", self.last_error, delay)
                self._stop.wait(delay)

    def list(self) -> None:
        pods = self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node_name}", _request_timeout=30)
        by_uid = {}
        for pod in pods.items:
            info = self._info(pod)
            by_uid[info.uid] = info
        self.by_uid = by_uid
        self.by_container = {cid: p for p in by_uid.values() for cid in p.containers}
        self.resource_version = pods.metadata.resource_version
        self.relists += 1
        self.synced.set()
        log.info("pods on %s: %d (resourceVersion %s)", self.node_name, len(by_uid),
                 self.resource_version)

    def watch_once(self) -> None:
        from kubernetes import watch
        self._watch = w = watch.Watch()
        for ev in w.stream(self.core.list_pod_for_all_namespaces,
                           field_selector=f"spec.nodeName={self.node_name}",
                           resource_version=self.resource_version,
                           allow_watch_bookmarks=True, timeout_seconds=self.watch_timeout,
                           _request_timeout=self.watch_timeout + 30):
            if self._stop.is_set():
                break
            kind, pod = ev["type"], ev["object"]
            # bookmarks stay plain dicts (the client does not deserialize them)
            rv = ((ev.get("raw_object") or {}).get("metadata") or {}).get("resourceVersion")
            if kind == "BOOKMARK":
                pass
            elif kind == "DELETED":
                self._forget(pod.metadata.uid)
            elif kind in ("ADDED", "MODIFIED"):
                self._remember(self._info(pod))
            if rv:
                self.resource_version = rv
        self._watch = None

    # -- model -------------------------------------------------------------------------
    def _remember(self, info: PodInfo) -> None:
        old = self.by_uid.get(info.uid)
        self.by_uid = {**self.by_uid, info.uid: info}
        by_container = dict(self.by_container)
        if old is not None:
            for cid in old.containers:
                by_container.pop(cid, None)
        by_container.update({cid: info for cid in info.containers})
        self.by_container = by_container

    def _forget(self, uid: str) -> None:
        old = self.by_uid.get(uid)
        if old is None:
            return
        self.by_uid = {k: v for k, v in self.by_uid.items() if k != uid}
        self.by_container = {k: v for k, v in self.by_container.items() if v.uid != uid}

    def _info(self, pod) -> PodInfo:
        md, st = pod.metadata, pod.status
        containers = {}
        for group in (st.container_statuses, st.init_container_statuses,
                      st.ephemeral_container_statuses) if st else ():
            for cs in group or ():
                cid = strip_runtime(cs.container_id or "")
                if cid:
                    containers[cid] = PodContainer(cs.name, cs.image or "", cs.image_id or "")
        owner_kind = owner_name = ""
        for ref in md.owner_references or ():
            if ref.controller:
                owner_kind, owner_name = ref.kind, ref.name
        if owner_kind == "ReplicaSet":
            owner_kind, owner_name = self._deployment_of(md.namespace, owner_name)
        return PodInfo(md.namespace, md.name, md.uid, dict(md.labels or {}), owner_kind,
                       owner_name, pod.spec.node_name if pod.spec else "", containers)

    def _deployment_of(self, namespace: str, rs_name: str) -> tuple[str, str]:
        """A ReplicaSet's controlling Deployment, if it has one (cached)."""
        key = (namespace, rs_name)
        hit = self._rs_owner.get(key)
        if hit:
            return hit
        result = ("ReplicaSet", rs_name)
        try:
            rs = self.apps.read_namespaced_replica_set(rs_name, namespace, _request_timeout=10)
            for ref in rs.metadata.owner_references or ():
                if ref.controller and ref.kind == "Deployment":
                    result = ("Deployment", ref.name)
            self._rs_owner[key] = result
        except Exception as e:  # noqa: BLE001 - the pod is still known, by its ReplicaSet
            log.info("owner of replicaset %s/%s unknown: %s", namespace, rs_name, e)
        return result
