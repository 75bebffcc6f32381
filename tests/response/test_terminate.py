"""Terminate on a real container and at the API double; API retries and failures. The
process is checked before it is signalled: one that got the pid after the event, or that is
in another cgroup, is never killed (issue 20, finding 12)."""
import os
import subprocess
import time

from agent.alerts.alert import Alert
from agent.context.pods import api_client
from agent.response.kube_actions import KubeActions
from agent.response.local import kill_cgroup, kill_process
from agent.response.policy import Policy
from agent.response.responder import Responder
from agent.sensor import cgroups
from testbed.waiting import wait_until


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _sleeper_in(c, seconds=300):
    """A new process in the container; its host pid."""
    before = set(c.pids())
    c.sh(f"(sleep {seconds} >/dev/null 2>&1 &)")
    assert wait_until(lambda: set(c.pids()) - before, 5)
    [pid] = set(c.pids()) - before
    return pid


def test_container_processes_are_killed(containers):
    c = containers()
    c.sh("(sleep 300 >/dev/null 2>&1 &) ; (sleep 301 >/dev/null 2>&1 &)")
    assert len(c.pids()) >= 3
    assert kill_process(c.pid, time.monotonic_ns(), c.cgroup_dir) == (True, "")
    kill_cgroup(c.cgroup_dir)
    deadline = time.monotonic() + 5
    while c.pids() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert c.pids() == []                      # every process of the container is gone
    assert time.monotonic() < deadline


def test_without_cgroup_kill_each_process_is_killed_through_a_pidfd(containers):
    c = containers()
    c.sh("(sleep 300 >/dev/null 2>&1 &) ; (sleep 301 >/dev/null 2>&1 &)")
    n = len(c.pids())
    assert n >= 3
    assert kill_cgroup(c.cgroup_dir, use_cgroup_kill=False) == n
    assert wait_until(lambda: c.pids() == [], 5)


def test_a_process_that_started_after_the_event_is_not_killed(containers):
    """What pid reuse looks like: the pid the alert names belongs to a process younger
    than the event (a real one: forking until the pid wraps takes too long)."""
    c = containers()
    event_ts = time.monotonic_ns()
    time.sleep(0.05)                           # past the clock tick of the event
    pid = _sleeper_in(c)
    assert kill_process(pid, event_ts, c.cgroup_dir) == (
        False, "the pid now belongs to a process that started after the event")
    time.sleep(0.1)
    assert _alive(pid)
    assert kill_process(pid, time.monotonic_ns(), c.cgroup_dir) == (True, "")
    assert wait_until(lambda: not _alive(pid), 5)


def test_a_process_whose_exec_id_is_not_the_alerts_is_not_killed(containers):
    """proc.exec_id names the process exactly: another start tick, or another pid in it,
    is another process, whatever the event time says."""
    from agent.context.process_tree import BOOT
    from agent.response.local import start_ticks
    c = containers()
    pid = _sleeper_in(c)
    ticks = start_ticks(pid)
    now = time.monotonic_ns()
    for other in (f"{BOOT}:{ticks - 1}:{pid}", f"{BOOT}:{ticks}:{pid + 1}", "junk"):
        assert kill_process(pid, now, c.cgroup_dir, other) == (
            False, f"the pid now belongs to another process than {other}")
    time.sleep(0.1)
    assert _alive(pid)
    assert kill_process(pid, now, c.cgroup_dir, f"{BOOT}:{ticks}:{pid}") == (True, "")
    assert wait_until(lambda: not _alive(pid), 5)


def test_a_process_in_another_cgroup_is_not_killed(containers):
    c, other = containers(), containers()
    theirs = _sleeper_in(other)
    host = subprocess.Popen(["sleep", "300"])
    try:
        now = time.monotonic_ns()
        for pid in (theirs, host.pid):
            assert kill_process(pid, now, c.cgroup_dir) == (
                False, "the process is no longer in the container's cgroup")
        time.sleep(0.1)
        assert _alive(theirs) and host.poll() is None
    finally:
        host.kill()
        host.wait()


def _record(c, pid, event_ts, cgroup_id=None):
    return Alert.from_dict({"rule": "R", "action": "terminate", "id": "a1", "fields": {
        "container.id": c.id, "container.cgroup": "/" + c.cgroup_path,
        "proc.pid": pid, "event.ts": event_ts,
        "proc.cgroup_id": cgroup_id if cgroup_id is not None else c.cgroup_id,
        "k8s.ns": "shop", "k8s.pod": None, "k8s.labels": {}}})


def test_terminate_with_a_reused_pid_kills_the_container_but_not_the_pid(containers):
    """The alert's pid now belongs to a host process started after the event: before, the
    responder SIGKILLed it. The container itself is still killed (by its cgroup)."""
    c = containers()
    event_ts = time.monotonic_ns()
    time.sleep(0.05)
    host = subprocess.Popen(["sleep", "300"])
    r = Responder(Policy(), cgroups.cgroup2_root(), publish=lambda rec: None)
    try:
        rec = _record(c, host.pid, event_ts)
        rec = r.respond(rec)
        assert rec.response.to_dict() == {"action": "terminate", "status": "done", "detail": (
            f"process {host.pid} not signalled: the pid now belongs to a process that "
            "started after the event; killed every process of the container")}
        assert wait_until(lambda: c.pids() == [], 5)
        time.sleep(0.1)
        assert host.poll() is None                 # the host process lives
    finally:
        r.stop()
        host.kill()
        host.wait()


def test_a_cgroup_made_again_under_the_same_name_is_not_killed(containers):
    """The container's cgroup directory no longer has the inode the event carried."""
    c = containers()
    r = Responder(Policy(), cgroups.cgroup2_root(), publish=lambda rec: None)
    try:
        rec = _record(c, c.pid, time.monotonic_ns(), cgroup_id=os.stat("/").st_ino)
        rec = r.respond(rec)
        assert rec.response.detail == (
            f"process {c.pid} not signalled: the container's cgroup is gone")
        time.sleep(0.1)
        assert c.pid in c.pids()
        rec = _record(c, c.pid, time.monotonic_ns())
        r.guard._incidents.clear()
        rec = r.respond(rec)
        assert rec.response.detail == (
            f"killed process {c.pid}; killed every process of the container")
        assert wait_until(lambda: c.pids() == [], 5)
    finally:
        r.stop()


def test_delete_and_event_at_the_api(kube):
    kube.put_pod(kube.make_pod("shop", "web-1", "node-1", {"c": {"id": "containerd://x"}}))
    k = KubeActions(api_client("kubeconfig", kube.kubeconfig), backoff=(0.01, 0.01))
    assert k.delete_pod("shop", "web-1", 0) == ("done", "deleted pod shop/web-1")
    [req] = kube.requests_to("DELETE", "/pods/web-1$")
    assert req.query.get("gracePeriodSeconds") == "0"
    assert k.record_event("shop", "web-1", "u1", "MamoriTerminated",
                          "rule R, alert a1")[0] == "done"
    ev = kube.events[0]
    assert (ev["reason"], ev["involvedObject"]["name"], ev["message"]) == (
        "MamoriTerminated", "web-1", "rule R, alert a1")
    # deleting again: 404 means done
    assert k.delete_pod("shop", "web-1", 0) == (
        "done", "deleted pod shop/web-1 (404 Not Found: already so)")


def test_api_500_twice_then_200_is_done(kube):
    kube.put_pod(kube.make_pod("shop", "web-1", "node-1", {}))
    kube.fail("DELETE", "/pods/web-1$", 500, times=2)
    k = KubeActions(api_client("kubeconfig", kube.kubeconfig), backoff=(0.01, 0.01, 0.01))
    assert k.delete_pod("shop", "web-1") == ("done", "deleted pod shop/web-1")
    assert len(kube.requests_to("DELETE", "/pods/web-1$")) == 3


def test_api_down_is_reported_failed(kube, tmp_path):
    path = kube.kubeconfig
    kube.stop()
    k = KubeActions(api_client("kubeconfig", path), backoff=(0.01, 0.01), timeout=1)
    status, detail = k.delete_pod("shop", "web-1")
    assert status == "failed" and detail.startswith("deleted pod shop/web-1 failed: ")


def test_quarantine_label_and_network_policy(kube):
    kube.put_pod(kube.make_pod("shop", "web-1", "node-1", {}, labels={"app": "web"}))
    k = KubeActions(api_client("kubeconfig", kube.kubeconfig), backoff=(0.01,))
    assert k.quarantine("shop", "web-1")[0] == "done"
    assert kube.pods[("shop", "web-1")]["metadata"]["labels"] == {
        "app": "web", "mamori.io/quarantine": "true"}
    pol = kube.networkpolicies[("shop", "mamori-quarantine")]
    assert pol["spec"]["podSelector"] == {"matchLabels": {"mamori.io/quarantine": "true"}}
    assert pol["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert k.quarantine("shop", "web-1")[0] == "done"            # 409: already there
    assert k.release("shop", "web-1")[0] == "done"
    assert kube.pods[("shop", "web-1")]["metadata"]["labels"] == {"app": "web"}
