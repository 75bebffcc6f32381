"""Issue 21, finding 5: a dropped script run through a descriptor or fed to an interpreter's
stdin escaped drift — `/proc/self/fd/3`, `sh /proc/self/fd/3 3</tmp/s.sh`, `sh < /tmp/s.sh`
raised nothing, because the script's "path" was a descriptor, not a file of the layers. The
file behind the descriptor is now looked up, while the process runs."""
from __future__ import annotations

import pytest

SCRIPT = "Drift - script not from the image run"
UNKNOWN = "Drift - program or script of unknown origin run"


def _drop_script(c, path="/tmp/s.sh"):
    c.exec("/bin/sh", "-c", f"cat > {path} && chmod 755 {path}",
           input=b"#!/bin/sh\nsleep 1\necho done\n")
    return path


@pytest.mark.parametrize("how, script", [
    ("argument /proc/self/fd/3", "exec 3</tmp/s.sh; exec sh /proc/self/fd/3"),
    ("argument /dev/fd/3", "exec 3</tmp/s.sh; exec sh /dev/fd/3"),
    ("stdin", "exec sh < /tmp/s.sh"),
    ("run as /proc/self/fd/3", "exec 3</tmp/s.sh; exec /proc/self/fd/3"),
])
def test_a_dropped_script_through_a_descriptor_is_drift(how, script, agent_factory,
                                                       containers):
    agent = agent_factory()
    c = containers()
    _drop_script(c)
    m = agent.mark()
    r = c.sh(script)
    assert r.stdout.strip() == b"done", r
    a = agent.wait_for(SCRIPT, c.id, since=m)
    f = a["fields"]
    assert (f["drift.kind"], f["drift.path"], f["drift.script"]) == ("new", "/tmp/s.sh", True)
    assert f["proc.exe"] == "/bin/busybox"            # the image's sh ran it


def test_an_image_file_or_a_pipe_on_stdin_is_not_drift(agent_factory, containers):
    agent = agent_factory()
    c = containers()
    m = agent.mark()
    c.sh("exec sh < /etc/hostname 2>/dev/null", check=False)   # an image file on stdin
    c.sh("echo 'echo hi' | sh")                                  # a pipe: not a file
    agent.assert_none(SCRIPT, c.id, since=m)
    agent.assert_none(UNKNOWN, c.id, since=m, wait=0)


def test_a_short_script_on_stdin_is_judged_from_what_the_kernel_saw(agent_factory, containers):
    """`sh < script` that has ended before the agent could look at /proc/PID/fd/0: the exec
    event carries fd 0's resolved path, inode and layers from the kernel, so there is no race
    with the end of the script (it was not judged at all before)."""
    agent = agent_factory()
    c = containers()
    c.exec("/bin/sh", "-c", "cat > /tmp/q.sh", input=b"echo quick\n")
    m = agent.mark()
    assert c.sh("exec sh < /tmp/q.sh").stdout.strip() == b"quick"
    a = agent.wait_for(SCRIPT, c.id, since=m)
    f = a["fields"]
    assert (f["drift.kind"], f["drift.path"], f["drift.script"]) == ("new", "/tmp/q.sh", True)
    assert (f["proc.stdin"], f["proc.stdin_path"]) == ("file", "/tmp/q.sh")


def test_a_deleted_script_on_stdin_is_deleted_drift(agent_factory, containers):
    agent = agent_factory()
    c = containers()
    c.exec("/bin/sh", "-c", "cat > /tmp/d.sh", input=b"echo gone\n")
    m = agent.mark()
    r = c.sh("exec 0</tmp/d.sh; rm /tmp/d.sh; exec sh")
    assert r.stdout.strip() == b"gone"
    a = agent.wait_for("Drift - deleted program run", c.id, since=m)
    f = a["fields"]
    assert (f["drift.kind"], f["drift.path"], f["drift.script"]) == ("deleted", "/tmp/d.sh", True)
