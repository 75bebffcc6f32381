"""The response stage: what the policy says to do about an alert, done.

The node-local part runs at once, in the evaluator, before the alert is published —
SIGKILL to the process and its whole container, or the container's cgroup isolated — so it
takes effect within milliseconds and the alert already says so. The Kubernetes API part
(delete the pod and record an Event; label the pod and make sure the quarantine
NetworkPolicy exists) runs on its own thread with its own queue, so a slow API never slows
detection; its outcome is published as a follow-up record of the same alert (same id,
`source: response`). Every outcome — done, failed and why, skipped and why, audit — is on
the alert.

A container whose pod is not known yet (or whose namespace's labels are not) is deferred:
the response thread looks for the pod in the pod watch, with backoff, for up to
`unknown_pod_wait_seconds`, then applies the full policy (policy.py says what is done on
the node meanwhile). An isolation the full policy would not have made is undone.

What this node isolated is kept in a small JSON file (0600, in a 0700 directory) so that
`isolated_by_me()` — which the Release RPC checks — survives a restart:
    {"version": 1, "isolated": {"NAMESPACE/POD": ["/sys/fs/cgroup/…", …], …}}
At most MAX_ISOLATED pods, the oldest forgotten first. A file that cannot be read is
logged and ignored (the agent then only releases what it isolates from now on)."""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, replace

from ..alerts.alert import Alert, Response
from .local import cgroup_holds, kill_cgroup, kill_process
from .policy import Guard, Policy

log = logging.getLogger("mamori.response")
MAX_ISOLATED = 10000


@dataclass
class _Deferred:
    rec: Alert
    local: str | None        # the node-local action already done, if any
    deadline: float
    next_try: float = 0.0
    tries: int = 0
    why: str = ""


class Responder:
    def __init__(self, policy: Policy, cgroup_root: str, publish, kube=None,
                 isolator_factory=None, queue_size: int = 1000, pods=None,
                 state_path: str | None = None, clock=time.monotonic):
        self.guard = Guard(policy, labels_readable=kube is not None)
        self.policy = policy
        self.cgroup_root = cgroup_root
        self.publish = publish                  # callable(Alert) for follow-up records
        self.kube = kube                        # KubeActions or None (standalone)
        self.pods = pods                        # the pod watch (pod_of_container) or None
        self.clock = clock
        self._isolator_factory = isolator_factory
        self._isolator = None
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.queue_size = queue_size
        self.queue_drops = 0
        self._lock = threading.Lock()
        self.by_pod: dict[str, list[str]] = {}  # ns/pod -> isolated cgroup directories
        self.state_path = state_path
        self._load_state()
        self._deferred: list[_Deferred] = []   # the response thread's own
        self.outcomes: dict[tuple[str, str], int] = {}
        # detect -> node-local action, ns: from the event's kernel timestamp (CLOCK_MONOTONIC)
        # to the moment the SIGKILL or the isolation was done
        self.latencies_ns: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._api_loop, name="responder", daemon=True)
        self._thread.start()

    def _count(self, action: str, status: str) -> None:
        self.outcomes[(action, status)] = self.outcomes.get((action, status), 0) + 1

    def warm_up(self) -> None:
        """Compile the isolation programs now, not at the first isolation (~0.3 s)."""
        if self._isolator is None and self._isolator_factory is not None:
            self._isolator = self._isolator_factory()

    # -- what this node isolated (any thread) ------------------------------------------
    def isolated_by_me(self, namespace: str, pod: str) -> bool:
        """Did this agent (this run or an earlier one on this node) isolate the pod, and
        has it not been released since? The Release RPC releases nothing else."""
        with self._lock:
            return f"{namespace}/{pod}" in self.by_pod

    def _remember(self, key: str, cgroup_dir: str) -> None:
        with self._lock:
            dirs = self.by_pod.pop(key, [])     # re-inserted: the newest last
            if cgroup_dir not in dirs:
                dirs.append(cgroup_dir)
            self.by_pod[key] = dirs
            while len(self.by_pod) > MAX_ISOLATED:
                self.by_pod.pop(next(iter(self.by_pod)))
            self._save_state()

    def _load_state(self) -> None:
        if not self.state_path or not os.path.exists(self.state_path):
            return
        try:
            with open(self.state_path) as f:
                data = json.load(f)
            got = data.get("isolated") or {}
            self.by_pod = {str(k): [str(d) for d in v] for k, v in got.items()
                           if isinstance(v, list)}
        except (OSError, ValueError, AttributeError) as e:
            log.warning("response state %s not read (%s): only pods isolated from now on "
                        "can be released", self.state_path, e)

    def _save_state(self) -> None:
        """Called with the lock held."""
        if not self.state_path:
            return
        d = os.path.dirname(self.state_path) or "."
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
            tmp = f"{self.state_path}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"version": 1, "isolated": self.by_pod}, f)
            os.replace(tmp, self.state_path)
        except OSError as e:
            log.warning("response state %s not written: %s", self.state_path, e)

    # -- in the evaluator --------------------------------------------------------------
    def respond(self, rec: Alert) -> Alert:
        """Decide, act on the node; the alert with the outcome as its response."""
        d = self.guard.decide(rec)
        if d.action == "log":
            return rec
        f = rec.fields
        if d.status in ("skipped", "audit"):
            self._count(d.action, d.status)
            return rec.with_response(Response(d.action, d.status, d.detail))
        local = None
        if d.status == "pending" or d.local_now:
            status, detail = self._act_local(d.action, f)
            if status == "done":
                local = d.action
                ts = f.get("event.ts")
                if ts:
                    if len(self.latencies_ns) >= 10000:
                        del self.latencies_ns[:5000]
                    self.latencies_ns.append(time.monotonic_ns() - int(ts))
        else:
            status, detail = "pending", f"nothing done yet: {d.detail}"
        r = Response(d.action, status, detail)
        if d.status == "pending":
            self._count(d.action, status)
            rec = rec.with_response(r)
            if self.kube is not None and f.get("k8s.pod"):
                rec = self._enqueue("api", rec, None)
            return rec
        # deferred: the rest once the pod (or its namespace's labels) is known
        if f.get("k8s.ns") is None and self.pods is None:
            if local is None and status == "pending":
                r = replace(r, status="skipped", detail=(
                    f"{d.detail}, and cannot be without the Kubernetes API: nothing done"))
            self._count(d.action, r.status)
            return rec.with_response(r)
        r = r.added("the rest once the pod is known" if f.get("k8s.ns") is None else
                    "the rest once its namespace's labels are known")
        if r.status != "pending":                       # done or failed on the node
            self._count(d.action, r.status)
        return self._enqueue("deferred", rec.with_response(r), local,
                             self.policy.unknown_pod_wait_seconds)

    def _enqueue(self, kind: str, rec: Alert, local: str | None, wait: float = 0.0) -> Alert:
        """Hand the API part to the response thread; the alert as published (which says
        so when the queue is full)."""
        item = (kind, _Deferred(rec, local, self.clock() + wait, why=rec.response.detail)
                if kind == "deferred" else rec, None)
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.queue_drops += 1
            return rec.with_response(rec.response.added(
                "API part not attempted: response queue full"))
        return rec

    def _act_local(self, action: str, f: dict) -> tuple[str, str]:
        cgroup_dir = self.cgroup_root + (f.get("container.cgroup") or "")
        try:
            if action == "terminate":
                return "done", self._terminate_local(f, cgroup_dir)
            return "done", self._isolate_local(cgroup_dir, f)
        except Exception as e:  # noqa: BLE001 - reported on the alert, never raised
            return "failed", f"on the node: {type(e).__name__}: {e}"

    def _container_dir(self, f: dict, cgroup_dir: str) -> bool:
        """Is cgroup_dir still the directory of the event's container (not one made again
        under the same name)?"""
        if not f.get("container.cgroup") or not os.path.isdir(cgroup_dir):
            return False
        cgid = f.get("proc.cgroup_id")
        return not cgid or cgroup_holds(cgroup_dir, int(cgid))

    def _terminate_local(self, f: dict, cgroup_dir: str) -> str:
        pid = f.get("proc.pid")
        if not self._container_dir(f, cgroup_dir):
            return f"process {pid} not signalled: the container's cgroup is gone"
        killed, why = kill_process(int(pid), f.get("event.ts"), cgroup_dir,
                                   f.get("proc.exec_id")) if pid else \
            (False, "no pid")
        n = kill_cgroup(cgroup_dir)
        head = f"killed process {pid}" if killed else (
            f"process {pid} already gone" if why == "gone" else
            f"process {pid} not signalled: {why}")
        return head + ("; killed every process of the container" if n else "")

    def _isolate_local(self, cgroup_dir: str, f: dict) -> str:
        if not self._container_dir(f, cgroup_dir):
            raise FileNotFoundError(f"the cgroup of container {f.get('container.id')} is gone")
        if self._isolator is None:
            self._isolator = self._isolator_factory()
        self._isolator.isolate(cgroup_dir)
        if f.get("k8s.pod"):
            self._remember(f"{f.get('k8s.ns')}/{f.get('k8s.pod')}", cgroup_dir)
        return f"network of container {f.get('container.id')} cut on the node"

    # -- the API, on its own thread ----------------------------------------------------
    def _api_loop(self) -> None:
        while not self._stop.is_set():
            try:
                kind, item, _ = self.queue.get(timeout=0.1 if self._deferred else 0.2)
            except queue.Empty:
                kind = None
            if kind == "api":
                self._api_part(item)
            elif kind == "deferred":
                if len(self._deferred) >= self.queue_size:
                    self._expire(item, "too many alerts wait for their pods")
                else:
                    self._deferred.append(item)
            self._work_deferred()

    def _api_call(self, action: str, rec: Alert) -> tuple[str, str]:
        f = rec.fields
        ns, pod = f.get("k8s.ns"), f.get("k8s.pod")
        if action == "terminate":
            s1, d1 = self.kube.delete_pod(ns, pod, self.policy.grace_period_seconds)
            s2, d2 = self.kube.record_event(
                ns, pod, f.get("k8s.pod_uid") or "", "MamoriTerminated",
                f"Mamori terminated the pod: rule {rec.rule!r}, alert {rec.id}")
            return ("done" if s1 == s2 == "done" else "failed"), f"{d1}; {d2}"
        return self.kube.quarantine(ns, pod)

    def _api_part(self, rec: Alert) -> None:
        r = rec.response
        api_status, api_detail = self._api_call(r.action, rec)
        status = "done" if r.status == "done" and api_status == "done" else "failed"
        self._count(r.action + "-api", api_status)
        self.publish(rec.with_response(r.added(api_detail, status=status), "response"))

    def _work_deferred(self) -> None:
        now = self.clock()
        for d in list(self._deferred):
            if now < d.next_try:
                continue
            try:
                done = self._resolve(d)
            except Exception as e:  # noqa: BLE001 - never kills the response thread
                log.warning("deferred response for %s: %s", d.rec.id, e)
                done = False
            if done:
                self._deferred.remove(d)
            elif now >= d.deadline:
                self._deferred.remove(d)
                self._expire(d, d.why)
            else:
                d.tries += 1
                d.next_try = now + min(5.0, 0.2 * 2 ** d.tries)

    def _resolve(self, d: _Deferred) -> bool:
        """Apply the full policy once the pod and its namespace's labels are known."""
        f = d.rec.fields
        if f.get("k8s.ns") is None:
            pod = self.pods.pod_of_container(f.get("container.id") or "") if self.pods \
                else None
            if pod is None:
                d.why = f"the pod of container {f.get('container.id')} was not known"
                return False
            d.rec = d.rec.with_fields({
                "k8s.ns": pod.namespace, "k8s.pod": pod.name, "k8s.pod_uid": pod.uid,
                "k8s.labels": dict(pod.labels), "k8s.owner_kind": pod.owner_kind,
                "k8s.owner_name": pod.owner_name})
            f = d.rec.fields
        ns = f["k8s.ns"]
        if self.guard.needs_namespace_labels(ns):
            labels = self.kube.namespace_labels(ns)
            if labels is None:
                d.why = f"the labels of namespace {ns} could not be read"
                return False
            self.guard.set_namespace_labels(ns, labels)
        full = self.guard.recheck(d.rec)
        if full.status == "deferred":
            d.why = full.detail
            return False
        self._finish(d, full)
        return True

    def _finish(self, d: _Deferred, full) -> None:
        rec, f = d.rec, d.rec.fields
        notes = [f"pod {f['k8s.ns']}/{f['k8s.pod']} known: {full.detail}"]
        cgroup_dir = self.cgroup_root + (f.get("container.cgroup") or "")
        if full.status == "skipped":
            action, status = d.local or full.action, "skipped"
            if d.local == "isolate":
                undone = self._isolator is not None and self._isolator.release(cgroup_dir)
                notes.append("the node-local isolation is undone" if undone else
                             "the node-local isolation could not be undone")
            elif d.local == "terminate":
                notes.append("the container had been killed on the node before its pod "
                             "was known")
        else:
            action, statuses = full.action, []
            if d.local is None or (action == "terminate" and d.local == "isolate"):
                s, det = self._act_local(action, f)
                statuses.append(s)
                notes.append(det)
            elif d.local == "isolate":
                self._remember(f"{f['k8s.ns']}/{f['k8s.pod']}", cgroup_dir)
            if self.kube is not None:
                s, det = self._api_call(action, rec)
                statuses.append(s)
                notes.append(det)
                self._count(action + "-api", s)
            status = "done" if all(s == "done" for s in statuses) and (
                d.local is not None or statuses) else "failed"
        r = replace(rec.response, action=action, status=status,
                    detail="; ".join([rec.response.detail, *notes]))
        # the action is counted once: when it was done on the node, or now
        if d.local is None:
            self._count(action, status)
        elif status == "skipped":
            self._count(action + "-api", "skipped")
        self.publish(rec.with_response(r, "response"))

    def _expire(self, d: _Deferred, why: str) -> None:
        r = d.rec.response
        wait = self.policy.unknown_pod_wait_seconds
        if d.local is not None:
            r = r.added(f"{why} within {wait} s: the API part was not attempted",
                        status="failed")
        else:
            r = replace(r, status="skipped", detail=f"{why} within {wait} s: nothing done")
        self._count(r.action if d.local is None else r.action + "-api", r.status)
        self.publish(d.rec.with_response(r, "response"))

    def release(self, namespace: str, pod: str) -> tuple[str, str]:
        """Undo an isolation this node made: the node-local programs and the quarantine
        label. A pod this node did not isolate is refused."""
        key = f"{namespace}/{pod}"
        with self._lock:
            dirs = list(self.by_pod.get(key, ()))
            known = key in self.by_pod
        if not known:
            return "failed", f"{key} was not isolated by this node"
        details = []
        for d in dirs:
            if self._isolator is not None and self._isolator.release(d):
                details.append(f"network of {d} restored on the node")
            else:
                details.append(f"network of {d}: isolated by an earlier run of the agent, "
                               "nothing of it to undo on the node in this run")
        status = "done"
        if self.kube is not None:
            s, d = self.kube.release(namespace, pod)
            details.append(d)
            status = s
        if status == "done":
            with self._lock:
                self.by_pod.pop(key, None)
                self._save_state()
        return status, "; ".join(details)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._isolator is not None:
            self._isolator.close()
