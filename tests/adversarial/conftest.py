"""The attacker's side: `mamori run` as its own process with the default rules, and real runc
containers in which the tests play what an attacker inside a container would do (issues 20
and 21: tests/adversarial/test_*.py, one file per theme).

    def test_x(agent_factory, containers):
        agent = agent_factory(drift={"prevent_all": True})      # config sections merged in
        c = containers()
        m = agent.mark()
        c.sh("cat /etc/shadow")
        a = agent.wait_for("Shadow file read in a container", c.id, since=m)
        agent.assert_none("Shadow file read in a container", c.id, since=m, wait=2)

Alerts are read from the agent's JSON-lines output file (the same records gRPC carries).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from testbed import runc
from testbed.waiting import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAMORI = os.path.join(os.path.dirname(sys.executable), "mamori")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


class AgentProcess:
    """One `mamori run`; stopped by the fixture, also when the test failed."""

    def __init__(self, workdir: str, config: dict, args=()):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.metrics = f"127.0.0.1:{free_port()}"
        self.socket = f"{workdir}/mamori.sock"
        self.output = f"{workdir}/alerts.jsonl"
        base = {
            "node_name": "adversarial-node",
            "kubernetes": {"mode": "off"},
            **runc.agent_config(),                          # this test process's containers
            "rules": {"paths": [f"{ROOT}/rules"]},
            "alerts": {"journal_dir": f"{workdir}/journal"},
            "api": {"listen": [f"unix://{self.socket}"]},
            "metrics": {"listen": self.metrics},
            "output": {"path": self.output},
        }
        self.config = _merge(base, config)
        self.config_path = f"{workdir}/mamori.yaml"
        with open(self.config_path, "w") as f:
            yaml.safe_dump(self.config, f)
        self.log_path = f"{workdir}/agent.log"
        self._log = open(self.log_path, "w+")
        self.proc = subprocess.Popen([MAMORI, "run", "--config", self.config_path, *args],
                                     cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self._log)
        self._seen: list[dict] = []
        self._offset = 0
        ok = wait_until(lambda: self.ready() or self.proc.poll() is not None, 90, 0.1)
        if not ok or self.proc.poll() is not None:
            self.stop()
            raise AssertionError(f"agent did not become ready:\n{self.log()[-4000:]}")

    # -- state -------------------------------------------------------------------------
    def http(self, path: str, timeout: float = 2) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{self.metrics}{path}", timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def ready(self) -> bool:
        try:
            return self.http("/readyz", 1)[0] == 200
        except OSError:
            return False

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path) as f:
            return f.read()

    def alerts(self) -> list[dict]:
        """Every alert written so far (read incrementally from the output file)."""
        try:
            with open(self.output, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self._seen
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            if line.strip():
                self._seen.append(json.loads(line))
        self._offset += end
        return self._seen

    def mark(self) -> int:
        return len(self.alerts())

    def matching(self, rule: str | None = None, container_id: str | None = None,
                 since: int = 0, source: str | None = None) -> list[dict]:
        return [a for a in self.alerts()[since:]
                if (rule is None or a["rule"] == rule) and
                (source is None or a.get("source") == source) and
                (container_id is None or a["fields"].get("container.id") == container_id)]

    def wait_for(self, rule: str, container_id: str | None = None, since: int = 0,
                 timeout: float = 15, source: str | None = None) -> dict:
        found: list[dict] = []

        def seen():
            found[:] = self.matching(rule, container_id, since, source)
            return bool(found) or self.proc.poll() is not None
        wait_until(seen, timeout, 0.05)
        assert found, (f"no alert {rule!r} for {container_id}; got "
                       f"{[(a['rule'], a['fields'].get('container.id')) for a in self.alerts()[since:]]}"
                       f"\nagent log tail:\n{self.log()[-3000:]}")
        return found[0]

    def assert_none(self, rule: str | None, container_id: str | None = None, since: int = 0,
                    wait: float = 2.0) -> None:
        time.sleep(wait)
        got = self.matching(rule, container_id, since)
        assert not got, f"unexpected alerts: {[(a['rule'], a['output']) for a in got]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def agent_factory(tmp_path):
    """agent_factory(**config_sections, args=()) -> a running AgentProcess (default rules,
    no Kubernetes API, alerts in a JSON-lines file, metrics on a free loopback port)."""
    made: list[AgentProcess] = []

    def make(args=(), **config) -> AgentProcess:
        a = AgentProcess(str(tmp_path / f"agent{len(made)}"), config, args)
        made.append(a)
        return a
    yield make
    for a in made:
        a.stop()
        if a.proc.returncode not in (0, -15):
            sys.stderr.write(a.log()[-4000:])
