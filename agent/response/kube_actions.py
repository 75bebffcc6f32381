"""Response through the Kubernetes API, with retries: 5xx, 429 and timeouts are retried
with backoff; a 404 on delete means done; a 409 on create means it is already there."""
from __future__ import annotations

import datetime as dt
import logging
import time

log = logging.getLogger("mamori.response")
QUARANTINE_LABEL = "mamori.io/quarantine"
NETPOL_NAME = "mamori-quarantine"


class KubeActions:
    def __init__(self, api_client, backoff=(0.1, 0.3, 1.0), timeout: float = 5.0):
        from kubernetes import client
        self.core = client.CoreV1Api(api_client)
        self.net = client.NetworkingV1Api(api_client)
        self.backoff = backoff
        self.timeout = timeout

    def _call(self, what: str, fn, *args, done_on=(), **kw) -> tuple[str, str]:
        """(status, detail): done | failed."""
        from kubernetes.client.exceptions import ApiException
        last = ""
        for attempt in range(len(self.backoff) + 1):
            try:
                fn(*args, _request_timeout=self.timeout, **kw)
                return "done", what
            except ApiException as e:
                if e.status in done_on:
                    return "done", f"{what} ({e.status} {e.reason}: already so)"
                last = f"{e.status} {e.reason}"
                if e.status not in (429, 500, 502, 503, 504):
                    break
            except Exception as e:  # noqa: BLE001 - connection refused, timeouts: retried
                last = f"{type(e).__name__}: {e}"
            if attempt < len(self.backoff):
                time.sleep(self.backoff[attempt])
        return "failed", f"{what} failed: {last}"

    def delete_pod(self, namespace: str, name: str, grace: int = 0) -> tuple[str, str]:
        return self._call(f"deleted pod {namespace}/{name}", self.core.delete_namespaced_pod,
                          name, namespace, grace_period_seconds=grace, done_on=(404,))

    def record_event(self, namespace: str, pod: str, pod_uid: str, reason: str,
                     message: str) -> tuple[str, str]:
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        body = {"metadata": {"generateName": f"{pod}.mamori-", "namespace": namespace},
                "involvedObject": {"kind": "Pod", "namespace": namespace, "name": pod,
                                   "uid": pod_uid, "apiVersion": "v1"},
                "reason": reason, "message": message, "type": "Warning",
                "source": {"component": "mamori"}, "firstTimestamp": now,
                "lastTimestamp": now, "count": 1}
        return self._call(f"event {reason} on {namespace}/{pod}",
                          self.core.create_namespaced_event, namespace, body, done_on=(409,))

    def quarantine(self, namespace: str, name: str) -> tuple[str, str]:
        """Label the pod and make sure the namespace has the deny-all policy for it."""
        s1, d1 = self._call(f"labelled pod {namespace}/{name}",
                            self.core.patch_namespaced_pod, name, namespace,
                            {"metadata": {"labels": {QUARANTINE_LABEL: "true"}}})
        body = {"metadata": {"name": NETPOL_NAME, "namespace": namespace},
                "spec": {"podSelector": {"matchLabels": {QUARANTINE_LABEL: "true"}},
                         "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []}}
        s2, d2 = self._call(f"network policy {namespace}/{NETPOL_NAME}",
                            self.net.create_namespaced_network_policy, namespace, body,
                            done_on=(409,))
        return ("done" if s1 == s2 == "done" else "failed"), f"{d1}; {d2}"

    def namespace_labels(self, namespace: str) -> dict | None:
        """The namespace's labels (an administrator's data: they protect namespaces);
        {} if it does not exist, None if the API could not be asked."""
        from kubernetes.client.exceptions import ApiException
        for attempt in range(len(self.backoff) + 1):
            try:
                ns = self.core.read_namespace(namespace, _request_timeout=self.timeout)
                return dict(ns.metadata.labels or {})
            except ApiException as e:
                if e.status == 404:
                    return {}
                if e.status not in (429, 500, 502, 503, 504):
                    break
            except Exception:  # noqa: BLE001 - connection refused, timeouts: retried
                pass
            if attempt < len(self.backoff):
                time.sleep(self.backoff[attempt])
        return None

    def release(self, namespace: str, name: str) -> tuple[str, str]:
        return self._call(f"released pod {namespace}/{name}", self.core.patch_namespaced_pod,
                          name, namespace, {"metadata": {"labels": {QUARANTINE_LABEL: None}}})
