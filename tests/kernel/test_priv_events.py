"""ptrace, mount/umount, unshare, setns, setuid/setgid, memfd_create: real syscalls."""
import os

from agent.sensor.probes import OPTIONAL_TRACEPOINTS, tracepoint_exists
from conftest import run_python


def _of(collector, child, kind, count=1):
    return collector.find(lambda e: e.pid == child.pid and e.kind == kind, count=count)


def test_unshare_mount_umount(collector, watched_cgroup, tmp_path):
    target = str(tmp_path)
    child = run_python(watched_cgroup, f"""
u = sc("unshare", 0x20000 | 0x04000000)            # CLONE_NEWNS | CLONE_NEWUTS
p = sc("mount", 0, "/", 0, (1 << 14) | (1 << 18), 0)  # MS_REC | MS_PRIVATE
m = sc("mount", "mamori", {target!r}, "tmpfs", 2 | 4, 0)  # MS_NOSUID | MS_NODEV
x = sc("umount2", {target!r}, 2)                    # MNT_DETACH
report(u=u, p=p, m=m, x=x)
""")
    assert child.out == {"u": 0, "p": 0, "m": 0, "x": 0}
    [u] = _of(collector, child, "unshare")
    assert (u.syscall, u.result, u.get("ns.types")) == ("unshare", 0, ("mnt", "uts"))
    priv, mnt = _of(collector, child, "mount", count=2)
    assert (priv.get("mount.target"), priv.get("mount.flags")) == ("/", ("MS_REC", "MS_PRIVATE"))
    assert (mnt.syscall, mnt.result) == ("mount", 0)
    assert (mnt.get("mount.source"), mnt.get("mount.target"), mnt.get("mount.fstype"),
            mnt.get("mount.flags")) == ("mamori", target, "tmpfs", ("MS_NOSUID", "MS_NODEV"))
    [um] = _of(collector, child, "umount")
    assert (um.syscall, um.result, um.get("mount.target"), um.get("mount.flags")) == (
        "umount2", 0, target, ("MNT_DETACH",))
    assert mnt.fields()["mount.target"] == target
    # events are sent at syscall exit: the unshare already shows the new mount namespace
    assert u.mntns != os.stat("/proc/self/ns/mnt").st_ino
    assert um.mntns == mnt.mntns == u.mntns


def test_setns(collector, watched_cgroup):
    child = run_python(watched_cgroup, """
fd = os.open("/proc/self/ns/net", os.O_RDONLY)
report(fd=fd, r=sc("setns", fd, 0x40000000))
""")
    [ev] = _of(collector, child, "setns")
    assert (ev.result, ev.get("ns.fd"), ev.get("ns.types")) == (0, child.out["fd"], ("net",))


def test_ptrace_attach(collector, watched_cgroup):
    child = run_python(watched_cgroup, """
import subprocess
p = subprocess.Popen(["/bin/sleep", "30"])
r = sc("ptrace", 16, p.pid, 0, 0)     # PTRACE_ATTACH
os.waitpid(p.pid, 0)
sc("ptrace", 17, p.pid, 0, 0)         # PTRACE_DETACH
p.kill(); p.wait()
report(r=r, target=p.pid)
""")
    att, det = _of(collector, child, "ptrace", count=2)
    assert (att.result, att.get("ptrace.request"), att.get("ptrace.target")) == (
        0, "PTRACE_ATTACH", child.out["target"])
    assert det.get("ptrace.request") == "PTRACE_DETACH"


def test_setuid_and_setgid_families(collector, watched_cgroup):
    child = run_python(watched_cgroup, """
report(a=sc("setresuid", -1, 0, -1), b=sc("setuid", 0), c=sc("setfsuid", 0),
       d=sc("setregid", 0, 0))
""")
    a, b, c = _of(collector, child, "setuid", count=3)
    assert (a.syscall, a.result) == ("setresuid", 0)
    assert [a.get(k) for k in ("cred.ruid", "cred.euid", "cred.suid", "cred.fsuid")] == [
        None, 0, None, None]
    assert (b.syscall, b.get("cred.euid"), b.get("cred.ruid")) == ("setuid", 0, None)
    assert (c.syscall, c.get("cred.fsuid")) == ("setfsuid", 0)
    [d] = _of(collector, child, "setgid")
    assert (d.syscall, d.result, d.get("cred.rgid"), d.get("cred.egid")) == ("setregid", 0, 0, 0)


def test_memfd_create(collector, watched_cgroup):
    child = run_python(watched_cgroup, "report(fd=sc('memfd_create', 'mamori-x', 1 | 2))")
    [ev] = _of(collector, child, "memfd")
    assert (ev.syscall, ev.result, ev.get("memfd.name"), ev.get("memfd.flags")) == (
        "memfd_create", child.out["fd"], "mamori-x", ("MFD_CLOEXEC", "MFD_ALLOW_SEALING"))


def test_missing_tracepoints_are_reported_not_ignored(sensor):
    """Kernels without a syscall's tracepoint (here: init_module without module support)
    say so in sensor.unavailable instead of failing to load or silently missing it."""
    expected = {tp[len("sys_enter_"):] for tp in OPTIONAL_TRACEPOINTS
                if not tracepoint_exists("syscalls", tp)}
    assert set(sensor.unavailable) == expected
    for sc_name in expected:
        assert sensor.unavailable[sc_name].startswith("no tracepoint")


def test_a_setuid_root_program_run_by_a_user(collector, watched_cgroup):
    """The exec reports the credentials the new program runs with (euid 0 from the setuid
    bit, the real uid the user's); a setresuid call reports the caller's effective uid at
    its entry (the setuid program's 0; the user's 1000 before it dropped)."""
    import shutil
    import subprocess
    import tempfile
    d = tempfile.mkdtemp(prefix="mamori-suid-", dir="/tmp")
    try:
        os.chmod(d, 0o755)
        probe = os.path.join(d, "probe")
        src = os.path.join(os.path.dirname(__file__), "..", "helpers", "probe.c")
        subprocess.run(["gcc", "-static", "-O2", "-o", probe, src], check=True)
        os.chmod(probe, 0o4755)
        child = run_python(watched_cgroup, f"""
import subprocess
os.setgid(1000)
os.setuid(1000)
r = subprocess.run([{probe!r}, "root", "/bin/true"], capture_output=True, text=True)
report(out=r.stdout.strip(), rc=r.returncode)
""")
        assert child.out == {"out": "setresuid 0 uid 0 euid 0", "rc": 0}
        [ex] = collector.find(lambda e: e.kind == "exec" and e.exe == probe)
        assert (ex.uid, ex.euid, ex.gid, ex.egid) == (1000, 0, 1000, 1000)
        [up] = collector.find(lambda e: e.kind == "setuid" and e.pid == ex.pid)
        assert (up.syscall, up.result, up.get("cred.ruid"), up.get("cred.euid"),
                up.get("cred.suid"), up.get("cred.caller_euid"), up.uid) == (
            "setresuid", 0, 0, 0, 0, 0, 0)
        [true] = collector.find(lambda e: e.kind == "exec" and e.exe == "/usr/bin/true")
        assert (true.uid, true.euid) == (0, 0)
        # the drop to 1000 before: made by root
        drop = collector.find(lambda e: e.kind == "setuid" and e.pid == child.pid)
        assert [(e.get("cred.euid"), e.get("cred.caller_euid"), e.uid) for e in drop] == [
            (1000, 0, 1000)]
        # as the user, setuid(0) is refused: made by euid 1000
        child = run_python(watched_cgroup, """
os.setgid(1000)
os.setuid(1000)
report(r=sc("setuid", 0))
""")
        [refused] = collector.find(lambda e: e.kind == "setuid" and e.pid == child.pid and
                                   e.get("cred.euid") == 0)
        assert (refused.result, refused.get("cred.caller_euid"), refused.uid) == (
            -1, 1000, 1000)
    finally:
        shutil.rmtree(d, ignore_errors=True)
