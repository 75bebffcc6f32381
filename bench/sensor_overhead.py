"""Sensor overhead and throughput, side by side in one run.

    sudo make bench            # or: sudo .venv/bin/python bench/sensor_overhead.py

For an openat+close storm, a fork+exec storm and a socket+connect storm (bench/storm.c,
compiled here), measures ns per iteration with:
  none      no probe at all
  floor     empty programs on exactly the tracepoints Mamori attaches (what any
            tracepoint sensor pays before doing anything)
  outside   Mamori, all probe families, the storm outside every watched cgroup
  inside    Mamori, the storm inside a watched cgroup, a consumer polling every 10 ms and
            decoding every event into its dataclass
  bpftrace  an opensnoop/execsnoop/tcpconnect-like bpftrace script printing every event
            (what a user runs on a kernel where bcc's own tools do not load)
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
# what each storm works on: a file to open, a program to exec, a closed loopback port
STORM_ARG = {"open": "/etc/hostname", "exec": "/bin/true", "connect": "9"}

BPFTRACE = {
    "open": ("tracepoint:syscalls:sys_enter_openat { @f[tid] = args->filename; } "
             "tracepoint:syscalls:sys_exit_openat /@f[tid]/ { printf(\"%d %s %d %s\\n\", "
             "pid, comm, args->ret, str(@f[tid])); delete(@f[tid]); }"),
    "exec": ("tracepoint:syscalls:sys_enter_execve { printf(\"%d %s %s \", pid, comm, "
             "str(args->filename)); join(args->argv); }"),
    "connect": ("tracepoint:syscalls:sys_enter_connect { $sa = (struct sockaddr_in *)"
                "args->uservaddr; printf(\"%d %s %s %d\\n\", pid, comm, "
                "ntop($sa->sin_addr.s_addr), ($sa->sin_port >> 8) | "
                "(($sa->sin_port << 8) & 0xff00)); }"),
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


def storm(kind: str, n: int, cgroup_dir: str, rate: float = 0) -> tuple[float, int, float]:
    """Run one storm in cgroup_dir (at `rate` iterations/s, or flat out);
    (ns per iteration, pid, wall seconds)."""
    env = {**os.environ, "STORM_WAIT": "1"}
    if rate:
        env["STORM_RATE"] = str(rate)
    # a shell moves itself into the cgroup and becomes the storm (same pid). Not a
    # preexec_fn: the caller may have grpc threads, and Python code between fork and exec
    # can die in grpc's fork handler
    p = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"',
                          os.path.join(cgroup_dir, "cgroup.procs"), STORM, kind, str(n),
                          STORM_ARG[kind]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         env=env)
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


class Switch:
    """Detach and re-attach every tracepoint program of a loaded bcc object, so that the
    configurations can take turns in each round without recompiling (bcc names the
    function of TRACEPOINT_PROBE(cat, name) tracepoint__cat__name and that of
    RAW_TRACEPOINT_PROBE(name) raw_tracepoint__name)."""

    def __init__(self, b):
        self.b = b
        self.tps = list(b.tracepoint_fds)
        self.raws = list(b.raw_tracepoint_fds)

    def off(self):
        for tp in list(self.b.tracepoint_fds):
            self.b.detach_tracepoint(tp)
        for tp in list(self.b.raw_tracepoint_fds):
            self.b.detach_raw_tracepoint(tp)

    def on(self):
        for tp in self.tps:
            cat, name = tp.split(b":")
            self.b.attach_tracepoint(tp=tp, fn_name=b"tracepoint__" + cat + b"__" + name)
        for tp in self.raws:
            self.b.attach_raw_tracepoint(tp=tp, fn_name=b"raw_tracepoint__" + tp)


def bpftrace_storm(kind: str, n: int, cgroup_dir: str) -> float:
    bt = subprocess.Popen(["bpftrace", "-e", BPFTRACE[kind]], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
    bt.stdout.readline()                      # "Attaching N probes..."
    threading.Thread(target=lambda: [None for _ in bt.stdout], daemon=True).start()
    try:
        return storm(kind, n, cgroup_dir)[0]
    finally:
        bt.terminate()
        bt.wait()


def measure(sizes: dict[str, int], repeat: int = 3, ring: int = 16 << 20):
    """Every storm in `sizes` (kind -> iterations) under every configuration, the
    configurations taking turns within each of `repeat` rounds (a slow drift of the machine
    then touches them all alike); returns ({kind: {config: {"ns" (median), and for inside
    "events_per_s", "lost"}}}, sensor start seconds)."""
    from bcc import BPF
    build_storm()
    watched, unwatched = make_cgroup("watched"), make_cgroup("unwatched")
    sensor = Sensor(ring_bytes=ring)
    t0 = time.monotonic()
    sensor.start()
    startup = time.monotonic() - t0
    sensor.watch_cgroup(cgroups.cgroup_id(watched))
    consumer = Consumer(sensor)
    consumer.start()
    floor = BPF(text=floor_source(sensor).encode())
    mamori, empty = Switch(sensor._bpf), Switch(floor)
    mamori.off()
    empty.off()
    ns = {k: {c: [] for c in ("none", "floor", "outside", "inside", "bpftrace")}
          for k in sizes}
    inside = {k: [] for k in sizes}
    try:
        for _ in range(repeat):
            for kind, n in sizes.items():
                ns[kind]["none"].append(storm(kind, n, unwatched)[0])
                empty.on()
                ns[kind]["floor"].append(storm(kind, n, unwatched)[0])
                empty.off()
                mamori.on()
                ns[kind]["outside"].append(storm(kind, n, unwatched)[0])
                base_drops = sum(sensor.drops().values())
                t, pid, wall = storm(kind, n, watched)
                time.sleep(0.1)
                ns[kind]["inside"].append(t)
                inside[kind].append((consumer.counts.get(pid, 0) / wall,
                                     sum(sensor.drops().values()) - base_drops))
                mamori.off()
                ns[kind]["bpftrace"].append(bpftrace_storm(kind, n, unwatched))
    finally:
        consumer.stop = True
        consumer.join()
        floor.cleanup()
        sensor.close()
        for d in (watched, unwatched):
            try:
                os.rmdir(d)
            except OSError:
                pass
    results = {k: {c: {"ns": statistics.median(v)} for c, v in cfgs.items()}
               for k, cfgs in ns.items()}
    for k, runs in inside.items():
        results[k]["inside"]["events_per_s"] = statistics.median(r[0] for r in runs)
        results[k]["inside"]["lost"] = max(r[1] for r in runs)
    return results, startup


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--open-n", type=int, default=500_000)
    ap.add_argument("--exec-n", type=int, default=2_000)
    ap.add_argument("--connect-n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ring", type=int, default=16 << 20)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (eBPF)")
    results, startup = measure({"open": args.open_n, "exec": args.exec_n,
                                "connect": args.connect_n}, args.repeat, args.ring)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
