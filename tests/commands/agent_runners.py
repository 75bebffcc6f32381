"""Runners for the commands that talk to the agent `make run` started (`mamori alerts`,
`status`, `release`), for `mamori run`, and for `make run` itself (last: it stops it)."""
from __future__ import annotations

import json
import os
import socket
import threading
import time

from command_bed import (NODE, PARENT, RECON, SEVERITIES, SHADOW, TEAM_RULE, Agent, Pods,
                         Streamed, act_in_cgroup, agent_config, of, until)
from doc_commands import DocCommand, fill
from readme_bed import MAMORI, Bed, flag_values, ok, program, rules_summary, run, settle

def expected_alerts(agent: Agent, words: list[str]) -> list[dict]:
    """The agent's alerts (what it printed) that an `alerts` command with these flags
    shows."""
    sev = flag_values(words, "--severity")
    nss = flag_values(words, "--namespace")
    rules = flag_values(words, "--rule")
    since = int((flag_values(words, "--since") or [0])[-1])
    out = []
    for a in agent.alerts():
        if sev and SEVERITIES.index(a["severity"]) < SEVERITIES.index(sev[-1]):
            continue
        if nss and (a.get("fields") or {}).get("k8s.ns") not in nss:
            continue
        if rules and a["rule"] not in rules:
            continue
        if a["seq"] <= since:
            continue
        out.append(a)
    return out


def shown_seqs(lines: list[str], as_json: bool) -> list[int]:
    if as_json:
        return [int(json.loads(l)["sequence"]) for l in lines]
    assert lines and lines[0].split() == ["SEQ", "TIME", "SEVERITY", "TACTIC", "TECHNIQUE",
                                          "WHERE", "RULE:", "OUTPUT"], lines[:1]
    return [int(l.split()[0]) for l in lines[1:]]


def check_rows(lines: list[str], as_json: bool, expected: list[dict]) -> None:
    """Beyond the sequence numbers: each alert shown as what it is."""
    by_seq = {a["seq"]: a for a in expected}
    for line in (lines if as_json else lines[1:]):
        if as_json:
            a = json.loads(line)
            e = by_seq[int(a["sequence"])]
            assert (a["rule"], a.get("pod", {}).get("namespace", "")) == (
                e["rule"], (e.get("fields") or {}).get("k8s.ns") or "")
        else:
            e = by_seq[int(line.split()[0])]
            assert f"  {e['severity']}  " in line and f"{e['rule']}: " in line, line
            ns, pod = (e.get("fields") or {}).get("k8s.ns"), (e.get("fields") or {}).get(
                "k8s.pod")
            if ns and pod:
                assert f" {ns}/{pod} " in line, line


def run_alerts(cmd: DocCommand, bed: Bed) -> None:
    agent = bed.agent()
    certs = bed.certs
    words = fill(cmd, bed.values(tcp=agent.tcp, ca=certs["ca.pem"], cert=certs["me.pem"],
                                 key=certs["me.key"]))
    if not flag_values(words, "--server"):
        words += ["--server", agent.unix]
    argv = program(words, cmd)
    as_json = "--json" in words
    follow = "-f" in words or "--follow" in words
    resume = "--resume" in words
    home = bed.dir("home")
    env = {**os.environ, "HOME": home}

    def once(shown: list[dict]) -> list[str]:
        if not follow:
            return ok(run(argv, timeout=60, env=env), argv)
        want = {a["seq"] for a in shown}
        s = Streamed(argv, os.path.join(home, "alerts.log"), env=env)
        try:
            try:
                until(lambda: want <= set(shown_seqs(s.output(), as_json)
                                          if s.output() else []),
                      30, f"`{cmd.text}` to show alerts {sorted(want)}")
            except AssertionError as e:
                raise AssertionError(f"{e}\nit showed: {s.output()}\n{s.stderr()}") from None
            time.sleep(0.5)                        # and nothing more arrives
        finally:
            rc = s.interrupt()                     # Ctrl-C
        assert rc == 0, s.stderr()[-3000:]
        return s.output()

    expected = expected_alerts(agent, words)
    assert expected, f"{cmd.id}: the agent has no alert this command would show"
    lines = once(expected)
    assert shown_seqs(lines, as_json) == [a["seq"] for a in expected], (lines, expected)
    check_rows(lines, as_json, expected)
    if flag_values(words, "--severity") or flag_values(words, "--namespace"):
        assert len(expected) < len(agent.alerts()), "the filter left nothing out"
    if resume:
        state = os.path.join(home, ".cache", "mamori", "alerts.last")
        with open(state) as f:
            assert int(f.read()) == expected[-1]["seq"]
        last = expected[-1]["seq"]
        bed.pods.made[0].sh("/bin/uname -a > /dev/null")        # shop/web-1: a new alert
        agent.wait_alert(lambda a: a["seq"] > last and of(a, RECON, "shop"),
                         what="the new recon alert")
        settle(agent)
        new = [a for a in expected_alerts(agent, words) if a["seq"] > last]
        lines = once(new)
        assert shown_seqs(lines, as_json) == [a["seq"] for a in new], (lines, new)


def run_status(cmd: DocCommand, bed: Bed) -> None:
    agent = bed.agent()
    words = fill(cmd, bed.values())
    if not flag_values(words, "--server"):
        words += ["--server", agent.unix]
    argv = program(words, cmd)
    settle(agent)
    lines = ok(run(argv, timeout=60), argv)
    alerts = agent.alerts()
    counts: dict[str, int] = {}
    for a in alerts:
        counts[a["severity"]] = counts.get(a["severity"], 0) + 1
    assert lines[0] == f"node            {NODE}", lines
    assert f"rules loaded    {rules_summary(['rules/'])[0]}" in lines, lines
    assert f"last alert      #{alerts[-1]['seq']}" in lines, lines
    assert ("alerts          " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            in lines), (lines, counts)
    seen = next(l for l in lines if l.startswith("events seen     "))
    assert int(seen.split()[2]) > 0, seen
    assert "events lost     none" in lines, lines


def accept_and_close(srv: socket.socket) -> None:
    """Answer every connection (so that `nc` succeeds) until the socket is closed."""
    while True:
        try:
            srv.accept()[0].close()
        except OSError:             # closed by the test: done
            return


def run_release(cmd: DocCommand, bed: Bed) -> None:
    agent = bed.agent()
    pod = f"iso-{bed.n()}"
    words = fill(cmd, bed.values(pod=f"quarantine/{pod}"))
    if len([w for w in words[2:] if not w.startswith("-")]) == 0:
        words.append(f"quarantine/{pod}")      # named without its argument: this pod
    if not flag_values(words, "--server"):
        words += ["--server", agent.unix]
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    threading.Thread(target=accept_and_close, args=(srv,), daemon=True).start()
    c = bed.pods.start("quarantine", pod)

    def reaches() -> bool:
        return c.sh(f"nc -w 2 127.0.0.1 {port} < /dev/null", check=False).returncode == 0
    try:
        assert reaches(), "the container cannot reach the host before any isolation"
        Pods.named(c).sh("cat /etc/shadow > /dev/null")
        a = agent.wait_alert(lambda x: of(x, SHADOW, "quarantine", pod) and (
            x.get("response") or {}).get("status"), what=f"the isolation of {pod}")
        assert (a["response"]["action"], a["response"]["status"]) == ("isolate", "done"), a
        assert not reaches(), "isolated, yet the container reaches the host"
        argv = program(words, cmd)
        lines = ok(run(argv, timeout=60), argv)
        assert len(lines) == 1 and lines[0].startswith("done: ") and \
            "restored on the node" in lines[0], lines
        assert reaches(), "released, yet the container's network is still cut"
    finally:
        srv.close()
    settle(agent)


def run_mamori_run(cmd: DocCommand, bed: Bed) -> None:
    words = fill(cmd, bed.values())
    if len(words) == 2:
        # `mamori run` with the configuration: exactly what `make run` runs, so the agent
        # the `make run` test starts is this command; its command line says so
        agent = bed.agent()
        argv = agent.cmdline()
        assert argv[-4].endswith(MAMORI) and argv[-3:] == ["run", "--config",
                                                           agent.cfg["path"]], argv
        assert agent.ready()
        return
    n = bed.n()
    bed.pods                                         # mamori-readme/ exists
    cfg = agent_config(bed.dir("run"))
    argv = program(words[:2] + ["--config", cfg["path"]] + words[2:], cmd)
    a = Agent(argv, cfg, os.path.dirname(cfg["path"]))
    try:
        paths = flag_values(words, "--rules")
        count = rules_summary(paths)[0] if paths else rules_summary(["rules/"])[0]
        m = a.run.wait_stderr(r"rules: (\d+) loaded", 30)
        assert int(m.group(1)) == count, a.run.stderr()
        if bed.my_rules in paths:
            act_in_cgroup(bed.cgroup(f"{PARENT}/team-{n}"), open_path=bed.marker)
            a.wait_alert(lambda x: x["rule"] == TEAM_RULE and (x.get("fields") or {}).get(
                "file.path") == bed.marker, what=TEAM_RULE)
    finally:
        rc = a.stop()
    assert rc == 0, a.run.stderr()[-3000:]


def run_make_run(cmd: DocCommand, bed: Bed) -> None:
    """The agent every agent command used, started by this command: it runs, prints one
    JSON line per alert, and stops cleanly (exit 0) on SIGTERM."""
    agent = bed.agent()
    assert agent.run.argv[:len(cmd.argv)] == list(cmd.argv), agent.run.argv
    assert agent.ready()
    lines = agent.run.output()
    echo = f"{MAMORI} run --config {agent.cfg['path']}"        # make's echo of its recipe
    if cmd.words[0] == "make":
        assert echo in lines, lines[:5]
        lines = lines[lines.index(echo) + 1:]
    assert all(l.startswith("{") for l in lines), [l for l in lines if l[:1] != "{"]
    alerts = agent.alerts()
    assert [a["seq"] for a in alerts] == list(range(1, len(alerts) + 1))
    for rule, ns in ((SHADOW, "shop"), (RECON, "shop"), (SHADOW, "dev")):
        assert any(of(a, rule, ns) for a in alerts), (rule, ns)
    assert f"mamori running on node {NODE}" in agent.run.stderr()
    bed.agent_stopped = True
    assert agent.stop() == 0, agent.run.stderr()[-3000:]
