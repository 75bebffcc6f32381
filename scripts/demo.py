"""`sudo make demo`: Mamori against a short attack on a real container, no cluster needed.

Starts the agent (`mamori run`) with the default rules and a demo policy that terminates
the container on a mining-pool connection, a sandbox runc container, and `mamori alerts
--follow` to show what arrives; then plays the attack step by step.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from testbed.image import build_image  # noqa: E402
from testbed.runc import Container  # noqa: E402

STEPS = [
    ("an interactive shell spawned by the web server", "cp /usr/local/bin/probe /tmp/node "
     "&& /tmp/node spawn /bin/sh -c 'id > /dev/null'"),
    ("reading the password hashes", "cat /etc/shadow > /dev/null"),
    ("dropping a tool and running it", "cp /bin/busybox /tmp/.x && /tmp/.x true"),
    ("persistence through cron", "echo '* * * * * /tmp/.x' >> /var/spool/cron/crontabs/root"),
    ("covering tracks", "rm -f /root/.ash_history; : > /var/log/app.log"),
    ("connecting to a mining pool (the policy terminates the container)",
     "nc -w 1 127.0.0.1 3333 < /dev/null; sleep 2"),
]

POLICY = """mode: enforce
overrides:
  - rule: Connection to a mining pool port
    action: terminate
"""


def main() -> int:
    if os.geteuid() != 0:
        sys.exit("demo: needs root (eBPF, containers): sudo make demo")
    work = tempfile.mkdtemp(prefix="mamori-demo-")
    sock = f"unix://{work}/mamori.sock"
    with open(f"{work}/policy.yaml", "w") as f:
        f.write(POLICY)
    with open(f"{work}/mamori.yaml", "w") as f:
        f.write(f"kubernetes: {{mode: 'off'}}\nrules: {{paths: [{ROOT}/rules]}}\n"
                f"alerts: {{journal_dir: {work}/journal}}\napi: {{listen: ['{sock}']}}\n"
                f"metrics: {{listen: ''}}\nresponse: {{policy: {work}/policy.yaml}}\n"
                f"output: {{path: {work}/alerts.jsonl}}\n")
    mamori = [sys.executable, "-m", "agent.cli"]
    print("== starting the agent (compiling the probes takes a few seconds)")
    agent = subprocess.Popen(mamori + ["run", "--config", f"{work}/mamori.yaml"], cwd=ROOT,
                             stderr=open(f"{work}/agent.log", "w"))
    viewer = None
    c = None
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(sock[len("unix://"):]) and time.monotonic() < deadline:
            time.sleep(0.2)
        probe = os.path.join(work, "probe")
        subprocess.run(["gcc", "-static", "-O2", "-o", probe,
                        os.path.join(ROOT, "tests", "helpers", "probe.c")], check=True)
        img = build_image(os.path.join(work, "image"), {"/usr/local/bin/probe": probe})
        # the annotations a CRI runtime would set: the alerts name pod and image without
        # a cluster to ask
        c = Container(img, os.path.join(work, "containers"), network=True, annotations={
            "io.kubernetes.cri.sandbox-namespace": "shop",
            "io.kubernetes.cri.sandbox-name": "web-7d9c4-x2x9q",
            "io.kubernetes.cri.container-name": "web",
            "io.kubernetes.cri.image-name": "registry.example/shop/web:1.4.2"}).start()
        print(f"== sandbox container {c.id} is running")
        viewer = subprocess.Popen(mamori + ["alerts", "--follow", "--server", sock], cwd=ROOT)
        time.sleep(1.5)
        for title, script in STEPS:
            print(f"\n== attack: {title}\n   $ {script}", flush=True)
            c.sh(script, check=False, timeout=30)
            time.sleep(1.5)
        time.sleep(1.5)
        gone = not c.pids()
        print(f"\n== the container's processes are {'gone: terminated' if gone else 'still running'}")
    finally:
        if viewer is not None:
            viewer.terminate()
        if c is not None:
            c.stop()
        agent.terminate()
        agent.wait(timeout=20)
    print(f"\nalerts as JSON lines: {work}/alerts.jsonl; agent log: {work}/agent.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
