"""bpf/events.h and the Python decoder come from one description; check both ways."""
import os
import subprocess

from agent.sensor import layout

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_committed_header_is_generated_from_layout():
    with open(os.path.join(ROOT, "bpf", "events.h")) as f:
        assert f.read() == layout.c_header(), "bpf/events.h is stale: run `make gen`"


def test_gcc_lays_out_every_struct_where_the_decoder_reads(tmp_path):
    """Compile the generated header with gcc and compare offsetof/sizeof of every member
    with the offsets the decoder uses."""
    lines = ["#include <stdio.h>", "#include <stddef.h>",
             "typedef unsigned char u8; typedef unsigned short u16; typedef unsigned int u32;",
             "typedef int s32; typedef unsigned long long u64; typedef long long s64;",
             f'#include "{ROOT}/bpf/events.h"', "int main(void) {"]
    expected = {}
    for name in ("event_hdr", *layout.STRUCTS):
        lines.append(f'printf("{name} sizeof %zu\\n", sizeof(struct {name}));')
        expected[f"{name} sizeof"] = layout.sizeof(name)
        for member, off in layout.offsets(name).items():
            lines.append(f'printf("{name} {member} %zu\\n", offsetof(struct {name}, {member}));')
            expected[f"{name} {member}"] = off
    lines += ["return 0; }"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run(["gcc", "-o", str(exe), str(src)], check=True)
    got = {}
    for line in subprocess.check_output([str(exe)]).decode().splitlines():
        key, val = line.rsplit(" ", 1)
        got[key] = int(val)
    assert got == expected
    assert len(expected) > 80


def test_struct_formats_cover_each_struct_exactly():
    for name in layout.STRUCTS:
        body = layout.body_struct(name)
        end = layout.sizeof(name)
        if name in layout.VARIABLE_TAIL:         # the fixed part, up to its variable tail
            end = layout.offsets(name)[layout.VARIABLE_TAIL[name]]
            assert layout.min_size(name) == end + 1
        assert layout.sizeof("event_hdr") + body.size <= end
        assert end - (layout.sizeof("event_hdr") + body.size) < 8


def test_every_kind_has_a_struct_and_a_family():
    assert set(layout.STRUCT_OF_KIND) == set(layout.KINDS) == set(layout.FAMILY_OF)
