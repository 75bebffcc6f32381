"""`mamori run` as a user starts it: probes -> context -> rules -> alerts as JSON lines."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

from testbed import runc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

USER_RULE = """- rule: Hostname read
  desc: test rule from a user's own file
  events: [open]
  condition: container_workload and file.path = /etc/hostname
  output: "%proc.exe read %file.path in %container.id"
  severity: low
  tactic: TA0007
  technique: T1082
"""


class Lines:
    """Reads a process's stdout lines in a thread."""

    def __init__(self, stream):
        self.lines, self.stream = [], stream
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.stream:
            self.lines.append(line)

    def wait_for(self, pred, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if pred(line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"not seen in {len(self.lines)} lines")


def test_run_prints_alerts_and_reloads(tmp_path, containers):
    cfg = tmp_path / "mamori.yaml"
    user = tmp_path / "user.yaml"
    user.write_text(USER_RULE)
    cfg.write_text(f"node_name: test-node\nkubernetes: {{mode: 'off'}}\n"
                   f"sensor: {{watched_cgroups: [{runc.CGROUP_PARENT}]}}\n"
                   f"context: {{container_parents: [{runc.CGROUP_PARENT}]}}\n"
                   f"rules:\n  paths: [{ROOT}/rules, {user}]\n"
                   f"alerts: {{journal_dir: {tmp_path}/journal}}\n"
                   f"api: {{listen: ['unix://{tmp_path}/mamori.sock']}}\n"
                   "metrics: {listen: '127.0.0.1:0'}\n")
    agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        err = Lines(agent.stderr)
        out = Lines(agent.stdout)
        err.wait_for(lambda l: "mamori running on node test-node" in l, timeout=60)
        c = containers()
        c.sh("cat /etc/shadow > /dev/null; cat /etc/hostname > /dev/null")
        shadow = json.loads(out.wait_for(lambda l: "Shadow file read" in l))
        assert shadow["rule"] == "Shadow file read in a container"
        assert (shadow["tactic"], shadow["technique"]) == (
            {"id": "TA0006", "name": "Credential Access"},
            {"id": "T1003.008", "name": "/etc/passwd and /etc/shadow"})
        assert (shadow["severity"], shadow["node"], shadow["action"]) == ("high", "test-node",
                                                                         "log")
        assert shadow["seq"] >= 1
        f = shadow["fields"]
        assert (f["file.path"], f["container.id"], f["proc.name"]) == ("/etc/shadow", c.id,
                                                                      "cat")
        assert shadow["output"] == "/bin/busybox (parent busybox) read /etc/shadow in <NA>/<NA>"
        host = json.loads(out.wait_for(lambda l: '"Hostname read"' in l))
        assert host["output"] == f"/bin/busybox read /etc/hostname in {c.id}"
        # a broken edit: the agent keeps its rules and says so
        user.write_text(USER_RULE.replace("file.path =", "file.pth ="))
        agent.send_signal(signal.SIGHUP)
        failed = json.loads(out.wait_for(lambda l: "Mamori rules reload failed" in l))
        assert failed["source"] == "agent"
        assert failed["fields"]["reload.errors"] == [
            f"{user}:4:37: rule 'Hostname read': unknown field 'file.pth'"]
        c.sh("cat /etc/hostname > /dev/null")
        time.sleep(1.0)
        assert sum('"Hostname read"' in l for l in out.lines) == 2   # old rules still run
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)
    assert agent.returncode == 0


def test_run_refuses_to_start_on_rule_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(USER_RULE.replace("severity: low", "severity: urgent"))
    r = subprocess.run([sys.executable, "-m", "agent.cli", "run", "--rules", str(bad)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-2:] == [
        f"mamori: {bad}:6:13: rule 'Hostname read': severity must be one of info, low, "
        "medium, high, critical, not 'urgent'",
        "mamori: not starting: the rules have errors"]


def test_run_refuses_to_start_on_policy_errors(tmp_path):
    pol = tmp_path / "policy.yaml"
    pol.write_text("mode: enforcing\n")
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"response: {{policy: {pol}}}\nkubernetes: {{mode: 'off'}}\n"
                   f"alerts: {{journal_dir: {tmp_path}/j}}\napi: {{listen: []}}\n"
                   "metrics: {listen: ''}\n")
    r = subprocess.run([sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-2:] == [
        f"mamori: {pol}:1: mode: must be enforce or audit, not 'enforcing'",
        "mamori: not starting: the response policy has errors"]
