"""Kernel tests: the real probes, loaded once per session, and children that make real
syscalls from a cgroup2 directory the session creates and watches."""
import os
import subprocess
import sys
import time

import pytest

from agent.sensor import cgroups
from agent.sensor.probes import Sensor

HERE = os.path.dirname(os.path.abspath(__file__))


def _require_root():
    if os.geteuid() != 0:
        pytest.fail("kernel tests need root (eBPF): run them with sudo make test")


class Collector:
    """Every event the sensor delivered during the session; tests look up theirs."""

    def __init__(self, sensor):
        self.sensor = sensor
        self.events = []

    def drain(self):
        self.events.extend(self.sensor.poll())

    def find(self, pred, count=1, timeout=5.0):
        """Poll until `count` events satisfy pred (returns them in order) or time out."""
        deadline = time.monotonic() + timeout
        while True:
            self.drain()
            hits = [e for e in self.events if pred(e)]
            if len(hits) >= count or time.monotonic() > deadline:
                return hits
            time.sleep(0.02)

    def of_pid(self, pid, kind=None, timeout=5.0, count=1):
        return self.find(lambda e: e.pid == pid and (kind is None or e.kind == kind),
                         count=count, timeout=timeout)


@pytest.fixture(scope="session")
def sensor():
    _require_root()
    s = Sensor(ring_bytes=32 << 20)
    s.start()
    yield s
    s.close()


def make_cgroup(name):
    root = cgroups.cgroup2_root()
    d = os.path.join(root, "mamori-test", f"{name}-{os.getpid()}")
    os.makedirs(d, exist_ok=True)
    return d


def remove_cgroup(d):
    for _ in range(50):
        try:
            os.rmdir(d)
            return
        except OSError:
            time.sleep(0.05)


@pytest.fixture(scope="session")
def watched_cgroup(sensor):
    d = make_cgroup("kernel")
    sensor.watch_cgroup(cgroups.cgroup_id(d))
    yield d
    sensor.unwatch_cgroup(cgroups.cgroup_id(d))
    remove_cgroup(d)


@pytest.fixture(scope="session")
def collector(sensor, watched_cgroup):
    return Collector(sensor)


def enter_cgroup(directory):
    def fn():
        with open(os.path.join(directory, "cgroup.procs"), "w") as f:
            f.write("0")
    return fn


class Child:
    def __init__(self, proc, out):
        self.pid = proc.pid
        self.returncode = proc.returncode
        self.out = out


def run_python(cgroup_dir, code, timeout=20, **kw):
    """Run Python code in a child that first joins the cgroup; returns its pid and the
    values it reported with report(...)."""
    import json
    prelude = f"import sys; sys.path.insert(0, {HERE!r}); from syscalls import *\n"
    proc = subprocess.Popen([sys.executable, "-c", prelude + code],
                            preexec_fn=enter_cgroup(cgroup_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"child failed ({proc.returncode}): {err.decode()}")
    values = {}
    for line in out.decode().splitlines():
        values.update(json.loads(line))
    return Child(proc, values)
