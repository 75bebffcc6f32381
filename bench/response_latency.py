"""Detect -> SIGKILL and detect -> isolation latency, on real containers.

    sudo .venv/bin/python bench/response_latency.py [--runs 40]

Each run starts a runc container, makes it read /etc/shadow (a rule with action terminate,
or isolate), and takes the time from the kernel's timestamp of that open (CLOCK_MONOTONIC,
bpf_ktime_get_ns) to the moment the agent's SIGKILL (or the cgroup isolation) was done.
Drift prevention is not measured here: its SIGKILL is sent by the exec probe itself, in
the kernel, before the program's first instruction.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from agent import config  # noqa: E402
from agent.runtime import Agent  # noqa: E402
from testbed.image import build_image  # noqa: E402
from testbed.runc import Container  # noqa: E402

RULE = """- rule: Shadow read ({action})
  desc: bench
  events: [open]
  condition: container.id exists and not proc.runtime_setup and file.path = /etc/shadow
  output: "%proc.exe read %file.path"
  severity: high
  tactic: TA0006
  technique: T1003.008
  action: {action}
"""


def measure(action: str, runs: int, workdir: str) -> list[int]:
    rules = os.path.join(workdir, f"{action}.yaml")
    with open(rules, "w") as f:
        f.write(RULE.format(action=action))
    policy = os.path.join(workdir, "policy.yaml")
    with open(policy, "w") as f:
        f.write("rate_limit_per_minute: 100000\n")
    cfg = config.load(None, {"kubernetes.mode": "off", "api.listen": [], "metrics.listen": "",
                             "alerts.journal_dir": os.path.join(workdir, "j-" + action),
                             "response.policy": policy})
    agent = Agent(cfg, [rules])
    agent.start()
    img = build_image(os.path.join(workdir, "image"))
    try:
        for _ in range(runs):
            c = Container(img, os.path.join(workdir, "ct")).start()
            try:
                before = len(agent.responder.latencies_ns)
                c.sh("cat /etc/shadow > /dev/null; sleep 5", check=False, timeout=20)
                deadline = time.monotonic() + 10
                while len(agent.responder.latencies_ns) == before and \
                        time.monotonic() < deadline:
                    time.sleep(0.005)
            finally:
                c.stop()
        return list(agent.responder.latencies_ns)
    finally:
        agent.stop()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for action in ("terminate", "isolate"):
            lat = [x / 1e6 for x in measure(action, args.runs, d)]
            print(f"detect -> {action:9}: n={len(lat)} p50={statistics.median(lat):.2f} ms "
                  f"p99={pct(lat, 99):.2f} ms max={max(lat):.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
