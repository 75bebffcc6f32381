"""`mamori trace` as a user runs it: a separate process printing JSON lines."""
import json
import os
import subprocess
import sys
import time

import pytest

from agent.sensor.probes import Sensor, SensorError
from conftest import enter_cgroup, make_cgroup, remove_cgroup

MAMORI = [sys.executable, "-m", "agent.cli"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_trace_prints_one_json_line_per_event_of_the_chosen_kinds():
    d = make_cgroup("trace")
    proc = subprocess.Popen(MAMORI + ["trace", "--cgroup", d, "--kinds", "exec,exit"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # wait until the probes are attached (the command logs it)
        deadline = time.monotonic() + 30
        for line in proc.stderr:
            if b"probes attached" in line or time.monotonic() > deadline:
                break
        p = subprocess.Popen(["/bin/sh", "-c", "exit 3"], preexec_fn=enter_cgroup(d))
        p.wait()
        lines = []
        while len(lines) < 2:
            lines.append(json.loads(proc.stdout.readline()))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        remove_cgroup(d)
    exec_ev, exit_ev = lines
    assert (exec_ev["event.kind"], exec_ev["proc.pid"], exec_ev["proc.exe"]) == (
        "exec", p.pid, os.path.realpath("/bin/sh"))
    assert exec_ev["proc.args"] == ["/bin/sh", "-c", "exit 3"]
    assert (exit_ev["event.kind"], exit_ev["proc.pid"], exit_ev["exit.code"]) == (
        "exit", p.pid, 3)
    assert proc.returncode == 0


def test_trace_refuses_a_cgroup_that_does_not_exist():
    r = subprocess.run(MAMORI + ["trace", "--cgroup", "no/such/cgroup"], cwd=ROOT,
                       capture_output=True, timeout=60)
    assert r.returncode == 1
    assert b"cgroup no/such/cgroup: no such cgroup2 directory" in r.stderr


def test_sensor_without_btf_refuses_to_start(tmp_path):
    s = Sensor(btf_path=str(tmp_path / "vmlinux"))
    with pytest.raises(SensorError, match="has no BTF"):
        s.start()
