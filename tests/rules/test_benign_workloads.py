"""The benign corpus: ordinary workloads of the images users run — web servers and their
health checks, package inspection, log rotation, cron, monitoring sidecars, entrypoints
that drop privileges or render their config — each in a fresh real container, must raise
no alert from the default rules. Evaluated as tests/rules/test_default_rules.py does: the
agent's pipeline watches this process's containers, every event of the container up to a
sentinel exec is enriched and judged by every default rule.

The files an application brings (its scripts, configuration, cron and logrotate entries)
are laid over the Debian image as an image layer of its own, as `COPY` in a Dockerfile
would: they are the image's, not drift."""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from agent.rules.fields import FIELDS
from corpus_bed import engine, pipe  # noqa: F401 (the module's fixtures)

DEBIAN, BUSYBOX = "debian", "busybox"
PORT = 8080
URL = f"http://127.0.0.1:{PORT}"
STEP_TIMEOUT = 30           # seconds for one step of a workload
READY_TIMEOUT = 10          # seconds for a server to answer its first health check
# the event fields a failure names, for whoever tunes the rule that fired
KEY_FIELDS = ("proc.exe", "proc.args", "file.path", "proc.ancestors.name", "net.dport")


@dataclass(frozen=True)
class Probe:
    """A health check run as the kubelet runs an exec probe: `runc exec` of argv from the
    container's init's context, retried until it first succeeds (readiness), then `times`
    more times, each of which must succeed (liveness)."""
    argv: tuple[str, ...]
    times: int = 3


@dataclass(frozen=True)
class Workload:
    """One benign case. `steps`: shell scripts (run with /bin/sh -c), argv tuples (run as
    they are) or Probes, in order, each through runc exec and each expected to succeed.
    `init`: the container's own command (default: sleep). `files`: the application's image
    layer, {path: content}; a path ending in / is a directory, content starting with #! is
    executable."""
    id: str
    steps: tuple
    image: str = DEBIAN
    init: tuple[str, ...] = ()
    files: dict = field(default_factory=dict)


def wait_for(check: str) -> str:
    """A shell loop that waits (at most READY_TIMEOUT s) until `check` succeeds."""
    rounds = READY_TIMEOUT * 10
    return (f"i=0; until {check}; do i=$((i+1)); [ $i -lt {rounds} ] || exit 1; "
            f"sleep 0.1; done")


# -- the application layers -----------------------------------------------------------
NGINX_INIT = ("/usr/sbin/nginx", "-g", "daemon off;")
NGINX_FILES = {
    "/etc/nginx/conf.d/app.conf": f"""server {{
    listen 127.0.0.1:{PORT};
    root /var/www/app;
    location = /healthz {{ return 200 "ok\\n"; }}
}}
""",
    "/var/www/app/index.html": "<html><body>app</body></html>\n",
}

SERVER_PY = f"""#!/usr/bin/env python3
\"\"\"The application: a small HTTP service with a health endpoint.\"\"\"
import http.server


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\\n" if self.path == "/healthz" else b"hello\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        with open("/var/log/app/access.log", "a") as f:
            f.write(fmt % args + "\\n")


http.server.ThreadingHTTPServer(("127.0.0.1", {PORT}), Handler).serve_forever()
"""

CLIENT_PY = f"""#!/usr/bin/env python3
\"\"\"A client of the service: waits for it, then makes 20 requests.\"\"\"
import time
import urllib.request

deadline = time.monotonic() + {READY_TIMEOUT}
while True:
    try:
        urllib.request.urlopen("{URL}/healthz", timeout=1).read()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
for i in range(20):
    assert urllib.request.urlopen(f"{URL}/items/{{i}}", timeout=2).read() == b"hello\\n"
"""

SELFCHECK_PY = f"""#!/usr/bin/env python3
\"\"\"The service's own health check, shelling out to curl as many apps do.\"\"\"
import subprocess
import time

deadline = time.monotonic() + {READY_TIMEOUT}
while subprocess.run(["curl", "-fsS", "-o", "/dev/null", "{URL}/healthz"],
                     capture_output=True).returncode != 0:
    if time.monotonic() > deadline:
        raise SystemExit("the service never became healthy")
    time.sleep(0.1)
for _ in range(5):
    subprocess.run(["curl", "-fsS", "-o", "/dev/null", "{URL}/healthz"], check=True)
"""

PYTHON_FILES = {"/app/server.py": SERVER_PY, "/app/client.py": CLIENT_PY,
                "/app/selfcheck.py": SELFCHECK_PY, "/var/log/app/": ""}

LOGROTATE = """/var/log/app/app.log {{
    {mode}
    rotate 2
    compress
    missingok
    notifempty
}}
"""
# write a log, rotate it, four rounds: with rotate 2 the oldest rotated files are deleted
ROTATE_ROUNDS = ("set -e; for r in 1 2 3 4; do "
                 "for i in $(seq 20); do echo \"round $r line $i\" >> /var/log/app/app.log; "
                 "done; logrotate -f /etc/logrotate.d/app; done; ls /var/log/app")

APP_LOOP = """#!/bin/bash
# The application: writes its log and rotates it itself, keeping three old logs.
set -euo pipefail
log=/var/log/app/app.log
for i in $(seq 200); do
    echo "$(date -u +%FT%T) request $i served" >> "$log"
    if [ "$(stat -c %s "$log")" -gt 2000 ]; then
        rm -f "$log.3"
        for n in 2 1; do
            if [ -f "$log.$n" ]; then mv "$log.$n" "$log.$((n + 1))"; fi
        done
        mv "$log" "$log.1"
    fi
done
ls /var/log/app
"""

APP_REPORT = """#!/bin/sh
# A nightly job: clean the application's stale temporary files, report its log usage.
find /var/tmp -name 'app-*.tmp' -mtime +1 -delete
du -sk /var/log/app >> /var/log/app/report.log
"""

TEMPLATE = """server {
    listen 127.0.0.1:${APP_PORT};
    server_name ${APP_HOST};
    location / { return 200 "hi\\n"; }
}
"""

PYTHON_FILES_SCRIPT = """
import json, os, tempfile
os.makedirs("/tmp/app-cache", exist_ok=True)
with open("/tmp/app-cache/items.json", "w") as f:
    json.dump({"items": list(range(100))}, f)
with open("/tmp/app-cache/items.json") as f:
    assert len(json.load(f)["items"]) == 100
fd, tmp = tempfile.mkstemp(dir="/app/data")
with os.fdopen(fd, "w") as f:
    json.dump({"state": "ready"}, f)
os.replace(tmp, "/app/data/state.json")
with open("/app/data/state.json") as f:
    assert json.load(f)["state"] == "ready"
os.remove("/tmp/app-cache/items.json")
"""

NGINX_READY = wait_for(f"curl -fsS -o /dev/null {URL}/healthz 2>/dev/null")

WORKLOADS = [
    Workload("nginx-curl", (NGINX_READY, f"set -e; for i in $(seq 20); do "
                                         f"curl -fsS -o /dev/null {URL}/; done"),
             init=NGINX_INIT, files=NGINX_FILES),
    Workload("nginx-wget", (NGINX_READY, f"set -e; for i in $(seq 20); do "
                                         f"wget -q -O /dev/null {URL}/; done"),
             init=NGINX_INIT, files=NGINX_FILES),
    Workload("python-urllib", (("python3", "/app/client.py"),),
             init=("python3", "/app/server.py"), files=PYTHON_FILES),
    Workload("python-curl-healthcheck", (("python3", "/app/selfcheck.py"),),
             init=("python3", "/app/server.py"), files=PYTHON_FILES),
    Workload("probe-curl", (Probe(("curl", "-fsS", f"{URL}/healthz")),),
             init=NGINX_INIT, files=NGINX_FILES),
    Workload("probe-wget", (Probe(("wget", "-q", "-O-", f"{URL}/healthz")),),
             init=NGINX_INIT, files=NGINX_FILES),
    Workload("dpkg-inspect", (("dpkg", "-l"), ("dpkg", "-L", "bash"), ("dpkg", "-s", "bash"),
                              ("dpkg-query", "-W", "-f", "${Package} ${Version}\\n"),
                              ("apt", "list", "--installed"),
                              ("apt-cache", "policy", "bash"))),
    Workload("cron-daily-dpkg",
             ("cron", wait_for("[ -s /var/backups/dpkg.status.0 ]")),
             files={"/etc/cron.d/daily-now": "@reboot root cd / && run-parts --report "
                                             "--regex '^(dpkg|logrotate)$' /etc/cron.daily\n"}),
    Workload("logrotate-create", (ROTATE_ROUNDS,),
             files={"/etc/logrotate.d/app": LOGROTATE.format(mode="create 0640 root root"),
                    "/var/log/app/": ""}),
    Workload("logrotate-copytruncate", (ROTATE_ROUNDS,),
             files={"/etc/logrotate.d/app": LOGROTATE.format(mode="copytruncate"),
                    "/var/log/app/": ""}),
    Workload("busybox-rotate", ("set -e; cd /var/log; for r in 1 2 3 4; do "
                                "for i in $(seq 20); do echo \"round $r line $i\" >> app.log; "
                                "done; rm -f app.log.3.gz; "
                                "if [ -f app.log.2.gz ]; then mv app.log.2.gz app.log.3.gz; fi; "
                                "if [ -f app.log.1.gz ]; then mv app.log.1.gz app.log.2.gz; fi; "
                                "mv app.log app.log.1; gzip app.log.1; done; ls /var/log",),
             image=BUSYBOX),
    Workload("busybox-probe-wget", (Probe(("wget", "-q", "-O-", f"{URL}/healthz")),),
             image=BUSYBOX,
             init=("/bin/sh", "-c", "mkdir -p /www && echo ok > /www/healthz && "
                                    f"exec httpd -f -p 127.0.0.1:{PORT} -h /www")),
    Workload("monitoring-sidecar", (("ps", "aux"), ("ps", "-ef"), ("top", "-b", "-n", "1"),
                                    "cat /proc/[0-9]*/stat > /dev/null 2>&1; true",
                                    "cat /proc/[0-9]*/status > /dev/null 2>&1; true"),
             init=NGINX_INIT, files=NGINX_FILES),
    # an entrypoint dropping to the app's user (what it runs there: a script's `id -u` check)
    Workload("drop-su", ("su app -s /bin/sh -c 'id -u'",)),
    Workload("drop-runuser", (("runuser", "-u", "app", "--", "id", "-u"),)),
    Workload("drop-setpriv", (("setpriv", "--reuid=1000", "--regid=1000", "--init-groups",
                               "id", "-u"),)),
    Workload("drop-sudo", (("sudo", "-u", "app", "id", "-u"),)),
    Workload("render-envsubst-nginx",
             ("set -e; APP_PORT=8081 APP_HOST=app.local envsubst '${APP_PORT} ${APP_HOST}' "
              "< /etc/app/nginx.conf.template > /etc/nginx/conf.d/app.conf; nginx -t",),
             files={"/etc/app/nginx.conf.template": TEMPLATE}),
    Workload("render-sed", ("sed -i 's/^log_level=.*/log_level=debug/' /etc/app/app.conf && "
                            "grep -q log_level=debug /etc/app/app.conf",),
             files={"/etc/app/app.conf": "log_level=info\nworkers=2\n"}),
    Workload("cron-d-job", ("cron", wait_for("[ -s /var/log/app/report.log ]")),
             files={"/etc/cron.d/app": "@reboot root /usr/local/bin/app-report\n"
                                       "30 2 * * * root /usr/local/bin/app-report\n",
                    "/usr/local/bin/app-report": APP_REPORT, "/var/log/app/": ""}),
    Workload("bash-app-logs", (("/usr/local/bin/app-loop",),),
             files={"/usr/local/bin/app-loop": APP_LOOP, "/var/log/app/": ""}),
    Workload("python-files", (("python3", "-c", PYTHON_FILES_SCRIPT),),
             files={"/app/data/": ""}),
]


# -- running a case -------------------------------------------------------------------
def test_the_cases_are_distinct_and_cover_both_images():
    ids = [w.id for w in WORKLOADS]
    assert len(ids) == len(set(ids)) >= 20
    assert {w.image for w in WORKLOADS} == {DEBIAN, BUSYBOX}


def _layer(files: dict, root: str) -> str:
    """The application's image layer: `files` written under a fresh folder (no links in
    it, so plain joins stay inside)."""
    for path, content in files.items():
        target = os.path.join(root, path.lstrip("/"))
        if path.endswith("/"):
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write(content)
        os.chmod(target, 0o755 if content.startswith("#!") else 0o644)
    return root


class Collector:
    """The enriched events of one container, consumed from the pipeline as the agent
    consumes them: continuously, also while a step runs."""

    def __init__(self, pipe, container):
        self.pipe, self.c, self.items = pipe, container, []

    def drain(self) -> list:
        fresh = [i for i in self.pipe.step()
                 if i.container is not None and i.container.id == self.c.id]
        self.items += fresh
        return fresh

    def run(self, argv: list[str], timeout: float = STEP_TIMEOUT) -> tuple[int, str]:
        """runc exec argv in the container, draining the pipeline until it ends; its exit
        status and output."""
        with tempfile.TemporaryFile() as out:
            p = subprocess.Popen(["runc", "exec", self.c.id, *argv], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            while p.poll() is None and time.monotonic() < deadline:
                self.drain()
                time.sleep(0.02)
            if p.poll() is None:
                p.kill()
                p.wait()
                return -1, f"timed out after {timeout} s"
            out.seek(0)
            return p.returncode, out.read().decode(errors="replace")[-2000:]

    def sentinel(self) -> None:
        """An exec after the workload; once it arrives, every event before it has."""
        mark = ("/bin/true", f"sentinel-{time.monotonic_ns()}")
        rc, out = self.run(list(mark))
        assert rc == 0, out
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            # it may have been drained already, while runc exec ran
            if any(i.kind == "exec" and i.event.args == mark for i in self.items):
                return
            self.drain()
            time.sleep(0.02)
        sensor, cg = self.pipe.sensor, self.c.cgroup_id
        raise AssertionError(f"the sentinel exec never arrived ({len(self.items)} events "
                             f"seen; lost in the kernel: {sensor.drops_by_cgroup().get(cg, 0)},"
                             f" shed: {sensor.shed_by_cgroup().get(cg, 0)})")


def _run_step(col: Collector, step) -> None:
    """Run one step of a workload; it must succeed (a broken workload proves nothing)."""
    if isinstance(step, Probe):
        deadline = time.monotonic() + READY_TIMEOUT
        while (rc := col.run(list(step.argv))[0]) != 0:
            assert time.monotonic() < deadline, f"{step.argv} never succeeded (exit {rc})"
            time.sleep(0.1)
        for _ in range(step.times):
            rc, out = col.run(list(step.argv))
            assert rc == 0, f"{step.argv} exited {rc}: {out}"
        return
    argv = ["/bin/sh", "-c", step] if isinstance(step, str) else list(step)
    rc, out = col.run(argv)
    assert rc == 0, f"{argv} exited {rc}:\n{out}"


def _describe(rule: str, item) -> str:
    """One line naming the rule and the key fields of the event that fired it."""
    parts = [f"{rule!r} on {item.kind}"]
    for name in KEY_FIELDS:
        f = FIELDS[name]
        value = f.get(item) if item.kind in f.kinds else None
        if value not in (None, "", ()):
            parts.append(f"{name}={value!r}")
    return " ".join(parts)


@pytest.mark.parametrize("work", WORKLOADS, ids=[w.id for w in WORKLOADS])
def test_an_ordinary_workload_raises_no_alert(work, pipe, engine, containers,
                                              debian_containers, tmp_path):
    kw = {"network": True}                 # its own loopback: traffic stays inside
    if work.init:
        kw["command"] = list(work.init)
    if work.image == BUSYBOX:
        assert not work.files, "the busybox image takes no application layer"
        c = containers(**kw)
    else:
        layers = (_layer(work.files, str(tmp_path / "layer")),) if work.files else ()
        c = debian_containers(layers=layers, **kw)
    col = Collector(pipe, c)
    for step in work.steps:
        _run_step(col, step)
    col.sentinel()
    fired = Counter(_describe(r.name, item) for item in col.items
                    for r in engine.ruleset.evaluate(item))
    assert not fired, (f"{work.id}: {sum(fired.values())} alert(s) from benign work:\n  "
                       + "\n  ".join(f"{n}x {line}" for line, n in sorted(fired.items())))
