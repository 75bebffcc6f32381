"""The response stage: what the policy says to do about an alert, done.

The node-local part runs at once, in the evaluator, before the alert is published —
SIGKILL to the process and its whole container, or the container's cgroup isolated — so it
takes effect within milliseconds and the alert already says so. The Kubernetes API part
(delete the pod and record an Event; label the pod and make sure the quarantine
NetworkPolicy exists) runs on its own thread with its own queue, so a slow API never slows
detection; its outcome is published as a follow-up record of the same alert (same id,
`source: response`). Every outcome — done, failed and why, skipped and why, audit — is on
the alert."""
from __future__ import annotations

import copy
import logging
import os
import queue
import threading
import time

from .local import kill_cgroup, kill_process
from .policy import Guard, Policy

log = logging.getLogger("mamori.response")


class Responder:
    def __init__(self, policy: Policy, cgroup_root: str, publish, kube=None,
                 isolator_factory=None, queue_size: int = 1000):
        self.guard = Guard(policy)
        self.policy = policy
        self.cgroup_root = cgroup_root
        self.publish = publish                  # callable(record) for follow-up records
        self.kube = kube                        # KubeActions or None (standalone)
        self._isolator_factory = isolator_factory
        self._isolator = None
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.queue_drops = 0
        self.by_pod: dict[str, list[str]] = {}  # ns/pod -> isolated cgroup directories
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

    # -- in the evaluator --------------------------------------------------------------
    def respond(self, rec: dict) -> None:
        """Decide, act on the node, and write the outcome into rec["response"]."""
        d = self.guard.decide(rec)
        if d.action == "log":
            return
        f = rec.get("fields") or {}
        if d.status != "pending":
            rec["response"] = {"action": d.action, "status": d.status, "detail": d.detail}
            self._count(d.action, d.status)
            return
        cgroup_dir = self.cgroup_root + (f.get("container.cgroup") or "")
        try:
            if d.action == "terminate":
                detail = self._terminate_local(f.get("proc.pid"), cgroup_dir)
            else:
                detail = self._isolate_local(cgroup_dir, f)
            status = "done"
            ts = f.get("event.ts")
            if ts:
                if len(self.latencies_ns) >= 10000:
                    del self.latencies_ns[:5000]
                self.latencies_ns.append(time.monotonic_ns() - int(ts))
        except Exception as e:  # noqa: BLE001 - reported on the alert, never raised
            status, detail = "failed", f"on the node: {type(e).__name__}: {e}"
        rec["response"] = {"action": d.action, "status": status, "detail": detail}
        self._count(d.action, status)
        if self.kube is not None and f.get("k8s.pod"):
            try:
                self.queue.put_nowait(copy.deepcopy(rec))
            except queue.Full:
                self.queue_drops += 1
                rec["response"]["detail"] += "; API part not attempted: response queue full"

    def _terminate_local(self, pid, cgroup_dir: str) -> str:
        killed = kill_process(int(pid)) if pid else False
        n = kill_cgroup(cgroup_dir) if os.path.isdir(cgroup_dir) else 0
        return (f"killed process {pid}" if killed else f"process {pid} already gone") + \
            ("; killed every process of the container" if n else "")

    def _isolate_local(self, cgroup_dir: str, f: dict) -> str:
        if self._isolator is None:
            self._isolator = self._isolator_factory()
        self._isolator.isolate(cgroup_dir)
        if f.get("k8s.pod"):
            key = f"{f.get('k8s.ns')}/{f.get('k8s.pod')}"
            dirs = self.by_pod.setdefault(key, [])
            if cgroup_dir not in dirs:
                dirs.append(cgroup_dir)
        return f"network of container {f.get('container.id')} cut on the node"

    # -- the API, on its own thread ----------------------------------------------------
    def _api_loop(self) -> None:
        while not self._stop.is_set():
            try:
                rec = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            f = rec["fields"]
            ns, pod = f.get("k8s.ns"), f.get("k8s.pod")
            r = rec["response"]
            if r["action"] == "terminate":
                s1, d1 = self.kube.delete_pod(ns, pod, self.policy.grace_period_seconds)
                s2, d2 = self.kube.record_event(
                    ns, pod, f.get("k8s.pod_uid") or "", "MamoriTerminated",
                    f"Mamori terminated the pod: rule {rec.get('rule')!r}, alert "
                    f"{rec.get('id')}")
                api_status, api_detail = ("done" if s1 == s2 == "done" else "failed"), \
                    f"{d1}; {d2}"
            else:
                api_status, api_detail = self.kube.quarantine(ns, pod)
            status = "done" if r["status"] == "done" and api_status == "done" else "failed"
            r["status"], r["detail"] = status, f"{r['detail']}; {api_detail}"
            rec["source"] = "response"
            self._count(r["action"] + "-api", api_status)
            self.publish(rec)

    def release(self, namespace: str, pod: str) -> tuple[str, str]:
        """Undo an isolation: the node-local programs and the quarantine label."""
        details = []
        dirs = self.by_pod.pop(f"{namespace}/{pod}", [])
        for d in dirs:
            if self._isolator is not None and self._isolator.release(d):
                details.append(f"network of {d} restored on the node")
        status = "done"
        if self.kube is not None:
            s, d = self.kube.release(namespace, pod)
            details.append(d)
            status = s
        elif not dirs:
            return "failed", f"{namespace}/{pod} is not isolated on this node"
        return status, "; ".join(details)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._isolator is not None:
            self._isolator.close()
