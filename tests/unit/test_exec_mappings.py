"""mmap_exec records decoded field by field; an enforced container's mounts read from its
mountinfo (allowed by mount, not by device); the drift.allow_exec_from setting."""
import struct

import pytest

from agent import config
from agent.drift.mounts import MountResolver, allowed_mounts, parse_mountinfo, root_mount
from agent.sensor import decoder, layout, names

D = layout.DRIFT


def _mmap_record(comps=(), **body):
    buf = bytearray(layout.sizeof("mmap_event"))
    layout.HEADER_STRUCT.pack_into(buf, 0, 5, 77, layout.KIND_ID["mmap_exec"], 10, 11, 1, 0, 0,
                                   5, 6, 2, body.pop("hflags", 0), b"ld-linux")
    offs = layout.offsets("mmap_event")
    for name, (fmt, value) in body.items():
        struct.pack_into("<" + fmt, buf, offs[name], value)
    for i, c in enumerate(comps):                      # leaf first, "" = a mount crossed
        at = offs["comps"] + i * layout.NAME_LEN
        buf[at:at + len(c)] = c
    struct.pack_into("<I", buf, offs["depth"], len(comps))
    return bytes(buf)


def test_a_mapping_of_a_new_file_decodes_to_the_dotted_fields():
    rec = _mmap_record(
        comps=(b"x", b"root"), ino=("Q", 4242), dev=("I", (8 << 20) | 1),
        fs_magic=("I", 0x794C7630), nlink=("I", 1), ovl=("I", layout.OVL_UPPER),
        drift=("I", D["UPPER_ONLY"]), prot=("I", 5), mflags=("I", 0x812),
        sys=("I", layout.SYSCALL_ID["mmap"]), fd=("i", 3),
        hflags=layout.FLAGS["PREVENTED"])
    ev = decoder.decode(rec)
    f = ev.fields()
    assert (f["event.kind"], f["event.syscall"], f["proc.pid"], f["proc.name"]) == (
        "mmap_exec", "mmap", 10, "ld-linux")
    assert (f["file.path"], f["file.inode"], f["file.dev"], f["file.fs"], f["file.links"]) == (
        "/root/x", 4242, names.user_dev((8 << 20) | 1), "overlay", 1)
    assert (f["file.upper_layer"], f["file.lower_layer"], f["file.detached"],
            f["file.path_truncated"]) == (True, False, False, False)
    assert (f["mmap.prot"], f["mmap.flags"], f["mmap.fd"]) == (
        ("PROT_READ", "PROT_EXEC"), ("MAP_PRIVATE", "MAP_FIXED", "MAP_DENYWRITE"), 3)
    assert (f["drift.kind"], f["drift.path"], f["drift.unknown_reason"],
            f["drift.prevented"]) == ("new", "/root/x", None, True)
    assert "event.result" not in f


@pytest.mark.parametrize("bits,detached,fs,kind,reason", [
    (D["MEMFS"] | D["DELETED"], True, "tmpfs", "fileless", None),   # a memfd
    (D["DELETED"], True, "ext4", "deleted", None),                  # detached, not memory
    (D["DELETED"] | D["UPPER_ONLY"], False, "overlay", "deleted", None),
    (D["MEMFS"], False, "tmpfs", "tmpfs", None),
    (D["WRITTEN"], False, "overlay", "modified", None),
    (D["OTHER_FS"], False, "ext4", None, "mapped from a volume (ext4), not from the image"),
])
def test_the_kernels_drift_bits_name_one_kind(bits, detached, fs, kind, reason):
    assert decoder.mapping_drift(bits, detached, fs, "/x") == (kind, reason)


def test_a_sysv_segment_has_no_file():
    ev = decoder.decode(_mmap_record(drift=("I", D["MEMFS"] | D["DELETED"]), prot=("I", 5),
                                     mflags=("I", 1), sys=("I", layout.SYSCALL_ID["shmat"]),
                                     fd=("i", 7), hflags=layout.FLAGS["EXE_UNREACHABLE"]))
    assert (ev.syscall, ev.path, ev.fs, ev.dev, ev.detached, ev.fd) == (
        "shmat", "", "", 0, True, 7)
    assert ev.fields()["drift.kind"] == "fileless"


MOUNTINFO = r"""1030 980 0:112 / / rw,relatime - overlay overlay rw,lowerdir=/img,upperdir=/u,workdir=/w
1031 1030 0:115 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1032 1030 0:116 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k
1040 1030 254:0 /var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/plugins /opt/plugins rw - ext4 /dev/vda rw
1041 1040 254:0 /srv/extra /opt/plugins/extra rw - ext4 /dev/vda rw
1042 1030 254:0 /var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/cache /cache rw - ext4 /dev/vda rw
1043 1030 254:0 /var/lib/kubelet/pods/u/etc-hosts /etc/hosts rw - ext4 /dev/vda rw
1044 1030 254:0 /data/my\040dir /opt/plugins-old rw - ext4 /dev/vda rw"""


def test_mountinfo_is_read_by_mount_and_allowed_at_or_below_a_prefix():
    mounts = parse_mountinfo(MOUNTINFO.splitlines())
    top = root_mount(mounts)
    assert (top.id, top.dev, top.fstype) == (1030, 112, "overlay")
    assert mounts[-1].root == "/data/my dir"
    # /opt/plugins and what is mounted below it; not /opt/plugins-old, not /cache — though
    # /cache and /etc/hosts are on the same device as /opt/plugins
    assert allowed_mounts(mounts, ["/opt/plugins"]) == {1040, 1041}
    assert allowed_mounts(mounts, ["/opt/plugins/extra/"]) == {1041}
    assert allowed_mounts(mounts, ["/opt/plugins/extra/sub"]) == set()
    assert allowed_mounts(mounts, []) == set()


class FakeSensor:
    def __init__(self):
        self.maps, self.cleared, self.forgotten = {}, [], []

    def set_exec_mounts(self, cg, root_dev, ids):
        self.maps[cg] = (root_dev, set(ids))

    def clear_exec_mounts(self, cg, ids):
        self.cleared.append((cg, set(ids)))
        self.maps.pop(cg, None)

    def forget_device(self, dev):
        self.forgotten.append(dev)


def test_the_resolver_reads_a_containers_mounts_once_through_its_workload(tmp_path,
                                                                          monkeypatch):
    proc = tmp_path / "proc"
    (proc / "41").mkdir(parents=True)
    (proc / "41" / "mountinfo").write_text(MOUNTINFO + "\n")
    real_open = open

    def fake_open(path, *a, **kw):
        if isinstance(path, str) and path.startswith("/proc/41/"):
            path = str(proc) + path[len("/proc"):]
        return real_open(path, *a, **kw)
    monkeypatch.setattr("builtins.open", fake_open)
    s = FakeSensor()
    r = MountResolver(s, ["/opt/plugins"])
    assert r.workload(7, 41) is None and s.maps == {}           # not enforced: nothing
    r.add(7)
    assert r.workload(7, 99999999) is None and 7 in r.waiting   # gone: try the next event
    found = r.workload(7, 41)
    assert (found.root_dev, found.allowed) == (112, frozenset({1040, 1041}))
    assert s.maps == {7: (112, {1040, 1041})} and 7 not in r.waiting
    assert r.workload(7, 41) is None                              # once
    r.remove(7)
    assert s.cleared == [(7, {1040, 1041})] and s.maps == {}
    assert s.forgotten == [112]              # its overlay's write counts go with it


def test_a_root_that_is_not_an_overlay_decides_nothing(tmp_path, monkeypatch):
    proc = tmp_path / "42"
    proc.mkdir()
    (proc / "mountinfo").write_text("27 1 254:0 / / rw - ext4 /dev/vda rw\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **kw: real_open(
        str(proc / "mountinfo") if p == "/proc/42/mountinfo" else p, *a, **kw))
    s = FakeSensor()
    r = MountResolver(s)
    r.add(8)
    for _ in range(MountResolver.NOT_OVERLAY_TRIES - 1):
        assert r.workload(8, 42) is None
    assert r.workload(8, 42).root_dev is None
    assert s.maps == {} and 8 not in r.waiting


def test_allow_exec_from_setting(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("drift:\n  allow_exec_from: [/opt/plugins/, /data]\n")
    assert config.load(str(p)).drift.allow_exec_from == ("/opt/plugins", "/data")
    assert config.load(None).drift.allow_exec_from == ()
    p.write_text("drift:\n  allow_exec_from: [opt/plugins]\n")
    with pytest.raises(config.ConfigError) as e:
        config.load(str(p))
    assert e.value.problems == [f"{p}:2: drift.allow_exec_from: must be a list of absolute "
                                "paths (as the container sees them)"]
