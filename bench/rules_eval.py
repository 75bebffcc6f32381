"""Rule evaluation speed, and the pipeline's two ways to keep evaluation off the poller.

    sudo .venv/bin/python bench/rules_eval.py

1. Evaluations per second on one core: real events recorded from a container running a
   mixed workload (execs, file opens, connects) through the pipeline, then evaluated against
   the full default ruleset in a loop.
2. The whole pipeline (probes -> context -> rules) under an openat+close storm in a watched
   container cgroup, in the two designs the issue asks to compare:
     thread   the agent's design: a poller thread copies raw records onto a bounded queue,
              an evaluator thread decodes, enriches and evaluates
     process  a poller process sends msgpack-packed raw batches over a pipe to a second
              process that decodes, enriches and evaluates
   reporting events processed per second and events lost (kernel ring + user queue).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import msgpack  # noqa: E402

from agent import config  # noqa: E402
from agent.config import DEFAULT_RULES  # noqa: E402
from agent.context.cgroup_index import CgroupIndex  # noqa: E402
from agent.context.enricher import Enricher  # noqa: E402
from agent.context.process_tree import ProcessTree  # noqa: E402
from agent.context.registry import ContainerRegistry  # noqa: E402
from agent.pipeline import Pipeline  # noqa: E402
from agent.rules.engine import RuleEngine  # noqa: E402
from agent.sensor import cgroups, decoder  # noqa: E402
from sensor_overhead import build_storm, storm  # noqa: E402

WORKLOAD = ("i=0; while [ $i -lt 40 ]; do cat /etc/hostname /etc/passwd >/dev/null; "
            "ls /tmp >/dev/null; nc -w 1 127.0.0.1 8080 </dev/null 2>/dev/null; "
            "echo x > /tmp/f; i=$((i+1)); done")


def record_items(workload: str = WORKLOAD):
    """Real enriched events from a runc container running `workload` (a shell script)."""
    from testbed.image import build_image
    from testbed.runc import Container
    pipe = Pipeline(config.load(None, {"kubernetes.mode": "off"}))
    pipe.start()
    img = build_image("/tmp/mamori-bench-image")
    c = Container(img, "/tmp/mamori-bench-ct", network=True).start()
    items = []
    try:
        c.sh(workload, check=False, timeout=120)
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            items += [i for i in pipe.step() if i.container is not None]
            time.sleep(0.02)
    finally:
        c.stop()
        pipe.close()
    return items


def eval_rate(items, engine, seconds: float = 3.0):
    rs = engine.ruleset
    n, matches = 0, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for it in items:
            matches += len(rs.evaluate(it))
        n += len(items)
    return n / (time.perf_counter() - t0), matches


# -- the two pipeline designs -------------------------------------------------------------

class Worker:
    """Decode + enrich + evaluate, as the evaluator does (without the BPF side)."""

    def __init__(self):
        root = cgroups.cgroup2_root()
        self.index = CgroupIndex(root)
        self.index.walk()
        self.registry = ContainerRegistry(self.index)
        self.tree = ProcessTree()
        self.enricher = Enricher(self.tree, self.registry)
        self.engine = RuleEngine([DEFAULT_RULES])
        self.engine.load()
        self.events = self.alerts = 0

    def handle(self, batch):
        rs, enrich = self.engine.ruleset, self.enricher.enrich
        for raw in batch:
            ev = decoder.decode(raw)
            if ev.kind in ("cgroup_mkdir", "cgroup_rmdir"):
                if ev.kind == "cgroup_mkdir":
                    self.index.add(ev.id, ev.path)
                continue
            self.alerts += len(rs.evaluate(enrich(ev)))
            self.events += 1


def _worker_main(conn):
    w = Worker()
    conn.send("ready")
    while True:
        msg = conn.recv_bytes()
        if msg == b"stop":
            break
        w.handle(msgpack.unpackb(msg))
    conn.send((w.events, w.alerts))


def run_storm(cgroup_dir: str, n: int) -> float:
    """An openat+close storm in cgroup_dir (sensor_overhead.storm); its wall time."""
    return storm("open", n, cgroup_dir)[2]


def pipeline_thread(sensor, cg, n, queue_batches=4096):
    w = Worker()
    q: queue.Queue = queue.Queue(maxsize=queue_batches)
    stop = threading.Event()
    qdrops = [0]

    def poll():
        while not stop.is_set():
            b = sensor.poll_raw()
            if b:
                try:
                    q.put_nowait(b)
                except queue.Full:
                    qdrops[0] += len(b)
            time.sleep(0.01)
        q.put(None)

    def evaluate():
        while True:
            b = q.get()
            if b is None:
                break
            w.handle(b)
    threads = [threading.Thread(target=poll), threading.Thread(target=evaluate)]
    base = sum(sensor.drops().values())
    for t in threads:
        t.start()
    t0 = time.monotonic()
    run_storm(cg, n)
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    return w.events, wall, sum(sensor.drops().values()) - base, qdrops[0]


def pipeline_process(sensor, cg, n):
    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=_worker_main, args=(child,))
    proc.start()
    assert parent.recv() == "ready"
    base = sum(sensor.drops().values())
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            b = sensor.poll_raw()
            if b:
                parent.send_bytes(msgpack.packb(b))
            time.sleep(0.01)
        b = sensor.poll_raw()
        if b:
            parent.send_bytes(msgpack.packb(b))
        parent.send_bytes(b"stop")
    t = threading.Thread(target=poll)
    t0 = time.monotonic()
    t.start()
    run_storm(cg, n)
    time.sleep(0.2)
    stop.set()
    t.join()
    events, _alerts = parent.recv()
    wall = time.monotonic() - t0
    proc.join()
    return events, wall, sum(sensor.drops().values()) - base, 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--storm-n", type=int, default=300_000)
    ap.add_argument("--ring", type=int, default=64 << 20)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (eBPF)")

    engine = RuleEngine([DEFAULT_RULES])
    engine.load()
    items = record_items()
    kinds = {}
    for i in items:
        kinds[i.kind] = kinds.get(i.kind, 0) + 1
    rate, matches = eval_rate(items, engine)
    print(f"recorded {len(items)} container events {kinds}")
    print(f"rule evaluation, {len(engine.ruleset.rules)} default rules, one core: "
          f"{rate:,.0f} events/s ({matches} matches)")

    build_storm()
    from agent.sensor.probes import Sensor
    cg = os.path.join(cgroups.cgroup2_root(), "mamori-test", "bench-storm")
    os.makedirs(cg, exist_ok=True)
    sensor = Sensor(families=("process", "file", "net", "priv", "cgroup"), ring_bytes=args.ring)
    sensor.start()
    sensor.watch_cgroup(cgroups.cgroup_id(cg))
    try:
        for name, fn in (("thread", pipeline_thread), ("process", pipeline_process)):
            events, wall, kdrops, qdrops = fn(sensor, cg, args.storm_n)
            print(f"pipeline [{name}]: {events:,} events processed in {wall:.2f}s = "
                  f"{events / wall:,.0f} events/s; lost in kernel {kdrops:,}, "
                  f"in user queue {qdrops:,}")
    finally:
        sensor.close()
        try:
            os.rmdir(cg)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
