"""Decoding records built byte by byte to the layout, including broken ones."""
import struct

import pytest

from agent.sensor import decoder, layout, names


def _record(kind, hdr_flags=0, **body):
    sname = layout.STRUCT_OF_KIND[kind]
    buf = bytearray(layout.sizeof(sname))
    hdr = layout.HEADER_STRUCT
    hdr.pack_into(buf, 0, 123, 77, layout.KIND_ID[kind], 10, 11, 1, 1000, 1000, 5, 6, 2,
                  hdr_flags, b"comm\xff")
    offs = layout.offsets(sname)
    for name, (fmt, value) in body.items():
        struct.pack_into("<" + fmt, buf, offs[name], value)
    return bytes(buf)


def test_header_fields():
    ev = decoder.decode(_record("fork", child_pid=(("I", 99))))
    assert (ev.kind, ev.ts, ev.cgroup_id, ev.pid, ev.tid, ev.ppid, ev.uid, ev.gid) == (
        "fork", 123, 77, 10, 11, 1, 1000, 1000)
    assert (ev.pidns, ev.mntns, ev.vpid, ev.comm, ev.child_pid) == (5, 6, 2, "comm\\xff", 99)


@pytest.mark.parametrize("status,code,sig,core", [
    (0, 0, 0, False), (7 << 8, 7, 0, False), (9, None, 9, False), (0x80 | 11, None, 11, True)])
def test_exit_status(status, code, sig, core):
    ev = decoder.decode(_record("exit", code=("I", status)))
    assert (ev.code, ev.signal, ev.core_dumped) == (code, sig, core)


def test_exec_path_args_and_flags():
    comps = bytearray(layout.PATH_DEPTH * layout.NAME_LEN)
    for i, name in enumerate([b"sh", b"", b"bin", b"usr"]):   # leaf first; "" = mount
        comps[i * layout.NAME_LEN:i * layout.NAME_LEN + len(name)] = name
    args = b"sh\0-c\0echo \xff\0"
    rec = bytearray(_record("exec", depth=("I", 4), args_len=("I", len(args)),
                            dev=("I", (8 << 20) | 1), fs_magic=("I", 0x794C7630)))
    off = layout.offsets("exec_event")
    rec[off["comps"]:off["comps"] + len(comps)] = comps
    rec[off["args"]:off["args"] + len(args)] = args
    struct.pack_into("<I", rec, off["hdr.flags"], layout.FLAGS["TRUNC_ARGS"])
    ev = decoder.decode(bytes(rec))
    assert ev.exe == "/usr/bin/sh"
    assert ev.args == ("sh", "-c", "echo \\xff")
    assert ev.args_truncated is True and ev.exe_truncated is False
    assert (ev.exe_fs, ev.exe_dev) == ("overlay", names.user_dev((8 << 20) | 1))
    assert (ev.stdin, ev.stdout, ev.stderr) == ("none", "none", "none")


def test_short_and_unknown_records_are_malformed():
    with pytest.raises(decoder.MalformedEvent, match="shorter than the header"):
        decoder.decode(b"\0" * 8)
    bad = bytearray(_record("fork"))
    struct.pack_into("<I", bad, layout.offsets("event_hdr")["kind"], 999)
    with pytest.raises(decoder.MalformedEvent, match="unknown event kind 999"):
        decoder.decode(bytes(bad))
    with pytest.raises(decoder.MalformedEvent, match="exec record of"):
        decoder.decode(_record("exec")[:200])


def test_names():
    assert names.open_flags(0o1101) == ("O_WRONLY", "O_CREAT", "O_TRUNC")
    assert names.open_flags(2 | 0o2000000) == ("O_RDWR", "O_CLOEXEC")
    assert names.errno_name(-13) == "EACCES" and names.errno_name(5) is None
    assert names.fd_kind(0o020000, 136 << 20) == "tty"
    assert names.fd_kind(0o020000, (1 << 20) | 3) == "chardev"     # /dev/null
    assert names.fd_kind(0o010000, 0) == "pipe"
    assert names.fd_kind(0o140000, 0) == "socket"
    assert names.mount_flags(0xC0ED0000 | 1) == ("MS_RDONLY",)
    assert names.bit_names(0x40000000 | 0x20000, names.NS_TYPES) == ("mnt", "net")


def test_event_fields_use_the_dotted_vocabulary():
    ev = decoder.decode(_record("open", ret=("q", -2), sys=("I", layout.SYSCALL_ID["openat"]),
                                flags=("I", 0o100 | 1), mode=("I", 0o644), fd=("i", -100)))
    f = ev.fields()
    assert f == {
        "event.kind": "open", "event.ts": 123, "proc.pid": 10, "proc.tid": 11, "proc.ppid": 1,
        "proc.vpid": 2, "proc.uid": 1000, "proc.gid": 1000, "proc.name": "comm\\xff",
        "proc.cgroup_id": 77, "proc.pidns": 5, "proc.mntns": 6, "event.syscall": "openat",
        "event.result": -2, "event.error": "ENOENT", "file.path": "", "file.new_path": None,
        "file.flags": ("O_WRONLY", "O_CREAT"), "file.mode": 0o644, "file.fd": -100,
        "file.path_truncated": False, "file.requested_path": "", "file.resolved": False}


def test_file_path_is_the_resolved_one_and_the_request_is_kept():
    rpath = b"/etc/shadow".ljust(layout.RPATH_LEN, b"\0")
    ev = decoder.decode(_record("open", ret=("q", 3), sys=("I", layout.SYSCALL_ID["openat"]),
                                flags=("I", 0), fd=("i", -100), path=("256s", b"../etc//shadow"),
                                rpath=(f"{layout.RPATH_LEN}s", rpath),
                                hdr_flags=layout.FLAGS["RESOLVED"]))
    assert (ev.path, ev.requested_path, ev.resolved, ev.path_truncated) == (
        "/etc/shadow", "../etc//shadow", True, False)
    # not resolved (a failed open): the request joined to its start directory, normalised
    ev = decoder.decode(_record("open", ret=("q", -13), sys=("I", layout.SYSCALL_ID["openat"]),
                                path=("256s", b"x/./../../shadow"),
                                rpath=(f"{layout.RPATH_LEN}s", b"/etc/ssh")))
    assert (ev.path, ev.requested_path, ev.resolved) == ("/etc/shadow", "x/./../../shadow", False)


def test_an_open_is_sent_only_up_to_its_resolved_path():
    """file_event's rpath is its variable tail (bpf_ringbuf_output up to the NUL): a record
    that ends there decodes; one cut before it is malformed."""
    full = bytearray(_record("open", ret=("q", 3), sys=("I", layout.SYSCALL_ID["openat"]),
                             path=("256s", b"shadow"),
                             rpath=(f"{layout.RPATH_LEN}s", b"/etc/shadow"),
                             hdr_flags=layout.FLAGS["RESOLVED"]))
    tail = layout.offsets("file_event")["rpath"]
    short = bytes(full[:tail + len("/etc/shadow") + 1])
    ev = decoder.decode(short)
    assert (ev.path, ev.requested_path, ev.resolved) == ("/etc/shadow", "shadow", True)
    assert layout.min_size("file_event") == tail + 1 < layout.sizeof("file_event")
    with pytest.raises(decoder.MalformedEvent, match="open record of"):
        decoder.decode(bytes(full[:tail]))


def test_joined_normalises_like_a_walk_without_links():
    j = decoder.joined
    assert j("/", "/etc//./shadow") == "/etc/shadow"
    assert j("/", "/../../etc/shadow") == "/etc/shadow"          # '..' at the root stays
    assert j("/home/app", "../../etc/shadow") == "/etc/shadow"
    assert j("/srv", "") == "/srv"                               # AT_EMPTY_PATH: the dirfd
    assert j("", "/etc/./shadow") == "/etc/shadow"               # no start dir: absolute ok
    assert j("", "rel/x") == "rel/x"                             # relative: kept as passed


def test_every_field_is_documented():
    import os
    import re
    doc = open(os.path.join(os.path.dirname(__file__), "../../docs/fields.md")).read()
    documented = set(re.findall(r"`([a-z_]+\.[a-z_0-9]+)`", doc))
    seen = set()
    for kind in layout.KINDS:
        seen |= set(decoder.decode(_record(kind)).fields())
    from agent.fields import INTERNAL, REGISTRY
    internal = {n for n, f in REGISTRY.items() if f.use == INTERNAL}   # cgroup.*: consumed
    assert internal == {"cgroup.id", "cgroup.level", "cgroup.path"}
    missing = seen - documented - internal
    assert not missing, f"fields not in docs/fields.md: {sorted(missing)}"
    # the priv kinds' own fields, decoded with each syscall they cover
    for sysname in ("setfsuid", "setfsgid", "finit_module", "init_module", "umount2"):
        kind = {"setfsuid": "setuid", "setfsgid": "setgid", "finit_module": "module",
                "init_module": "module", "umount2": "umount"}[sysname]
        f = decoder.decode(_record(kind, sys=("I", layout.SYSCALL_ID[sysname]))).fields()
        assert set(f) <= documented


def test_context_fields_are_documented():
    import os
    import re
    from agent.context.containers import ContainerInfo
    from agent.context.enricher import Enriched
    from agent.context.pods import PodInfo
    doc = open(os.path.join(os.path.dirname(__file__), "../../docs/fields.md")).read()
    documented = set(re.findall(r"`([a-z0-9]+\.[a-z_0-9]+)`", doc))
    ev = decoder.decode(_record("open"))
    for c, pod in ((None, None), (ContainerInfo("x", "runc", "/x"), None),
                   (ContainerInfo("x", "runc", "/x"), PodInfo("ns", "p", "u"))):
        f = Enriched(ev, "x", "/bin/x", (), "/", ((1, "/sbin/init", "b:1:1", "init"),), False, c, pod,
                     None).fields()
        assert set(f) <= documented, sorted(set(f) - documented)


def test_utime_flags_and_mtime():
    """utime: file.flags names the call's AT_* flags and the probe's TIMES_GIVEN; the mode slot
    is the mtime set (layout.UTIME_FLAGS MTIME_GIVEN says it is known), named utime.mtime."""
    given, mtime = layout.UTIME_FLAGS["TIMES_GIVEN"], layout.UTIME_FLAGS["MTIME_GIVEN"]
    sys_id = ("I", layout.SYSCALL_ID["utimensat"])
    ev = decoder.decode(_record("utime", sys=sys_id, flags=("I", 0x100 | given | mtime),
                                mode=("I", 1577836800), fd=("i", -100),
                                path=("256s", b"/srv/x")))
    assert (ev.kind, ev.syscall, ev.path, ev.flags, ev.mode) == (
        "utime", "utimensat", "/srv/x", ("AT_SYMLINK_NOFOLLOW", "TIMES_GIVEN"), 1577836800)
    f = ev.fields()
    assert (f["utime.mtime"], f["file.flags"], "file.mode" in f) == (
        1577836800, ("AT_SYMLINK_NOFOLLOW", "TIMES_GIVEN"), False)
    # times given but not the mtime (UTIME_OMIT), or not given at all: no mtime
    ev = decoder.decode(_record("utime", sys=sys_id, flags=("I", given), mode=("I", 0)))
    assert (ev.flags, ev.mode, ev.fields()["utime.mtime"]) == (("TIMES_GIVEN",), None, None)
    ev = decoder.decode(_record("utime", sys=sys_id))
    assert (ev.flags, ev.mode) == ((), None)
    # mtime 0 (1970) given explicitly is 0, not null
    ev = decoder.decode(_record("utime", sys=sys_id, flags=("I", given | mtime)))
    assert ev.mode == 0


def test_mkdir_mode_and_path():
    ev = decoder.decode(_record("mkdir", ret=("q", 0), sys=("I", layout.SYSCALL_ID["mkdirat"]),
                                mode=("I", 0o41777), fd=("i", 5), path=("256s", b"../d"),
                                rpath=(f"{layout.RPATH_LEN}s", b"/srv/a")))
    assert (ev.kind, ev.syscall, ev.path, ev.requested_path, ev.flags, ev.mode, ev.fd) == (
        "mkdir", "mkdirat", "/srv/d", "../d", (), 0o1777, 5)
    assert ev.fields()["file.mode"] == 0o1777


@pytest.mark.parametrize("target,sig,name", [
    (1234, 15, "SIGTERM"), (-1, 9, "SIGKILL"), (0, 10, "SIGUSR1"), (-4321, 19, "SIGSTOP"),
    (7, 34, "SIGRTMIN"), (7, 35, "SIGRTMIN+1"), (7, 50, "SIGRTMAX-14"), (7, 64, "SIGRTMAX"),
    (7, 99, "99")])
def test_kill_target_is_signed_and_the_signal_named(target, sig, name):
    ev = decoder.decode(_record("kill", ret=("q", 0), sys=("I", layout.SYSCALL_ID["kill"]),
                                arg0=("Q", target & (2**64 - 1)), arg1=("Q", sig)))
    assert (ev.kind, ev.syscall, ev.result) == ("kill", "kill", 0)
    assert (ev.get("signal.target"), ev.get("signal.number"), ev.get("signal.name")) == (
        target, sig, name)
    assert {k for k in ev.fields() if k.startswith("signal.")} == {
        "signal.target", "signal.number", "signal.name"}


def test_new_kinds_keep_the_old_kind_numbers():
    """Kinds are appended: the numbers the kernel writes for the older ones do not move."""
    assert [layout.KIND_ID[k] for k in ("io_uring", "cgroup_mkdir", "cgroup_rmdir", "kill",
                                        "mkdir", "utime")] == [22, 23, 24, 25, 26, 27]
    assert layout.SYSCALL_ID["io_uring_openat2"] == 41
    assert layout.FAMILY_OF["kill"] == "priv"
    assert layout.FAMILY_OF["mkdir"] == layout.FAMILY_OF["utime"] == "file"


def test_a_utime_alert_carries_utime_mtime_not_file_mode():
    from agent.context.enricher import Enriched
    from agent.fields import REGISTRY
    given, mtime = layout.UTIME_FLAGS["TIMES_GIVEN"], layout.UTIME_FLAGS["MTIME_GIVEN"]
    ev = decoder.decode(_record("utime", sys=("I", layout.SYSCALL_ID["utimes"]),
                                flags=("I", given | mtime), mode=("I", 86400)))
    snap = Enriched(ev, "x", "/bin/x", (), "/", (), False, None, None, None).fields()
    assert (snap["utime.mtime"], snap["file.flags"], "file.mode" in snap) == (
        86400, ("TIMES_GIVEN",), False)
    assert "utime" not in REGISTRY["file.mode"].kinds
    assert REGISTRY["utime.mtime"].kinds == {"utime"}
    assert REGISTRY["signal.name"].kinds == {"kill"}
