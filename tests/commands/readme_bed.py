"""The test bed the documented commands share (the `bed` fixture), and how a command is
run: `program` (sudo as written, `mamori` the venv's), `run`/`ok` (exit 0, or the output
and why), `flag_values`, and `rules_summary` (what `mamori rules check` must print)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time

from agent.rules.ruleset import load as load_rules
from agent.sensor import cgroups
from command_bed import (MY_RULES, PARENT, POLICY, RECON, SHADOW, Agent, Pods,
                         agent_config, make_cgroup, of, remove_cgroup, until, write_certs)
from doc_commands import ROOT, DocCommand

MAMORI = ".venv/bin/mamori"
HELM = os.path.join(ROOT, ".tools", "bin", "helm")
DIGEST = "0" * 64              # the plain manifests' placeholder digest


def program(words: list[str], cmd: DocCommand) -> list[str]:
    """What runs it here: sudo as written; `mamori` is the venv's."""
    if words[0] == "mamori":
        words = [MAMORI] + words[1:]
    return (["sudo"] if cmd.sudo else []) + words


def run(argv: list[str], timeout: float = 120, env: dict | None = None,
        cwd: str = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, env=env, start_new_session=True)


def ok(p: subprocess.CompletedProcess, argv) -> list[str]:
    assert p.returncode == 0, (f"`{' '.join(argv)}` exited {p.returncode}:\n"
                               f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    if "make" in argv:
        # a target listed in .PHONY but without a rule "succeeds" doing nothing
        m = re.search(r"make: (Nothing to be done for '[^']*'|\*\*\* No rule to make "
                      r"target '[^']*')", p.stdout + p.stderr)
        assert not m, f"`{' '.join(argv)}`: {m.group(0)} (the Makefile has no such target)"
    return p.stdout.splitlines()


def flag_values(words: list[str], *names: str) -> list[str]:
    out = []
    for i, w in enumerate(words):
        for n in names:
            if w == n and i + 1 < len(words):
                out.append(words[i + 1])
            elif w.startswith(n + "="):
                out.append(w[len(n) + 1:])
    return out


def rules_summary(paths: list[str]) -> tuple[int, list[str], str]:
    """(rules, problem lines, the summary line) `mamori rules check` must print."""
    rs, problems = load_rules([os.path.join(ROOT, p) if not os.path.isabs(p) else p
                               for p in paths])
    assert rs is not None, [str(p) for p in problems]
    warnings = sum(1 for p in problems if p.level != "error")
    tactics = len({r.tactic for r in rs.rules})
    return len(rs.rules), [str(p) for p in problems], (
        f"{len(rs.rules)} rules ({sum(r.enabled for r in rs.rules)} enabled) across "
        f"{tactics} tactics; {warnings} warning(s)")


class Bed:
    """What the commands share: a temp directory with the user's example files, cgroups
    made for the test, certificates, pods, and the agent -- each made when first needed."""

    def __init__(self, commands: list[DocCommand]):
        self.commands = commands                 # the agent starts as the docs start it
        self.tmp = tempfile.mkdtemp(prefix="mamori-readme-")
        self.my_rules = os.path.join(self.tmp, "my-rules.yaml")
        with open(self.my_rules, "w") as f:
            f.write(MY_RULES)
        self.marker = os.path.join(self.tmp, "mamori-readme-marker")
        with open(self.marker, "w") as f:
            f.write("marker\n")
        # this test's cgroup parent goes last (removed after everything below it)
        self.cgroups: list[str] = [os.path.join(cgroups.cgroup2_root(), PARENT)]
        self._n = 0
        self._certs = self._pods = self._agent = self._agent_error = None
        self.agent_stopped = False

    def n(self) -> int:
        self._n += 1
        return self._n

    def cgroup(self, rel: str) -> str:
        d = make_cgroup(rel)
        self.cgroups.append(d)
        return d

    def dir(self, name: str) -> str:
        d = os.path.join(self.tmp, f"{name}-{self.n()}")
        os.makedirs(d)
        return d

    @property
    def certs(self) -> dict:
        if self._certs is None:
            self._certs = write_certs(self.dir("certs"))
        return self._certs

    @property
    def pods(self) -> Pods:
        if self._pods is None:
            self._pods = Pods(self.dir("pods"))
        return self._pods

    def values(self, **extra) -> dict:
        return {"rules_dir": "rules/", "my_rules": self.my_rules,
                "rule_paths": ["rules/", self.my_rules], "digest": DIGEST, **extra}

    def agent(self) -> Agent:
        """The agent as the README starts it (`sudo make run`), with the test's own
        configuration, and the alerts of two pods: a shadow read and a recon command in
        shop/web-1, a shadow read in dev/api-1."""
        assert not self.agent_stopped, "the agent was stopped by the `make run` test already"
        if self._agent_error is not None:
            raise AssertionError(f"the agent did not start: {self._agent_error}")
        if self._agent is not None:
            return self._agent
        try:
            return self._start_agent()
        except BaseException as e:
            self._agent_error = str(e)[:3000]
            raise

    def _start_agent(self) -> Agent:
        starts = [c for c in self.commands if c.words == ("make", "run")] or [
            c for c in self.commands if c.words == ("mamori", "run")]
        assert starts, "the docs show no way to run the agent (make run, mamori run)"
        start = starts[0]
        work = self.dir("agent")
        policy = os.path.join(work, "policy.yaml")
        with open(policy, "w") as f:
            f.write(POLICY)
        self.pods                                        # mamori-readme/ must exist first
        cfg = agent_config(work, self.certs, policy)
        if start.words[0] == "make":
            argv = (["sudo"] if start.sudo else []) + list(start.words) + [
                f"CONFIG={cfg['path']}"]
        else:
            argv = (["sudo"] if start.sudo else []) + [MAMORI, "run", "--config", cfg["path"]]
        self._agent = a = Agent(argv, cfg, work)
        shop, dev = self.pods.start("shop", "web-1"), self.pods.start("dev", "api-1")
        Pods.named(shop).sh("cat /etc/shadow > /dev/null")
        shop.sh("/bin/uname -a > /dev/null")
        Pods.named(dev).sh("cat /etc/shadow > /dev/null")
        for rule, ns in ((SHADOW, "shop"), (RECON, "shop"), (SHADOW, "dev")):
            a.wait_alert(lambda x: of(x, rule, ns), what=f"{rule} in {ns}")
        settle(a)
        return a

    def close(self):
        try:
            if self._agent is not None and not self.agent_stopped:
                self._agent.stop()
        finally:
            if self._pods is not None:
                self._pods.stop_all()
            for d in reversed(self.cgroups):
                remove_cgroup(d)
            shutil.rmtree(self.tmp, ignore_errors=True)


def settle(agent: Agent, quiet: float = 1.0, timeout: float = 15) -> None:
    """Until the agent has printed no new alert for `quiet` seconds."""
    last = [len(agent.alerts()), time.monotonic()]

    def quiet_now():
        n = len(agent.alerts())
        if n != last[0]:
            last[:] = [n, time.monotonic()]
        return time.monotonic() - last[1] >= quiet
    until(quiet_now, timeout, "the agent's alerts to settle")
