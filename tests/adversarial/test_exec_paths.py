"""Issue 20, findings 2 and 4: code that runs without being the program execve ran, and
programs run from filesystems that are not the image.

Before: `/lib64/ld-linux-x86-64.so.2 /root/x` ran a dropped program with no drift alert and
was not prevented (the exec'd file is the image's loader); an LD_PRELOAD or dlopen of a dropped
library likewise. A dropped binary on a volume ran in an enforced container with only a low
alert. Now executable mappings of drift files are an event of their own (mmap_exec, killed
in enforced containers before the code can run) and, in enforced containers, anything run
or mapped from outside the root overlay is killed unless drift.allow_exec_from allows its
mount."""
import os
import shutil
import subprocess

import pytest

from testbed.image import build_image
from testbed.waiting import wait_until

MAPPED = "Drift - code not from the image mapped executable"
FROM_VOLUME = "Drift - program run from a volume"
LOADER = "/lib64/ld-linux-x86-64.so.2"
KILLED = 137                       # runc exec's status for a process killed by SIGKILL

HELLO = r"""
#include <stdio.h>
int main(int argc, char **argv) {            /* its first act: write the marker file */
    if (argc > 1) { FILE *f = fopen(argv[1], "w"); if (!f) return 2; fputs("ran\n", f); fclose(f); }
    return 0;
}
"""
DLOPEN = r"""
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) { fprintf(stderr, "%s\n", dlerror()); return 3; }
    return 0;
}
"""
EVIL = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void evil(void) {
    const char *m = getenv("MARKER");
    FILE *f = fopen(m ? m : "/tmp/preloaded", "w");
    if (f) { fputs("preloaded\n", f); fclose(f); }
}
"""


def _gcc(out, src_text, *flags):
    src = out + ".c"
    with open(src, "w") as f:
        f.write(src_text)
    subprocess.run(["gcc", "-O2", *flags, "-o", out, src], check=True)
    return out


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("programs"))
    return {
        "hello": _gcc(f"{d}/hello", HELLO),
        "hello_static": _gcc(f"{d}/hello_static", HELLO, "-static"),
        "dl": _gcc(f"{d}/dl", DLOPEN),
        "evil": _gcc(f"{d}/evil.so", EVIL, "-shared", "-fPIC"),
    }


@pytest.fixture(scope="module")
def image(tmp_path_factory, build):
    """The busybox image plus a dynamic loader and libc (the host's) and two dynamic
    programs of the image's own: hello (writes a marker) and dl (dlopen()s its argument)."""
    root = str(tmp_path_factory.mktemp("dynimage"))
    return build_image(root, helpers={
        LOADER: os.path.realpath(LOADER),
        "/lib/x86_64-linux-gnu/libc.so.6": os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6"),
        "/usr/local/bin/hello": build["hello"],
        "/usr/local/bin/dl": build["dl"],
    })


def _drop(c, src, dest):
    """Write a file into the container from inside it (its writable layer), executable."""
    with open(src, "rb") as f:
        c.exec("/bin/sh", "-c", f"cat > {dest} && chmod 755 {dest}", input=f.read())


def _exists(c, path):
    return c.sh(f"test -e {path}", check=False).returncode == 0


def _ino(c, path):
    return int(c.sh(f"stat -c %i {path}").stdout)


def _mounts_read(agent, c, timeout=10.0) -> bool:
    """Wait until the agent has read the enforced container's mounts (docs/drift.md: from
    then on, code from a filesystem that is not the image's is killed)."""
    needle = f"cgroup {c.cgroup_id} runs code only from its root overlay"
    return wait_until(lambda: needle in agent.log(), timeout)


def test_a_dropped_program_run_through_the_images_loader_is_reported(agent_factory,
                                                                     containers, build):
    agent = agent_factory()
    c = containers()
    _drop(c, build["hello"], "/root/x")
    m = agent.mark()
    r = c.exec(LOADER, "/root/x", "/tmp/marker", check=False)
    assert r.returncode == 0 and _exists(c, "/tmp/marker")     # detected, not prevented
    a = agent.wait_for(MAPPED, c.id, since=m)
    f = a["fields"]
    assert (a["severity"], a["tactic"]["id"], a["technique"]["id"]) == (
        "critical", "TA0002", "T1129")
    assert (f["event.kind"], f["event.syscall"], f["proc.exe"]) == ("mmap_exec", "mmap", LOADER)
    assert (f["file.path"], f["file.inode"], f["file.fs"]) == ("/root/x", _ino(c, "/root/x"),
                                                               "overlay")
    assert (f["file.upper_layer"], f["file.lower_layer"], f["file.links"]) == (True, False, 1)
    assert "PROT_EXEC" in f["mmap.prot"] and f["mmap.fd"] >= 3
    assert (f["drift.kind"], f["drift.path"], f["drift.prevented"]) == ("new", "/root/x", False)
    assert f["container.id"] == c.id and f["proc.runtime_setup"] is False


def test_enforced_the_loader_case_is_killed_before_the_program_runs(agent_factory, containers,
                                                                    build):
    agent = agent_factory(drift={"prevent_all": True})
    c = containers()
    _drop(c, build["hello"], "/root/x")
    m = agent.mark()
    r = c.exec(LOADER, "/root/x", "/tmp/marker", check=False)
    assert r.returncode == KILLED, r
    assert not _exists(c, "/tmp/marker")
    a = agent.wait_for(MAPPED, c.id, since=m)
    f = a["fields"]
    assert (f["file.path"], f["drift.kind"], f["drift.prevented"], f["proc.exe"]) == (
        "/root/x", "new", True, LOADER)
    assert "prevented True" in a["output"]


def test_a_dropped_library_preloaded_or_dlopened(agent_factory, containers, build):
    agent = agent_factory()
    c = containers()
    _drop(c, build["evil"], "/root/evil.so")
    m = agent.mark()
    c.sh("LD_PRELOAD=/root/evil.so MARKER=/tmp/pre exec /usr/local/bin/hello /tmp/out")
    assert _exists(c, "/tmp/pre") and _exists(c, "/tmp/out")
    a = agent.wait_for(MAPPED, c.id, since=m)
    f = a["fields"]
    assert (f["file.path"], f["proc.exe"], f["drift.kind"], f["drift.prevented"]) == (
        "/root/evil.so", "/usr/local/bin/hello", "new", False)
    m = agent.mark()
    c.sh("MARKER=/tmp/dl exec /usr/local/bin/dl /root/evil.so")
    a = agent.wait_for(MAPPED, c.id, since=m)
    assert (a["fields"]["file.path"], a["fields"]["proc.exe"]) == (
        "/root/evil.so", "/usr/local/bin/dl")


def test_enforced_a_preloaded_or_dlopened_dropped_library_never_runs(agent_factory,
                                                                     containers, build):
    agent = agent_factory(drift={"prevent_all": True})
    c = containers()
    _drop(c, build["evil"], "/root/evil.so")
    m = agent.mark()
    r = c.sh("LD_PRELOAD=/root/evil.so MARKER=/tmp/pre exec /usr/local/bin/hello /tmp/out",
             check=False)
    assert r.returncode == KILLED
    assert not _exists(c, "/tmp/pre") and not _exists(c, "/tmp/out")
    r = c.sh("MARKER=/tmp/dl exec /usr/local/bin/dl /root/evil.so", check=False)
    assert r.returncode == KILLED and not _exists(c, "/tmp/dl")
    wait_until(lambda: len(agent.matching(MAPPED, c.id, since=m)) >= 2, 15)
    got = agent.matching(MAPPED, c.id, since=m)
    assert [(a["fields"]["proc.exe"], a["fields"]["file.path"], a["fields"]["drift.prevented"])
            for a in got] == [("/usr/local/bin/hello", "/root/evil.so", True),
                              ("/usr/local/bin/dl", "/root/evil.so", True)]


def test_the_images_own_loader_and_programs_raise_nothing(agent_factory, containers):
    """No false positive: the image's loader mapping the image's libc and programs, directly
    and through the loader, in an enforced container: they run, and no alert at all."""
    agent = agent_factory(drift={"prevent_all": True})
    c = containers()
    assert _mounts_read(agent, c), agent.log()[-3000:]     # fully enforced
    m = agent.mark()
    c.exec("/usr/local/bin/hello", "/tmp/m1")
    c.exec(LOADER, "/usr/local/bin/hello", "/tmp/m2")
    c.exec("/usr/local/bin/dl", "/lib/x86_64-linux-gnu/libc.so.6")
    assert _exists(c, "/tmp/m1") and _exists(c, "/tmp/m2")
    agent.assert_none(None, c.id, since=m, wait=2)


def test_enforced_a_program_on_a_volume_is_killed(agent_factory, containers, build, tmp_path):
    vol = tmp_path / "data"
    vol.mkdir()
    shutil.copy2(build["hello_static"], vol / "tool")
    shutil.copy2(build["hello"], vol / "dyn")
    agent = agent_factory(drift={"prevent_all": True})
    c = containers(volumes=[(str(vol), "/data")])
    _mounts_read(agent, c)
    m = agent.mark()
    r = c.exec("/data/tool", "/tmp/marker", check=False)
    assert r.returncode == KILLED and not _exists(c, "/tmp/marker")
    a = agent.wait_for(FROM_VOLUME, c.id, since=m)
    f = a["fields"]
    assert (f["proc.exe"], f["exec.prevented"], f["drift.prevented"]) == ("/data/tool", True,
                                                                          True)
    assert f["drift.unknown_reason"].startswith("run from a volume")
    # the same program through the image's loader: its mapping is killed instead
    m = agent.mark()
    r = c.exec(LOADER, "/data/dyn", "/tmp/marker2", check=False)
    assert r.returncode == KILLED and not _exists(c, "/tmp/marker2")
    a = agent.wait_for(MAPPED, c.id, since=m)
    f = a["fields"]
    assert (f["file.path"], f["drift.kind"], f["drift.prevented"]) == ("/data/dyn", None, True)
    assert f["drift.unknown_reason"] == f"mapped from a volume ({f['file.fs']}), not from the image"


def test_enforced_an_allowed_volume_runs_and_is_still_reported(agent_factory, containers,
                                                               build, tmp_path):
    """drift.allow_exec_from allows mounts, not devices: /opt/plugins and /data are bind
    mounts of the same host filesystem; only the allowed one runs."""
    plugins, data = tmp_path / "plugins", tmp_path / "data"
    for d in (plugins, data):
        d.mkdir()
        shutil.copy2(build["hello_static"], d / "tool")
    agent = agent_factory(drift={"prevent_all": True, "allow_exec_from": ["/opt/plugins"]})
    c = containers(volumes=[(str(plugins), "/opt/plugins"), (str(data), "/data")])
    _mounts_read(agent, c)
    m = agent.mark()
    c.exec("/opt/plugins/tool", "/tmp/plugin-ran")
    assert _exists(c, "/tmp/plugin-ran")
    a = agent.wait_for(FROM_VOLUME, c.id, since=m)
    assert (a["fields"]["proc.exe"], a["fields"]["drift.prevented"]) == ("/opt/plugins/tool",
                                                                         False)
    r = c.exec("/data/tool", "/tmp/data-ran", check=False)
    assert r.returncode == KILLED and not _exists(c, "/tmp/data-ran")
    assert os.stat(plugins).st_dev == os.stat(data).st_dev
