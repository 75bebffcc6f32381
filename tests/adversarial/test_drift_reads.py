"""Issue 20, findings 2 (user space), 3, 5, 6 and 16: what a container can make the drift stage
read, and how long it can make it wait. Each test plays the attack in a real runc container
against a real `mamori run` and checks the alert it gets, field by field.

The image here is the busybox test image plus a few helpers (built with gcc once per
module): `selfdel` (unlinks its own file first, then sleeps), `tool` (a static program that
exits 0), `dyn` (a dynamic program that prints "dynamic", then sleeps argv[1] seconds), and
the host's dynamic loader and libc, so that `/lib64/ld-linux-x86-64.so.2 /root/x` works as
in a glibc image.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import time

import pytest

from agent.sensor import cgroups
from testbed.image import build_image
from testbed.runc import Container

NEW_PROGRAM = "Drift - new program run in a container"
MODIFIED = "Drift - modified image program run"
SCRIPT = "Drift - script not from the image run"
UNKNOWN = "Drift - program or script of unknown origin run"
SHADOW = "Shadow file read in a container"
DRIFT_RULES = (NEW_PROGRAM, MODIFIED, SCRIPT, UNKNOWN)
LOADER = "/lib64/ld-linux-x86-64.so.2"

SELFDEL_C = r"""
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char p[4096];
    ssize_t n = readlink("/proc/self/exe", p, sizeof p - 1);   /* first: remove my file */
    if (n > 0) { p[n] = 0; unlink(p); }
    sleep(argc > 1 ? atoi(argv[1]) : 30);
    return 0;
}
"""
TOOL_C = "int main(void) { return 0; }\n"
DYN_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    puts("dynamic");
    fflush(stdout);
    if (argc > 1) sleep(atoi(argv[1]));
    return 0;
}
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def drift_image(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift-image")
    out = {}
    for name, src, static in (("selfdel", SELFDEL_C, True), ("tool", TOOL_C, True),
                              ("dyn", DYN_C, False)):
        c = root / f"{name}.c"
        c.write_text(src)
        out[name] = str(root / name)
        subprocess.run(["gcc", *(["-static"] if static else []), "-O2", "-o", out[name],
                        str(c)], check=True)
    helpers = {"/usr/local/bin/selfdel": out["selfdel"], "/usr/local/bin/tool": out["tool"],
               "/usr/local/bin/dyn": out["dyn"],
               LOADER: os.path.realpath(LOADER),
               "/lib/x86_64-linux-gnu/libc.so.6":
                   os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6")}
    return build_image(str(root), helpers=helpers)


# Containers of these tests live under their own cgroup parent, watched only by the agents
# these tests start: other agents running on the same machine (other test files, with drift
# prevention on) neither kill what these containers run nor get their own containers killed
# by the enforcing agent here.
PARENT = "mamori-drift-reads"


@pytest.fixture
def box(drift_image, tmp_path_factory):
    """Containers of the drift image (stopped and removed after the test)."""
    made = []
    workdir = str(tmp_path_factory.mktemp("drift-containers"))

    def make(**kw) -> Container:
        c = Container(drift_image, workdir, **kw)
        c.cgroup_path = f"{PARENT}/{c.id}"
        made.append(c)
        return c.start()
    yield make
    for c in made:
        c.stop()
    try:
        os.rmdir(os.path.join(cgroups.cgroup2_root(), PARENT))   # if nothing else is in it
    except OSError:
        pass


@pytest.fixture
def start(agent_factory):
    """start(**config) -> a `mamori run` watching only the containers of this file."""
    def make(**config):
        base = {"sensor": {"watched_cgroups": [PARENT]},
                "context": {"container_parents": [PARENT]}}
        for k, v in config.items():
            base[k] = {**base.get(k, {}), **v}
        return agent_factory(**base)
    return make


def of_exec(agent, rule, c, args, since, timeout=15):
    """The alert `rule` raised for the exec of exactly `args` in container c."""
    found = []

    def seen():
        found[:] = [a for a in agent.matching(rule, c.id, since)
                    if list(a["fields"].get("proc.args") or []) == list(args)]
        return bool(found)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not seen():
        time.sleep(0.05)
    assert found, (f"no {rule!r} for {args} in {c.id}; got "
                   f"{[(a['rule'], a['fields'].get('proc.args')) for a in agent.alerts()[since:]]}"
                   f"\nagent log:\n{agent.log()[-3000:]}")
    return found[0]["fields"]


def drift_fields(f: dict) -> dict:
    return {k: f.get(k) for k in ("drift.kind", "drift.path", "drift.script", "drift.size",
                                  "drift.sha256", "drift.unknown_reason", "drift.hash_error",
                                  "drift.prevented")}


def no_drift_alert_for(agent, c, args, since, wait=2.0):
    time.sleep(wait)
    got = [(a["rule"], a["output"]) for a in agent.alerts()[since:]
           if a["rule"] in DRIFT_RULES and a["fields"].get("container.id") == c.id and
           list(a["fields"].get("proc.args") or []) == list(args)]
    assert not got, got


def shadow_alert_within(agent, c, seconds):
    m = agent.mark()
    t0 = time.monotonic()
    c.sh("cat /etc/shadow >/dev/null")
    agent.wait_for(SHADOW, c.id, since=m, timeout=seconds)
    return time.monotonic() - t0


# -- finding 5: symbolic links are resolved inside the container, never on the host --------
def test_a_symlink_to_a_host_file_is_resolved_in_the_container_not_on_the_host(
        start, box):
    host_motd, host_shadow = read("/etc/motd"), read("/etc/shadow")
    agent = start()
    c = box()
    m = agent.mark()
    c.sh("printf 'echo dropped\\n' > /etc/motd && ln -s /etc/motd /tmp/m && "
         "ln -s /etc/shadow /tmp/s && ln -s ../../../../../../../../etc/shadow /tmp/r")
    c.exec("/bin/sh", "/tmp/m")
    f = of_exec(agent, SCRIPT, c, ["/bin/sh", "/tmp/m"], m)
    # the container's /etc/motd (the dropped script), not the host's
    assert drift_fields(f) == {
        "drift.kind": "new", "drift.path": "/etc/motd", "drift.script": True,
        "drift.size": 13, "drift.sha256": sha(b"echo dropped\n"),
        "drift.unknown_reason": None, "drift.hash_error": None, "drift.prevented": False}
    assert f["drift.sha256"] != sha(host_motd)
    # /etc/shadow of the image, by an absolute link and by a chain of '..' climbing out of
    # the layer: the image's own file, so no drift, and the host's never read
    c.exec("/bin/sh", "/tmp/s", check=False)
    c.exec("/bin/sh", "/tmp/r", check=False)
    no_drift_alert_for(agent, c, ["/bin/sh", "/tmp/s"], m)
    no_drift_alert_for(agent, c, ["/bin/sh", "/tmp/r"], m, wait=0)
    for a in agent.alerts()[m:]:
        assert a["fields"].get("drift.sha256") not in (sha(host_shadow), sha(host_motd))
        assert a["fields"].get("drift.size") != len(host_shadow)


def test_a_symlink_to_what_only_the_host_has_alerts_unknown_origin_without_host_data(
        start, box):
    agent = start()
    c = box()
    m = agent.mark()
    c.sh("ln -s /etc/debian_version /tmp/d")
    c.exec("/bin/sh", "/tmp/d", check=False)
    f = of_exec(agent, UNKNOWN, c, ["/bin/sh", "/tmp/d"], m)
    assert drift_fields(f) == {
        "drift.kind": None, "drift.path": "/etc/debian_version", "drift.script": True,
        "drift.size": None, "drift.sha256": None,
        "drift.unknown_reason": "not in the container's layers (a volume or a tmpfs?)",
        "drift.hash_error": None, "drift.prevented": False}


# -- finding 3: origin not established -> alert; a program that deletes itself -------------
def test_a_script_from_outside_the_layers_alerts_unknown_origin(start, box):
    agent = start()
    c = box()
    m = agent.mark()
    c.sh("printf 'echo hi\\n' > /dev/shm/x.sh")
    c.exec("/bin/sh", "/dev/shm/x.sh")
    f = of_exec(agent, UNKNOWN, c, ["/bin/sh", "/dev/shm/x.sh"], m)
    assert (f["drift.kind"], f["drift.path"], f["drift.script"], f["drift.unknown_reason"]) == \
        (None, "/dev/shm/x.sh", True, "not in the container's layers (a volume or a tmpfs?)")


def test_a_program_that_deletes_itself_at_start_is_new_drift_hashed_through_proc(
        start, box, drift_image):
    binary = read(os.path.join(drift_image, "usr/local/bin/selfdel"))
    agent = start()
    c = box()
    c.sh("cp /usr/local/bin/selfdel /tmp/sd")
    m = agent.mark()
    p = c.popen("/tmp/sd", "20", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        f = of_exec(agent, NEW_PROGRAM, c, ["/tmp/sd", "20"], m)
        assert not os.path.lexists(os.path.join(c.upper, "tmp/sd"))   # it is gone
        assert drift_fields(f) == {
            "drift.kind": "new", "drift.path": "/tmp/sd", "drift.script": False,
            "drift.size": len(binary), "drift.sha256": sha(binary),
            "drift.unknown_reason": None, "drift.hash_error": None, "drift.prevented": False}
        assert (f["proc.exe_upper_layer"], f["proc.exe_lower_layer"]) == (True, False)
    finally:
        p.kill()


# -- finding 16: one source of truth for copy-ups (hard links) ----------------------------
def test_a_hard_link_of_an_image_program_is_not_drift_but_a_changed_one_is_modified(
        start, box, drift_image):
    tool = read(os.path.join(drift_image, "usr/local/bin/tool"))
    agent = start()
    c = box()
    m = agent.mark()
    c.sh("ln /bin/busybox /root/bb")
    c.exec("/root/bb", check=False)             # busybox: "bb: applet not found", but it ran
    no_drift_alert_for(agent, c, ["/root/bb"], m, wait=3)
    c.sh("ln /usr/local/bin/tool /root/t && printf x >> /root/t")
    c.exec("/root/t")
    f = of_exec(agent, MODIFIED, c, ["/root/t"], m)
    assert drift_fields(f) == {
        "drift.kind": "modified", "drift.path": "/root/t", "drift.script": False,
        "drift.size": len(tool) + 1, "drift.sha256": sha(tool + b"x"),
        "drift.unknown_reason": None, "drift.hash_error": None, "drift.prevented": False}
    assert not agent.matching(NEW_PROGRAM, c.id, m)


# -- finding 2, user space: the dynamic loader is an interpreter ---------------------------
def test_a_dropped_program_run_through_the_image_loader_is_new_drift(
        start, box, drift_image):
    dyn = read(os.path.join(drift_image, "usr/local/bin/dyn"))
    agent = start()
    c = box()
    m = agent.mark()
    assert c.exec(LOADER, "/usr/local/bin/dyn").stdout == b"dynamic\n"   # the image's: fine
    c.sh("cp /usr/local/bin/dyn /root/x")
    assert c.exec(LOADER, "/root/x").stdout == b"dynamic\n"
    f = of_exec(agent, NEW_PROGRAM, c, [LOADER, "/root/x"], m)
    assert drift_fields(f) == {
        "drift.kind": "new", "drift.path": "/root/x", "drift.script": False,
        "drift.size": len(dyn), "drift.sha256": sha(dyn),
        "drift.unknown_reason": None, "drift.hash_error": None, "drift.prevented": False}
    # ld.so's options and their values are not the program; a relative path is taken from
    # the working directory (the process stays 2 s, so that its cwd is read)...
    args = [LOADER, "--inhibit-cache", "--argv0", "innocent", "./x", "2"]
    c.exec("/bin/sh", "-c", "cd /root && exec " + " ".join(args))
    f = of_exec(agent, NEW_PROGRAM, c, args, m)
    assert (f["drift.kind"], f["drift.path"], f["drift.sha256"]) == ("new", "/root/x", sha(dyn))
    # ... and a bare name is what glibc looks up like a library (ld.so.cache, which a
    # container can rewrite): not followed, so reported as of unknown origin
    args = [LOADER, "--library-path", "/root", "--preload", "libc.so.6", "x"]
    c.exec("/bin/sh", "-c", "cd /root && exec " + " ".join(args), check=False)
    f = of_exec(agent, UNKNOWN, c, args, m)
    assert (f["drift.kind"], f["drift.path"], f["drift.unknown_reason"]) == (
        None, "x", "ld.so was asked to run 'x' by name, not by path: glibc looks such a name "
                   "up like a library (ld.so.cache), which this check does not follow")
    no_drift_alert_for(agent, c, [LOADER, "/usr/local/bin/dyn"], m, wait=0)


# -- finding 6: hashing cannot stall detection ----------------------------------------------
def test_a_fifo_given_as_a_script_is_reported_and_never_opened_for_reading(start, box):
    agent = start()
    c = box()
    m = agent.mark()
    c.sh("mkfifo /tmp/f.sh")
    p = c.popen("/bin/sh", "/tmp/f.sh", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        f = of_exec(agent, SCRIPT, c, ["/bin/sh", "/tmp/f.sh"], m)
        assert drift_fields(f) == {
            "drift.kind": "new", "drift.path": "/tmp/f.sh", "drift.script": True,
            "drift.size": None, "drift.sha256": None, "drift.unknown_reason": None,
            "drift.hash_error": "not a regular file (fifo)", "drift.prevented": False}
        assert shadow_alert_within(agent, c, 5) < 5
    finally:
        p.kill()


def test_a_fifo_swapped_in_for_an_image_file_does_not_block_prevention(start, box):
    agent = start(drift={"prevent_all": True})
    c = box()
    time.sleep(1)                                  # enforced from its cgroup's creation
    # the image's /usr/local/bin/tool replaced by a FIFO, opened for writing (and held):
    # prevention compares what was opened with the image — it must not read a FIFO
    p = c.popen("/bin/sh", "-c", "rm /usr/local/bin/tool && mkfifo /usr/local/bin/tool && "
                "exec 3<>/usr/local/bin/tool && sleep 60",
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(os.path.join(c.upper, "usr/local/bin/tool")) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert shadow_alert_within(agent, c, 5) < 5
        status, body = agent.http("/healthz")
        assert status == 200, body
    finally:
        p.kill()


def test_a_sparse_script_grown_to_a_tebibyte_while_hashed_does_not_stall_detection(
        start, box):
    agent = start(drift={"hash_timeout_ms": 20})
    c = box()
    m = agent.mark()
    # 60 MiB (under the 64 MiB cap): the agent starts hashing; 50 ms later the script makes
    # itself 1 TiB (sparse). Hashing 60 MiB takes this machine ~0.2 s: longer than 20 ms.
    c.sh("printf 'sleep 0.05; truncate -s 1099511627776 /tmp/big.sh; sleep 60\\n' "
         "> /tmp/big.sh && truncate -s 60M /tmp/big.sh")
    p = c.popen("/bin/sh", "/tmp/big.sh", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        f = of_exec(agent, SCRIPT, c, ["/bin/sh", "/tmp/big.sh"], m)
        assert drift_fields(f) == {
            "drift.kind": "new", "drift.path": "/tmp/big.sh", "drift.script": True,
            "drift.size": 60 << 20, "drift.sha256": None, "drift.unknown_reason": None,
            "drift.hash_error": "timed out after 20 ms", "drift.prevented": False}
        assert shadow_alert_within(agent, c, 5) < 5      # the evaluator is not reading 1 TiB
        deadline = time.monotonic() + 5
        while os.path.getsize(os.path.join(c.upper, "tmp/big.sh")) != 1 << 40 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        # run again at 1 TiB: not read at all, and the alert says why
        m2 = agent.mark()
        q = c.popen("/bin/sh", "/tmp/big.sh", "again", stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
        try:
            f = of_exec(agent, SCRIPT, c, ["/bin/sh", "/tmp/big.sh", "again"], m2)
            assert (f["drift.size"], f["drift.sha256"], f["drift.hash_error"]) == \
                (1 << 40, None, "larger than 64 MiB (drift.hash_max_bytes), not hashed")
        finally:
            q.kill()
        assert shadow_alert_within(agent, c, 5) < 5
    finally:
        p.kill()
