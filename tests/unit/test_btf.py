"""The BTF parser, against the running kernel's BTF (cross-checked with bpftool) and
against broken input."""
import re
import struct
import subprocess

import pytest

from agent.sensor.btf import BTF, BTF_PATH, OFFSETS, BTFError, kernel_offsets


@pytest.fixture(scope="module")
def btf():
    return BTF.load()


def _bpftool_member_offsets(struct_name):
    """{member: bit offset} of a struct, as bpftool prints the kernel's BTF."""
    out = subprocess.check_output(["bpftool", "btf", "dump", "file", BTF_PATH, "format",
                                   "raw"]).decode()
    m = re.search(rf"^\[\d+\] STRUCT '{struct_name}' size=\d+ vlen=\d+\n((?:\t.*\n)+)", out,
                  re.M)
    assert m, struct_name
    return {mm.group(1): int(mm.group(2))
            for mm in re.finditer(r"'(\w+)' type_id=\d+ bits_offset=(\d+)", m.group(1))}


@pytest.mark.parametrize("name", ["task_struct", "linux_binprm", "mm_struct", "dentry",
                                  "mount", "super_block"])
def test_offsets_agree_with_bpftool(btf, name):
    members = _bpftool_member_offsets(name)
    wanted = [p.split(".", 1)[1] for p in OFFSETS.values()
              if p.startswith(name + ".") and p.count(".") == 1]
    assert wanted
    for member in wanted:
        if member in members:
            assert btf.offsetof(f"{name}.{member}") * 8 == members[member], member


def test_known_offset_of_this_kernel(btf):
    # MACHINE.md: real_parent is at 1280 in the running 6.18 kernel (2432 in 6.1 headers)
    import platform
    if platform.release().startswith("6.18."):
        assert btf.offsetof("task_struct.real_parent") == 1280


def test_every_offset_the_probes_need_resolves(btf):
    offs = kernel_offsets(btf)
    assert set(OFFSETS) <= set(offs)
    assert offs["UPID_SIZE"] == 16
    assert offs["SK_PROTOCOL_SIZE"] in (1, 2)
    assert all(v >= 0 for v in offs.values())


def test_nested_and_anonymous_members(btf):
    # d_name.name goes through an embedded qstr; __i_nlink sits in an anonymous union
    assert btf.offsetof("dentry.d_name.name") == btf.offsetof("dentry.d_name") + 8
    assert btf.offsetof("inode.__i_nlink") > 0


def test_unknown_struct_or_member_is_a_clear_error(btf):
    with pytest.raises(BTFError, match="struct no_such_struct not in kernel BTF"):
        btf.offsetof("no_such_struct.x")
    with pytest.raises(BTFError, match="no member 'nope'"):
        btf.offsetof("task_struct.nope")


def test_missing_or_corrupt_btf_is_refused(tmp_path):
    with pytest.raises(BTFError, match="no BTF"):
        BTF.load(str(tmp_path / "missing"))
    bad = tmp_path / "bad"
    bad.write_bytes(struct.pack("<HBBI", 0x1234, 1, 0, 24) + b"\0" * 16)
    with pytest.raises(BTFError, match="bad BTF magic"):
        BTF.load(str(bad))
    with pytest.raises(BTFError, match="too short"):
        BTF(b"\x9f\xeb")
