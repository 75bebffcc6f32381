"""Inventory benchmark: time and peak memory to inventory an image of 5,000 dpkg packages
(each with a file list) and an image of 50,000 files (a walk over site-packages and
node_modules with 1,000 language packages), each read the way the agent reads them — in
the capped child process (agent/inventory/child.py) — plus the child's peak RSS (from
wait4's rusage). With --event-rate, also the agent's event rate (the openat storm through
a real Agent, bench/sensor_overhead.py's helper) with and without an inventory running.

    sudo .venv/bin/python bench/inventory_bench.py
"""
from __future__ import annotations

import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "inventory"))

import images  # noqa: E402
from agent.inventory.rootfs import Limits  # noqa: E402
from agent.inventory.worker import run_capped  # noqa: E402


def packages_image(root: str, n: int = 5000) -> None:
    images.os_release(root, "debian", "12")
    paras, info = [], os.path.join(root, "var/lib/dpkg/info")
    os.makedirs(info, exist_ok=True)
    for i in range(n):
        paras.append(f"Package: pkg{i}\nStatus: install ok installed\nArchitecture: amd64\n"
                     f"Version: 1:{i}.0-1\nSource: src{i % 500} ({i}.0-1)\nDescription: x\n")
        with open(os.path.join(info, f"pkg{i}:amd64.list"), "w") as f:
            f.write("".join(f"/usr/lib/pkg{i}/f{j}\n" for j in range(10)))
    images.write(root, "/var/lib/dpkg/status", "\n".join(paras))


def files_image(root: str, n: int = 50_000) -> None:
    images.os_release(root, "debian", "12")
    per = n // 1000
    for p in range(500):
        d = os.path.join(root, f"usr/lib/python3/dist-packages/p{p}")
        os.makedirs(d)
        for j in range(per - 2):
            open(os.path.join(d, f"m{j}.py"), "w").close()
        images.write(root, f"/usr/lib/python3/dist-packages/p{p}-1.0.dist-info/METADATA",
                     f"Name: p{p}\nVersion: 1.0\n")
    for p in range(500):
        d = os.path.join(root, f"app/node_modules/n{p}")
        os.makedirs(d)
        for j in range(per - 2):
            open(os.path.join(d, f"f{j}.js"), "w").close()
        images.write(root, f"/app/node_modules/n{p}/package.json",
                     f'{{"name": "n{p}", "version": "1.0.{p}"}}')


def measure(root: str) -> tuple[float, int, int, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.monotonic()
    state, res, why = run_capped({"layers": [root]}, Limits(), 512 << 20, 600)
    took = time.monotonic() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert state == "done", why
    return took, max(peak, before), len(res.packages), res.files_seen


def event_rate(image_root: str, n: int = 400_000, runs: int = 3) -> None:
    """The agent's events processed per second under a flat-out openat storm in a watched
    cgroup, alone and while a container of image_root starts (its image inventoried in the
    capped child at the same time), taking turns."""
    import threading
    from dataclasses import replace
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))), "tests"))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from agent import config
    from agent.config import DEFAULT_RULES
    from agent.runtime import Agent
    from agent.sensor import cgroups
    from sensor_overhead import build_storm, storm
    from testbed import runc
    from testbed.runc import Container
    build_storm()
    cfg = config.load(None, {"kubernetes.mode": "off", "api.listen": [],
                             "metrics.listen": "", **runc.agent_overrides(),
                             "alerts.journal_dir": tempfile.mkdtemp(prefix="mamori-j-")})
    cfg = replace(cfg, sensor=replace(cfg.sensor, ring_bytes=64 << 20))
    agent = Agent(cfg, [DEFAULT_RULES], outputs=[])
    t = threading.Thread(target=agent.start)
    t.start()
    t.join()
    cg = os.path.join(cgroups.cgroup2_root(), runc.CGROUP_PARENT, "bench-inventory-storm")
    os.makedirs(cg, exist_ok=True)
    time.sleep(0.5)                          # discovery watches the new cgroup
    work = tempfile.mkdtemp(prefix="mamori-inv-bench-")
    try:
        for r in range(runs):
            for label in ("alone", "with an inventory"):
                c = None
                before, lost0 = agent.events, sum(agent.pipeline.sensor.drops().values())
                done0 = sum(agent.inventory.counts.values())
                if label != "alone":
                    agent.inventory.store = type(agent.inventory.store)(
                        agent.inventory.store.max_images)      # read the image afresh
                    c = Container(image_root, work).start()
                t0 = time.monotonic()
                storm("open", n, cg)
                end = t0 + 60
                last, last_t = agent.events, time.monotonic()
                while time.monotonic() < end and time.monotonic() - last_t < 0.5:
                    time.sleep(0.01)                # until the evaluator has drained it
                    if agent.events != last:
                        last, last_t = agent.events, time.monotonic()
                took = last_t - t0
                got = last - before
                lost = sum(agent.pipeline.sensor.drops().values()) - lost0
                overlap = ""
                if c is not None:
                    while sum(agent.inventory.counts.values()) == done0 and \
                            time.monotonic() < end:
                        time.sleep(0.05)
                    overlap = f", inventory took {agent.inventory.seconds:.2f} s in all"
                    c.stop()
                print(f"round {r + 1} {label}: {got:,} events evaluated in {took:.2f} s = "
                      f"{got / took:,.0f}/s, lost {lost:,} (the rest of the {n:,} opens shed "
                      f"by the kernel's per-container budget){overlap}")
    finally:
        agent.stop()
        os.rmdir(cg)


def main() -> int:
    if "--event-rate" in sys.argv:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
            __file__))), "tests"))
        with tempfile.TemporaryDirectory() as d:
            from testbed.image import build_image
            root = build_image(os.path.join(d, "img"))
            files_image(root)
            event_rate(root)
        return 0
    with tempfile.TemporaryDirectory() as d:
        a, b = os.path.join(d, "pkgs"), os.path.join(d, "files")
        packages_image(a)
        files_image(b)
        for name, root in (("5,000 dpkg packages (50,000 listed files)", a),
                           ("50,000 files, 1,000 language packages", b)):
            runs = [measure(root) for _ in range(3)]
            t = sorted(r[0] for r in runs)[1]
            _, peak, pk, files = runs[-1]
            print(f"{name}: {t:.2f} s (median of 3), child peak RSS {peak // 1024} MiB, "
                  f"{pk} packages, {files} directory entries walked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
