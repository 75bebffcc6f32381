"""Sensor overhead and throughput, side by side in one run.

    sudo make bench            # or: sudo .venv/bin/python bench/sensor_overhead.py

For an openat+close storm and a fork+exec storm (bench/storm.c, compiled here), measures
ns per iteration with:
  none      no probe at all
  floor     empty programs on exactly the tracepoints Mamori attaches (what any
            tracepoint sensor pays before doing anything)
  outside   Mamori, all probe families, the storm outside every watched cgroup
  inside    Mamori, the storm inside a watched cgroup, a consumer polling every 10 ms and
            decoding every event into its dataclass
  bpftrace  an opensnoop/execsnoop-like bpftrace script printing every event (what a user
            runs on a kernel where bcc's own opensnoop/execsnoop do not load)
and, for "inside", the events delivered to Python per second and the events lost.
Each configuration runs REPEAT times; the median is reported.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from agent.sensor import cgroups  # noqa: E402
from agent.sensor.probes import Sensor  # noqa: E402

BUILD = os.path.join(HERE, "build")
STORM = os.path.join(BUILD, "storm")
TARGET = "/etc/hostname"

BPFTRACE = {
    "open": ("tracepoint:syscalls:sys_enter_openat { @f[tid] = args->filename; } "
             "tracepoint:syscalls:sys_exit_openat /@f[tid]/ { printf(\"%d %s %d %s\\n\", "
             "pid, comm, args->ret, str(@f[tid])); delete(@f[tid]); }"),
    "exec": ("tracepoint:syscalls:sys_enter_execve { printf(\"%d %s %s \", pid, comm, "
             "str(args->filename)); join(args->argv); }"),
}


def build_storm() -> None:
    os.makedirs(BUILD, exist_ok=True)
    src = os.path.join(HERE, "storm.c")
    if not os.path.exists(STORM) or os.path.getmtime(STORM) < os.path.getmtime(src):
        subprocess.run(["gcc", "-O2", "-o", STORM, src], check=True)


def make_cgroup(name: str) -> str:
    d = os.path.join(cgroups.cgroup2_root(), "mamori-bench", name)
    os.makedirs(d, exist_ok=True)
    return d


def storm(kind: str, n: int, cgroup_dir: str) -> tuple[float, int, float]:
    """Run one storm in cgroup_dir; (ns per iteration, pid, wall seconds)."""
    arg = TARGET if kind == "open" else "/bin/true"

    def enter():
        with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
            f.write("0")
    p = subprocess.Popen([STORM, kind, str(n), arg], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, env={**os.environ, "STORM_WAIT": "1"},
                         preexec_fn=enter)
    t0 = time.monotonic()
    out, _ = p.communicate(b"go\n")
    wall = time.monotonic() - t0
    return float(out), p.pid, wall


class Consumer(threading.Thread):
    """What the agent does: poll the ring every 10 ms, decode every record."""

    def __init__(self, sensor: Sensor):
        super().__init__(daemon=True)
        self.sensor, self.stop, self.counts = sensor, False, {}

    def run(self):
        while not self.stop:
            for ev in self.sensor.poll():
                self.counts[ev.pid] = self.counts.get(ev.pid, 0) + 1
            time.sleep(0.01)
        for ev in self.sensor.poll():
            self.counts[ev.pid] = self.counts.get(ev.pid, 0) + 1


def floor_source(sensor: Sensor) -> str:
    """Empty programs on exactly the tracepoints the sensor attached."""
    lines = []
    for tp in sensor._bpf.tracepoint_fds:
        cat, name = (tp.decode() if isinstance(tp, bytes) else tp).split(":")
        lines.append(f"TRACEPOINT_PROBE({cat}, {name}) {{ return 0; }}")
    for tp in sensor._bpf.raw_tracepoint_fds:
        name = tp.decode() if isinstance(tp, bytes) else tp
        lines.append(f"RAW_TRACEPOINT_PROBE({name}) {{ return 0; }}")
    return "\n".join(lines)


def median_runs(fn, repeat: int):
    runs = [fn() for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), runs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--open-n", type=int, default=500_000)
    ap.add_argument("--exec-n", type=int, default=2_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ring", type=int, default=16 << 20)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (eBPF)")
    from bcc import BPF

    build_storm()
    watched, unwatched = make_cgroup("watched"), make_cgroup("unwatched")
    sizes = {"open": args.open_n, "exec": args.exec_n}
    results: dict[str, dict[str, dict]] = {k: {} for k in sizes}

    def plain(kind, cg):
        return lambda: storm(kind, sizes[kind], cg)[:1]

    # none
    for kind in sizes:
        results[kind]["none"] = {"ns": median_runs(plain(kind, unwatched), args.repeat)[0]}

    # Mamori: outside, then inside
    sensor = Sensor(ring_bytes=args.ring)
    t0 = time.monotonic()
    sensor.start()
    startup = time.monotonic() - t0
    sensor.watch_cgroup(cgroups.cgroup_id(watched))
    consumer = Consumer(sensor)
    consumer.start()
    for kind in sizes:
        results[kind]["outside"] = {"ns": median_runs(plain(kind, unwatched), args.repeat)[0]}
    for kind in sizes:
        runs = []
        for _ in range(args.repeat):
            base_drops = sum(sensor.drops().values())
            ns, pid, wall = storm(kind, sizes[kind], watched)
            time.sleep(0.1)
            runs.append((ns, consumer.counts.get(pid, 0), wall,
                         sum(sensor.drops().values()) - base_drops))
        mid = sorted(runs)[len(runs) // 2]
        results[kind]["inside"] = {"ns": mid[0], "events": mid[1],
                                   "events_per_s": mid[1] / mid[2],
                                   "lost": max(r[3] for r in runs)}
    floor = floor_source(sensor)
    consumer.stop = True
    consumer.join()
    sensor.close()

    # floor
    b = BPF(text=floor.encode())
    for kind in sizes:
        results[kind]["floor"] = {"ns": median_runs(plain(kind, unwatched), args.repeat)[0]}
    b.cleanup()

    # bpftrace
    for kind in sizes:
        bt = subprocess.Popen(["bpftrace", "-e", BPFTRACE[kind]], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
        bt.stdout.readline()                      # "Attaching N probes..."
        drain = threading.Thread(target=lambda: [None for _ in bt.stdout], daemon=True)
        drain.start()
        results[kind]["bpftrace"] = {"ns": median_runs(plain(kind, unwatched),
                                                       args.repeat)[0]}
        bt.terminate()
        bt.wait()

    print(f"sensor start (compile + attach, all families): {startup:.2f} s")
    print(f"{'storm':6} {'config':9} {'ns/iter':>10} {'overhead':>9} {'vs floor':>9} "
          f"{'events/s':>10} {'lost':>6}")
    for kind, res in results.items():
        base = res["none"]["ns"]
        floor_over = res["floor"]["ns"] - base
        for cfg in ("none", "floor", "outside", "inside", "bpftrace"):
            r = res[cfg]
            over = r["ns"] - base
            vs = f"{over / floor_over:.2f}x" if cfg != "none" and floor_over > 0 else ""
            eps = f"{r['events_per_s']:.0f}" if "events_per_s" in r else ""
            lost = str(r["lost"]) if "lost" in r else ""
            print(f"{kind:6} {cfg:9} {r['ns']:10.1f} {over / base * 100:+8.1f}% {vs:>9} "
                  f"{eps:>10} {lost:>6}")
    for d in (watched, unwatched):
        try:
            os.rmdir(d)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
