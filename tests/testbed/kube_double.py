"""A test double of kube-apiserver, over real HTTP, for what Mamori uses.

kube-apiserver cannot be installed on these machines, so the tests run this instead. The
agent reaches it only through the official `kubernetes` client and a kubeconfig. It speaks
the same JSON shapes and status codes (404 NotFound, 409 AlreadyExists, 410 Expired on a
watch from a compacted resourceVersion, 500), streams watches (chunked, one JSON event per
line, with bookmarks), records every request, and can be told to fail or stall on purpose.

Resources: pods (get, list and watch with field and label selectors, delete, patch),
namespaces (get), networkpolicies (get, list, create, patch, delete), events (create),
replicasets and deployments (get).
"""
from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


@dataclass
class Request:
    method: str
    path: str
    query: dict
    body: object
    content_type: str


@dataclass
class Fault:
    method: str
    path: re.Pattern
    status: int
    times: int
    delay: float = 0.0


def status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "details": details or {}, "code": code}


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (also what strategic merge does for labels)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _json_pointer_set(doc, path, value, remove=False):
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
    cur = doc
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    if remove:
        cur.pop(parts[-1], None)
    else:
        cur[parts[-1]] = value


def _selector_match(obj: dict, field_sel: str | None, label_sel: str | None) -> bool:
    if field_sel:
        for term in field_sel.split(","):
            neg = "!=" in term
            key, val = re.split(r"!=|==|=", term, maxsplit=1)
            cur = obj
            for part in key.split("."):
                cur = cur.get(part, {}) if isinstance(cur, dict) else {}
            cur = cur if isinstance(cur, str) else ""
            if (cur == val) == neg:
                return False
    if label_sel:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        for term in label_sel.split(","):
            term = term.strip()
            if "!=" in term:
                k, v = term.split("!=", 1)
                if labels.get(k) == v:
                    return False
            elif "=" in term:
                k, v = re.split(r"==|=", term, maxsplit=1)
                if labels.get(k) != v:
                    return False
            elif term.startswith("!"):
                if term[1:] in labels:
                    return False
            elif term not in labels:
                return False
    return True


class KubeDouble:
    def __init__(self, bookmark_interval: float = 1.0):
        self._lock = threading.Condition()
        self.rv = 100
        self.compacted_rv = 0               # a watch from below this gets 410 Expired
        self.pods: dict[tuple[str, str], dict] = {}
        self.namespaces: dict[str, dict] = {}
        self.networkpolicies: dict[tuple[str, str], dict] = {}
        self.replicasets: dict[tuple[str, str], dict] = {}
        self.deployments: dict[tuple[str, str], dict] = {}
        self.events: list[dict] = []
        self.pod_log: list[tuple[int, str, dict]] = []   # (rv, type, pod) for watches
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.bookmark_interval = bookmark_interval
        self._server: ThreadingHTTPServer | None = None
        self._closed = False
        self._watch_epoch = 0               # end_watches() bumps it: open watches end

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "KubeDouble":
        double = self

        class Handler(_Handler):
            kube = double
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def write_kubeconfig(self, path: str) -> str:
        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "double",
               "clusters": [{"name": "double", "cluster": {"server": self.url}}],
               "users": [{"name": "double", "user": {"token": "test-token"}}],
               "contexts": [{"name": "double",
                             "context": {"cluster": "double", "user": "double"}}]}
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path

    # -- test controls -----------------------------------------------------------------
    def fail(self, method: str, path_regex: str, status_code: int, times: int = 1) -> None:
        """The next `times` matching requests answer status_code."""
        self.faults.append(Fault(method, re.compile(path_regex), status_code, times))

    def stall(self, method: str, path_regex: str, seconds: float, times: int = 1) -> None:
        self.faults.append(Fault(method, re.compile(path_regex), 0, times, seconds))

    def end_watches(self) -> None:
        """End every open watch cleanly, as kube-apiserver does at its timeout."""
        with self._lock:
            self._watch_epoch += 1
            self._lock.notify_all()

    def bump(self) -> None:
        """Advance the resourceVersion with a change no pod watch on this node sees."""
        with self._lock:
            self._next_rv()

    def compact(self) -> None:
        """Forget the watch history: a watch from an older resourceVersion gets 410."""
        with self._lock:
            self.compacted_rv = self.rv

    def requests_to(self, method: str, path_regex: str) -> list[Request]:
        rx = re.compile(path_regex)
        return [r for r in self.requests if r.method == method and rx.search(r.path)]

    # -- objects -----------------------------------------------------------------------
    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def add_namespace(self, name: str, labels: dict | None = None) -> dict:
        with self._lock:
            ns = {"kind": "Namespace", "apiVersion": "v1",
                  "metadata": {"name": name, "uid": str(uuid.uuid4()), "labels": labels or {},
                               "resourceVersion": self._next_rv(),
                               "creationTimestamp": "2026-11-22T00:00:00Z"},
                  "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
            self.namespaces[name] = ns
            return ns

    def add_workload(self, namespace: str, deployment: str, replicaset: str) -> tuple[dict, dict]:
        """A Deployment and the ReplicaSet it controls."""
        with self._lock:
            dep_uid = str(uuid.uuid4())
            dep = {"kind": "Deployment", "apiVersion": "apps/v1",
                   "metadata": {"name": deployment, "namespace": namespace, "uid": dep_uid,
                                "resourceVersion": self._next_rv()},
                   "spec": {"selector": {"matchLabels": {"app": deployment}},
                            "template": {"metadata": {"labels": {"app": deployment}},
                                         "spec": {"containers": [{"name": "c", "image": "x"}]}}},
                   "status": {}}
            rs = {"kind": "ReplicaSet", "apiVersion": "apps/v1",
                  "metadata": {"name": replicaset, "namespace": namespace,
                               "uid": str(uuid.uuid4()), "resourceVersion": self._next_rv(),
                               "ownerReferences": [{"apiVersion": "apps/v1",
                                                    "kind": "Deployment", "name": deployment,
                                                    "uid": dep_uid, "controller": True,
                                                    "blockOwnerDeletion": True}]},
                  "spec": {"selector": {"matchLabels": {"app": deployment}}},
                  "status": {"replicas": 1}}
            self.deployments[(namespace, deployment)] = dep
            self.replicasets[(namespace, replicaset)] = rs
            return dep, rs

    @staticmethod
    def make_pod(namespace: str, name: str, node: str, containers: dict[str, dict],
                 labels: dict | None = None, owner: tuple[str, str] | None = None,
                 uid: str | None = None) -> dict:
        """containers: name -> {"id": runtime://id, "image": ..., "imageID": ...}."""
        md = {"name": name, "namespace": namespace, "uid": uid or str(uuid.uuid4()),
              "labels": labels or {}, "creationTimestamp": "2026-11-22T00:00:00Z"}
        if owner:
            md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0],
                                      "name": owner[1], "uid": str(uuid.uuid4()),
                                      "controller": True, "blockOwnerDeletion": True}]
        return {
            "kind": "Pod", "apiVersion": "v1", "metadata": md,
            "spec": {"nodeName": node, "containers": [
                {"name": n, "image": c.get("image", "busybox")} for n, c in containers.items()]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": n, "containerID": c.get("id", ""), "image": c.get("image", "busybox"),
                 "imageID": c.get("imageID", ""), "ready": True, "restartCount": 0,
                 "started": True, "state": {"running": {"startedAt": "2026-11-22T00:00:01Z"}},
                 "lastState": {}}
                for n, c in containers.items()]},
        }

    def put_pod(self, pod: dict) -> dict:
        with self._lock:
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            kind = "MODIFIED" if key in self.pods else "ADDED"
            pod = copy.deepcopy(pod)
            pod["metadata"]["resourceVersion"] = self._next_rv()
            self.pods[key] = pod
            self.pod_log.append((self.rv, kind, copy.deepcopy(pod)))
            self._lock.notify_all()
            return pod

    def put_raw_pod(self, key: tuple[str, str], obj, kind: str = "ADDED") -> None:
        """Store and announce an object as given, however malformed (for the tests of what
        the agent does with a pod the client's models would refuse). It matches the node
        field selector `node` through obj["spec"]["nodeName"] when there is one."""
        with self._lock:
            self._next_rv()
            self.pods[key] = copy.deepcopy(obj)
            self.pod_log.append((self.rv, kind, copy.deepcopy(obj)))
            self._lock.notify_all()

    def remove_pod(self, namespace: str, name: str) -> dict | None:
        with self._lock:
            pod = self.pods.pop((namespace, name), None)
            if pod is not None:
                pod = copy.deepcopy(pod)
                pod["metadata"]["resourceVersion"] = self._next_rv()
                self.pod_log.append((self.rv, "DELETED", pod))
                self._lock.notify_all()
            return pod


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    kube: KubeDouble

    def log_message(self, *args):       # quiet
        pass

    # -- plumbing ----------------------------------------------------------------------
    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode(errors="replace")

    def _send(self, code: int, obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        k = self.kube
        url = urlparse(self.path)
        query = {a: v[-1] for a, v in parse_qs(url.query).items()}
        body = self._body() if method in ("POST", "PATCH", "PUT") else None
        with k._lock:
            k.requests.append(Request(method, url.path, query, body,
                                      self.headers.get("Content-Type", "")))
            fault = None
            for f in k.faults:
                if f.times > 0 and f.method == method and f.path.search(url.path):
                    f.times -= 1
                    fault = f
                    break
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status:
                return self._send(fault.status, status(
                    fault.status, {500: "InternalError", 503: "ServiceUnavailable",
                                   429: "TooManyRequests"}.get(fault.status, "Unknown"),
                    f"injected failure {fault.status}"))
        try:
            self._route(method, url.path, query, body)
        except BrokenPipeError:
            pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PUT(self):
        self._handle("PUT")

    # -- routes ------------------------------------------------------------------------
    def _route(self, method, path, q, body):
        k = self.kube
        m = re.fullmatch(r"/api/v1(?:/namespaces/([^/]+))?/pods", path)
        if m and method == "GET":
            if q.get("watch") in ("true", "1"):
                return self._watch_pods(m.group(1), q)
            return self._list("PodList", k.pods, m.group(1), q)
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)", path)
        if m:
            return self._one(method, "pods", k.pods, m.groups(), body, watchable=True)
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)", path)
        if m and method == "GET":
            ns = k.namespaces.get(m.group(1))
            if ns is None:
                return self._send(404, status(404, "NotFound",
                                              f'namespaces "{m.group(1)}" not found',
                                              {"name": m.group(1), "kind": "namespaces"}))
            return self._send(200, ns)
        m = re.fullmatch(r"/apis/networking\.k8s\.io/v1/namespaces/([^/]+)/networkpolicies",
                         path)
        if m and method == "GET":
            return self._list("NetworkPolicyList", k.networkpolicies, m.group(1), q,
                              api="networking.k8s.io/v1")
        if m and method == "POST":
            return self._create("networkpolicies", "NetworkPolicy", "networking.k8s.io/v1",
                                k.networkpolicies, m.group(1), body)
        m = re.fullmatch(
            r"/apis/networking\.k8s\.io/v1/namespaces/([^/]+)/networkpolicies/([^/]+)", path)
        if m:
            return self._one(method, "networkpolicies", k.networkpolicies, m.groups(), body)
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/events", path)
        if m and method == "POST":
            return self._create("events", "Event", "v1", None, m.group(1), body)
        m = re.fullmatch(r"/apis/events\.k8s\.io/v1/namespaces/([^/]+)/events", path)
        if m and method == "POST":
            return self._create("events", "Event", "events.k8s.io/v1", None, m.group(1), body)
        m = re.fullmatch(r"/apis/apps/v1/namespaces/([^/]+)/(replicasets|deployments)/([^/]+)",
                         path)
        if m and method == "GET":
            store = k.replicasets if m.group(2) == "replicasets" else k.deployments
            return self._one("GET", m.group(2), store, (m.group(1), m.group(3)), None)
        self._send(404, status(404, "NotFound", "the server could not find the requested "
                                                "resource"))

    def _list(self, kind, store, ns, q, api="v1"):
        k = self.kube
        with k._lock:
            items = [copy.deepcopy(o) for (ons, _), o in sorted(store.items())
                     if (ns is None or ons == ns)
                     and _selector_match(o, q.get("fieldSelector"), q.get("labelSelector"))]
            rv = str(k.rv)
        self._send(200, {"kind": kind, "apiVersion": api,
                         "metadata": {"resourceVersion": rv}, "items": items})

    def _create(self, resource, kind, api, store, ns, body):
        k = self.kube
        if not isinstance(body, dict):
            return self._send(400, status(400, "BadRequest", "body must be a JSON object"))
        with k._lock:
            obj = copy.deepcopy(body)
            md = obj.setdefault("metadata", {})
            if not md.get("name") and md.get("generateName"):
                md["name"] = md["generateName"] + uuid.uuid4().hex[:5]
            md["namespace"] = ns
            md["uid"] = str(uuid.uuid4())
            md["resourceVersion"] = k._next_rv()
            md.setdefault("creationTimestamp", "2026-11-22T00:00:00Z")
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", api)
            if store is None:
                k.events.append(obj)
            else:
                key = (ns, md.get("name", ""))
                if key in store:
                    return self._send(409, status(
                        409, "AlreadyExists", f'{resource} "{key[1]}" already exists',
                        {"name": key[1], "kind": resource}))
                store[key] = obj
        self._send(201, obj)

    def _one(self, method, resource, store, key, body, watchable=False):
        k = self.kube
        with k._lock:
            obj = store.get(tuple(key))
            if obj is None:
                return self._send(404, status(404, "NotFound",
                                              f'{resource} "{key[1]}" not found',
                                              {"name": key[1], "kind": resource}))
            if method == "GET":
                return self._send(200, copy.deepcopy(obj))
            if method == "DELETE":
                if watchable:
                    gone = k.remove_pod(*key)
                else:
                    gone = store.pop(tuple(key))
                return self._send(200, gone)
            if method == "PATCH":
                ctype = self.headers.get("Content-Type", "")
                new = copy.deepcopy(obj)
                if "json-patch" in ctype:
                    for op in body or ():
                        _json_pointer_set(new, op["path"], op.get("value"),
                                          remove=op["op"] == "remove")
                else:
                    new = merge_patch(new, body or {})
                if watchable:
                    return self._send(200, k.put_pod(new))
                new["metadata"]["resourceVersion"] = k._next_rv()
                store[tuple(key)] = new
                return self._send(200, new)
        self._send(405, status(405, "MethodNotAllowed", f"{method} not allowed"))

    # -- watch -------------------------------------------------------------------------
    def _chunk(self, obj) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch_pods(self, ns, q):
        k = self.kube
        since = int(q.get("resourceVersion") or 0)
        timeout = float(q.get("timeoutSeconds") or 300)
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + k.bookmark_interval
        epoch = k._watch_epoch
        try:
            with k._lock:
                if since and since < k.compacted_rv:
                    self._chunk({"type": "ERROR", "object": status(
                        410, "Expired", f"too old resource version: {since} "
                                        f"({k.compacted_rv})")})
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if not since:
                    since = k.rv   # a watch without a resourceVersion starts now
            while True:
                with k._lock:
                    pending = [(rv, t, o) for rv, t, o in k.pod_log if rv > since
                               and (ns is None or
                                    ((o.get("metadata") or {}).get("namespace") == ns))
                               and _selector_match(o, q.get("fieldSelector"),
                                                   q.get("labelSelector"))]
                    if not pending:
                        if k._closed or k._watch_epoch != epoch or \
                                time.monotonic() >= deadline:
                            break
                        k._lock.wait(timeout=0.1)
                for rv, t, o in pending:
                    self._chunk({"type": t, "object": o})
                    since = rv
                if bookmarks and time.monotonic() >= next_bookmark:
                    with k._lock:
                        current = k.rv
                    self._chunk({"type": "BOOKMARK", "object": {
                        "kind": "Pod", "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(current)}}})
                    next_bookmark = time.monotonic() + k.bookmark_interval
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
