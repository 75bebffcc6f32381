"""`mamori trace` is the pipeline of `mamori run` without the rules (issue 17): started before
any container parent exists, it shows a new container's events with container and pod.
Before, it built the sensor its own way: no discovery, no context, and nothing at all for
containers whose parent cgroup appeared after it started."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from agent.sensor import cgroups
from testbed.runc import Container

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE = "trace-node"


class Trace:
    """A `mamori trace` process; its JSON lines collected as they come."""

    def __init__(self, config: str, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "trace", "--config",
                                      config, *args], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[dict] = []
        self.log: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._err, daemon=True).start()

    def _out(self):
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def _err(self):
        for line in self.proc.stderr:
            self.log.append(line)
            if "probes attached" in line:
                self.ready.set()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def test_trace_started_before_the_parent_exists_shows_a_new_container_with_its_pod(
        tmp_path, kube, image):
    parent = f"mamori-trace-{os.getpid()}"
    parent_dir = os.path.join(cgroups.cgroup2_root(), parent)
    assert not os.path.exists(parent_dir)
    cfg = tmp_path / "mamori.yaml"
    cfg.write_text(f"node_name: {NODE}\n"
                   f"kubernetes: {{mode: kubeconfig, kubeconfig: {kube.kubeconfig}}}\n"
                   f"sensor: {{watched_cgroups: [{parent}]}}\n"
                   f"context: {{container_parents: [{parent}]}}\n")
    trace = Trace(str(cfg), "--kinds", "exec")
    c = None
    try:
        assert trace.ready.wait(120), "".join(trace.log)[-3000:]
        assert not os.path.exists(parent_dir)          # still nothing to watch
        c = Container(image, str(tmp_path / "c"))
        c.cgroup_path = f"{parent}/{c.id}"
        kube.put_pod(kube.make_pod("shop", "cart-5c9f-q", NODE, {
            "cart": {"id": f"containerd://{c.id}", "image": "ghcr.io/acme/cart:2",
                     "imageID": "ghcr.io/acme/cart@sha256:" + "b" * 64}}))
        c.start()
        mine = []
        deadline = time.monotonic() + 30
        while not mine and time.monotonic() < deadline:
            c.exec("/bin/cat", "/etc/hostname")       # until the pod is known, too
            time.sleep(0.3)
            mine = [f for f in trace.lines if f.get("container.id") == c.id and
                    f["proc.args"] == ["/bin/cat", "/etc/hostname"] and f.get("k8s.pod")]
        assert mine, f"no event of {c.id} with its pod: {trace.lines[-5:]}"
        f = mine[0]
        assert (f["event.kind"], f["proc.exe"], f["container.runtime"]) == (
            "exec", "/bin/busybox", "runc")
        assert (f["k8s.ns"], f["k8s.pod"], f["container.image"]) == (
            "shop", "cart-5c9f-q", "ghcr.io/acme/cart:2")
        assert f["proc.cgroup_id"] == c.cgroup_id
        assert trace.proc.poll() is None
    finally:
        trace.stop()
        if c is not None:
            c.stop()
        try:
            os.rmdir(parent_dir)
        except OSError:
            pass
    assert trace.proc.returncode == 0
