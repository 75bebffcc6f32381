"""Runners for what runs on the node without the shared agent: `mamori trace` (real events
the test makes), `make bench` (its smoke mode), `make demo` (to its end)."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import time

from agent.sensor.layout import FAMILIES
from command_bed import PARENT, Streamed, act_in_cgroup, free_port, until
from doc_commands import ROOT, DocCommand, fill
from readme_bed import Bed, flag_values, ok, program, rules_summary, run

DEMO_RULES = {
    "an interactive shell spawned by the web server": "Shell spawned by a web server",
    "reading the password hashes": "Shadow file read in a container",
    "dropping a tool and running it": "Drift - new program run in a container",
    "persistence through cron": "Cron job written in a container",
    "covering tracks": "Log file deleted or truncated",
    "connecting to a mining pool (the policy terminates the container)":
        "Connection to a mining pool port",
}


def run_trace(cmd: DocCommand, bed: Bed) -> None:
    n = bed.n()
    words = fill(cmd, bed.values(cgroup=f"/{PARENT}/trace-{n}"))
    for c in flag_values(words, "--cgroup"):
        bed.cgroup(c)
    kinds_arg = flag_values(words, "--kinds")
    shown = set()
    for item in (kinds_arg[-1].split(",") if kinds_arg else list(FAMILIES)):
        shown |= set(FAMILIES.get(item, [item]))
    if "--all-processes" in words:
        where = None                                   # the host: the test's own cgroup
    elif flag_values(words, "--cgroup"):
        where = bed.cgroups[-1]
    else:
        # the configuration's defaults (config/mamori.yaml's built-in list): of those, the
        # test bed's container parent is the one a test may make
        where = bed.cgroup(f"mamori-test/readme-trace-{os.getpid()}-{n}")
    marker = os.path.join(bed.tmp, f"trace-{n}-marker")
    outside = os.path.join(bed.tmp, f"trace-{n}-outside")
    for p in (marker, outside):
        with open(p, "w") as f:
            f.write("x\n")
    port = free_port()                                  # nothing listens there
    t = Streamed(program(words, cmd), os.path.join(bed.tmp, f"trace-{n}.log"))
    try:
        t.wait_stderr(r"probes attached \(", 120)
        act_in_cgroup(where, open_path=marker if "open" in shown else "",
                      connect_port=port if "connect" in shown else 0,
                      exec_argv=["/bin/true", marker] if "exec" in shown else None)
        if where is not None:
            os.close(os.open(outside, os.O_RDONLY))    # outside what it watches: not shown
        expect = {}
        if "open" in shown:
            expect["open"] = lambda e: e["event.kind"] == "open" and e.get(
                "file.path") == marker
        if "connect" in shown:
            expect["connect"] = lambda e: e["event.kind"] == "connect" and e.get(
                "net.dport") == port and e.get("net.daddr") == "127.0.0.1"
        if "exec" in shown:
            expect["exec"] = lambda e: e["event.kind"] == "exec" and e.get(
                "proc.args") == ["/bin/true", marker]
        assert expect, f"{cmd.id}: shows none of open, connect, exec: teach run_trace"

        def events():
            return [json.loads(line) for line in t.output()]

        def all_seen():
            evs = events()
            return all(any(f(e) for e in evs) for f in expect.values())
        until(all_seen, 30, f"the events the test made, from `{cmd.text}`")
        time.sleep(0.3)
    finally:
        rc = t.interrupt()
    assert rc == 0, t.stderr()[-3000:]
    evs = events()
    assert {e["event.kind"] for e in evs} <= shown, {e["event.kind"] for e in evs} - shown
    if where is not None:
        assert not [e for e in evs if e.get("file.path") == outside], \
            "an open outside the watched cgroups was shown"


def run_bench(cmd: DocCommand, bed: Bed) -> None:
    words = fill(cmd, bed.values())
    argv = program(words + ["SMOKE=1"], cmd)

    def state():
        out = {}
        doc = os.path.join(ROOT, "docs", "benchmarks.md")
        with open(doc, "rb") as f:
            out[doc] = hashlib.sha256(f.read()).hexdigest()
        build = os.path.join(ROOT, "bench", "build")
        for d, _, names in os.walk(build):
            for n in names:
                p = os.path.join(d, n)
                out[p] = os.stat(p).st_mtime_ns
        return out
    before = state()
    p = run(argv, timeout=900)
    where = re.search(r"^== smoke run: built and reported in (/tmp/mamori-bench-smoke-\S+)$",
                      p.stdout, re.M)
    try:
        lines = ok(p, argv)
        assert where, lines[:5]
        out = where.group(1)
        assert state() == before, "a smoke run wrote into docs/ or bench/build"
        sections = [l for l in lines if l.startswith("== ")]
        assert sections == [where.group(0),
                            "== build: bench/storm.c",                # built before measured
                            "== the agent: start-up, idle, latency, load",
                            "== detect -> SIGKILL",
                            "== the ceiling: the sensor alone, and the evaluator's CPU per "
                            "stage", "== syscall overhead"], sections
        assert lines[-1] == f"written to {out}/report.md", lines[-3:]
        with open(f"{out}/report.md") as f:
            report = f.read()
        with open(os.path.join(out, "last-report.json")) as f:
            numbers = json.load(f)
    finally:
        if where:
            shutil.rmtree(where.group(1), ignore_errors=True)
    assert numbers["mode"] == "smoke"
    for heading in ("### Syscall overhead", "### The whole agent (`mamori run`, default rules)",
                    "### The ceiling, and where the time goes", "### Latency",
                    "### Against the targets"):
        assert f"\n{heading}\n" in report, heading
    for stage in ("decode", "context", "rules", "alert records"):   # the profile's rows
        assert re.search(rf"^\| {stage}[^|]* \| [\d.]+ \| [\d.]+ \| [\d,]+/s \|$", report,
                         re.M), stage
    assert re.search(r"The sensor alone .* delivers \*\*[\d,]+ events/s\*\* with \d+ lost",
                     report), "the sensor's ceiling"
    for storm in (r"openat\+close", r"fork\+exec /bin/true", r"socket\+connect \(refused\)"):
        assert re.search(rf"^\| {storm} ×[\d,]+ \| [\d,]+ \| ", report, re.M), storm
    n = rules_summary(["rules/"])[0]
    assert re.search(rf"Start-up: \*\*[\d.]+ s\*\* from launch to `/readyz` 200 \(probes "
                     rf"compiled and attached in [\d.]+ s, {n} rules loaded\)", report)
    assert re.search(r"^\| open storm( ✗)? \| [\d,]+ \| [\d,]+ \| ", report, re.M)
    # every latency run arrived
    assert len(numbers["alert_ns"]) == 3 and re.search(
        r"^\| detect → alert at a gRPC subscriber \| 3 \| ", report, re.M), report
    assert len(numbers["kill_ns"]) >= 2 and re.search(
        r"^\| detect → SIGKILL \(terminate\) \| \d+ \| [\d.]+ ms \|", report, re.M), report


def run_demo(cmd: DocCommand, bed: Bed) -> None:
    spec = importlib.util.spec_from_file_location("demo", os.path.join(ROOT, "scripts",
                                                                       "demo.py"))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    titles = [t for t, _ in demo.STEPS]
    unknown = [t for t in titles if t not in DEMO_RULES]
    assert not unknown, f"demo steps without an expected rule in DEMO_RULES: {unknown}"
    argv = program(fill(cmd, bed.values()), cmd)
    p = run(argv, timeout=600)
    lines = ok(p, argv)
    m = re.fullmatch(r"alerts as JSON lines: (/\S+)/alerts\.jsonl; agent log: \1/agent\.log",
                     lines[-1])
    assert m, lines[-3:]
    work = m.group(1)
    assert os.path.basename(work).startswith("mamori-demo-"), work
    try:
        with open(os.path.join(work, "alerts.jsonl")) as f:
            alerts = [json.loads(l) for l in f if l.strip()]
        with open(os.path.join(work, "agent.log")) as f:
            log = f.read()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    started = [re.fullmatch(r"== sandbox container (\S+) is running", l) for l in lines]
    ids = [s.group(1) for s in started if s]
    assert len(ids) == 1, lines
    header = [i for i, l in enumerate(lines) if l.split()[:2] == ["SEQ", "TIME"]]
    assert len(header) == 1, lines                     # the `mamori alerts --follow` viewer
    step_at = [lines.index(f"== attack: {t}") for t in titles]
    ours = [a for a in alerts if (a.get("fields") or {}).get("container.id") == ids[0]]
    for i, title in enumerate(titles):
        rule = DEMO_RULES[title]
        assert any(a["rule"] == rule for a in ours), (
            f"step {title!r}: no {rule!r} alert for the sandbox; got "
            f"{[a['rule'] for a in ours]}\n{log[-2000:]}")
        rows = [j for j, l in enumerate(lines) if f" {rule}: " in l and " shop/" in l]
        assert rows and max(rows) > step_at[i], f"step {title!r}: {rule!r} not shown"
    mining = next(a for a in ours if a["rule"] == DEMO_RULES[titles[-1]])
    assert (mining["response"]["action"], mining["response"]["status"]) == ("terminate",
                                                                              "done")
    assert any(f" {mining['rule']}: " in l and "[terminate: done]" in l for l in lines)
    assert "== the container's processes are gone: terminated" in lines


def run_profile_eval(cmd: DocCommand, bed: Bed) -> None:
    """`bench/profile_eval.py`: the storm it records and the stages it replays, as the docs
    run it; every stage is reported with a cost and a rate."""
    argv = program(fill(cmd, bed.values()), cmd)
    lines = ok(run(argv, timeout=600), argv)
    assert any(l.startswith("sensor alone: ") and " 0 lost" in l for l in lines), lines[:5]
    stages = [l.split()[1] for l in lines if l.startswith("+ ")]
    assert stages == ["decode", "context", "rules", "alerts"], lines
    assert all(re.search(r"total +[0-9.]+ µs/event = [0-9,]+ events/s", l)
               for l in lines if l.startswith("+ ")), lines


def run_rules_over_time(cmd: DocCommand, bed: Bed) -> None:
    """`bench/rules_over_time.py`: a recording, then both rulesets evaluated in turns, each
    round reported with its rule count and rate, and the best of each compared."""
    words = fill(cmd, bed.values())
    if not flag_values(words, "--rounds"):
        words += ["--rounds", "1"]           # one turn each proves it (the docs run more)
    argv = program(words, cmd)
    lines = ok(run(argv, timeout=600), argv)
    assert re.match(r"recorded \d+ container events \{", lines[0]), lines
    rounds = [l for l in lines if l.startswith("round ")]
    assert len(rounds) == 2 and all(re.search(r": \d+ rules \(\d+ over time\): [0-9,]+ "
                                              r"events/s per CPU second", l)
                                    for l in rounds), lines
    assert re.match(r"best of 1: before \(\w+\) [0-9,]+/s, now [0-9,]+/s \([+-][0-9.]+%\)",
                    lines[-1]), lines
