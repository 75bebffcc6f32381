"""Where the evaluator's time goes, per open event.

    sudo .venv/bin/python bench/profile_eval.py [--n 200000] [--profile]

Records the raw ring records of a real openat+close storm in a watched cgroup (the
pipeline of `mamori run`, nothing evaluated while recording: the rate the sensor alone
delivers), then replays them through the stages one after another and prints the CPU time
per event each adds: decode, context (Pipeline.process), rules, alert records. The report
(bench/report.py) runs the same measure(). --profile adds cProfile's top functions.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from agent import config  # noqa: E402
from agent.config import DEFAULT_RULES  # noqa: E402
from agent.pipeline import Pipeline  # noqa: E402
from agent.rules.engine import RuleEngine  # noqa: E402
from agent.sensor import cgroups  # noqa: E402
from sensor_overhead import build_storm, storm  # noqa: E402


def record(n: int) -> tuple[Pipeline, list[list[bytes]], dict]:
    """A flat-out storm of n openat+close in a watched cgroup, its records drained from the
    ring every 5 ms and kept undecoded: what the sensor alone delivers to Python. The
    pipeline is started (and must be closed) and has processed nothing yet."""
    cg = os.path.join(cgroups.cgroup2_root(), "mamori-bench", "profile")
    os.makedirs(cg, exist_ok=True)
    rel = "/" + os.path.relpath(cg, cgroups.cgroup2_root())
    # a ring that holds the whole storm, a process table that keeps the storm's exited
    # process for the replays, and the cgroup a container (as the report's agent has it)
    cfg = config.load(None, {"kubernetes.mode": "off",
                             "sensor.ring_bytes": 256 << 20,
                             "context.exited_ttl_s": 600,
                             "context.container_parents": ["mamori-bench"]})
    pipe = Pipeline(cfg, extra_watch=(rel,))
    pipe.start()
    batches: list[list[bytes]] = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            b = pipe.sensor.poll_raw()
            if b:
                batches.append(b)
            time.sleep(0.005)
        b = pipe.sensor.poll_raw()
        if b:
            batches.append(b)
    lost0 = sum(pipe.sensor.drops().values())
    t = threading.Thread(target=poll)
    t.start()
    ns, _pid, wall = storm("open", n, cg)
    time.sleep(0.3)
    stop.set()
    t.join()
    total = sum(len(b) for b in batches)
    return pipe, batches, {"records": total, "storm_ns": ns, "wall_s": wall,
                           "delivered_per_s": total / wall,
                           "lost": sum(pipe.sensor.drops().values()) - lost0}


def timed(fns: dict, batches, total: int, rounds: int = 5) -> dict:
    """CPU µs per event of each replay: the best of `rounds`, the stages taking turns within
    each round so that a slow spell of this VM touches them all alike (its noise is
    one-sided: the best is the truest)."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.process_time()
            for b in batches:
                fn(b)
            best[name] = min(best[name], time.process_time() - t0)
    return {name: t / total * 1e6 for name, t in best.items()}


def profiled(fn, batches, top: int = 18) -> None:
    prof = cProfile.Profile()
    prof.enable()
    for b in batches:
        fn(b)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


STAGES = ("decode", "context", "rules", "alerts")


def measure(n: int, profile: bool = False) -> dict:
    """{"sensor": record()'s numbers, "us": {stage: cumulative CPU µs per event}}: each
    stage is replayed with those before it (decode; + context; + rules; + alert records)."""
    pipe, batches, sensor = record(n)
    total = sensor["records"]
    rs = RuleEngine([DEFAULT_RULES]).load()
    from agent.alerts.alert import from_match
    decode, process = pipe.sensor.decode_batch, pipe.process

    def decode_only(b):
        for _ in decode(b):
            pass

    def rules(b):
        ev = rs.evaluate
        for item in process(b):
            ev(item)

    def alerts(b):
        ev, cat = rs.evaluate, rs.catalog
        for item in process(b):
            for rule in ev(item):
                from_match(rule, item, cat, "node").to_dict()
    fns = dict(zip(STAGES, (decode_only, process, rules, alerts)))
    try:
        us = timed(fns, batches, total)
        if profile:
            for stage, fn in fns.items():
                print(f"== {stage}: {us[stage]:.2f} µs/event")
                profiled(fn, batches)
    finally:
        pipe.close()
    return {"sensor": sensor, "us": us}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--profile", action="store_true", help="and cProfile's top functions")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (eBPF)")
    build_storm()
    r = measure(args.n, args.profile)
    s = r["sensor"]
    print(f"sensor alone: {s['records']:,} records in {s['wall_s']:.2f} s = "
          f"{s['delivered_per_s']:,.0f}/s delivered, {s['lost']} lost "
          f"(storm {s['storm_ns']:,.0f} ns per openat+close)")
    prev = 0.0
    for stage in STAGES:
        us = r["us"][stage]
        print(f"+ {stage:<8} {us - prev:5.2f} µs   total {us:5.2f} µs/event "
              f"= {1e6 / us:,.0f} events/s on one core")
        prev = us
    return 0


if __name__ == "__main__":
    sys.exit(main())
