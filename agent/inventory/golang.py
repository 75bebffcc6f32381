"""Go modules compiled into binaries: the build information the Go linker embeds (Go ≥ 1.18)
in ELF executables, section .go.buildinfo:

    offset 0   "\\xff Go buildinf:"    14-byte magic
    14         pointer size (4 or 8)
    15         flags: bit 1 (0x2) = strings inline (Go ≥ 1.18)
    32         uvarint length + runtime version ("go1.21.5"),
               uvarint length + module info, itself framed by 16 sentinel bytes each side:
                 path   <main package path>
                 mod    <module path> <version> [<sum>]
                 dep    <module path> <version> [<sum>]
                 =>     <replacement path> <version> [<sum>]   (replaces the line before)
                 build  <key>=<value>
Older binaries (pointer-based build info, Go < 1.18) are reported, not read.

Components: the main module (version "(devel)" for a local build), every dep (a replaced
dep with the replacement's path and version when it has one), and the Go standard library
as `stdlib` with the toolchain's version without "go" (what Go vulnerability data uses).
Only the ELF header, section headers, their names and the one section are read (pread),
from executables up to inventory.max_binary_bytes.

Failure modes: a truncated or inconsistent ELF/build info is one error naming the file."""
from __future__ import annotations

import os
import stat
import struct

from .package import Package
from .purls import lang_purl
from .rootfs import ImageFileError

MAGIC = b"\xff Go buildinf:"
SECTION = b".go.buildinfo"
MAX_SECTION = 4 << 20
MAX_SHNUM = 4096
INFO_START = bytes.fromhex("3077af0c9274080241e1c107e6d618e6")
INFO_END = bytes.fromhex("f932433186182072008242104116d8f2")


class BuildInfoError(ValueError):
    pass


def wanted(path: str, st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111) and st.st_size >= 1024


def _pread(fd: int, n: int, off: int) -> bytes:
    b = os.pread(fd, n, off)
    if len(b) != n:
        raise BuildInfoError("truncated ELF file")
    return b


def section(fd: int, size: int) -> bytes | None:
    """The bytes of .go.buildinfo, or None when the file is not an ELF file with one."""
    ident = os.pread(fd, 64, 0)
    if len(ident) < 52 or ident[:4] != b"\x7fELF":
        return None
    is64, le = ident[4] == 2, ident[5] == 1
    e = "<" if le else ">"
    if is64:
        shoff, = struct.unpack_from(e + "Q", ident, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", ident, 0x3A)
    else:
        shoff, = struct.unpack_from(e + "I", ident, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", ident, 0x2E)
    if shnum == 0 or shoff == 0:
        return None
    if shnum > MAX_SHNUM or shstrndx >= shnum or shentsize < (64 if is64 else 40) or \
            shoff + shnum * shentsize > size:
        raise BuildInfoError("section headers out of range")
    table = _pread(fd, shnum * shentsize, shoff)

    def sh(i):
        o = i * shentsize
        if is64:
            name, _, _, _, off, sz = struct.unpack_from(e + "IIQQQQ", table, o)
        else:
            name, _, _, _, off, sz = struct.unpack_from(e + "IIIIII", table, o)
        return name, off, sz
    _, stroff, strsz = sh(shstrndx)
    if stroff + strsz > size or strsz > 1 << 20:
        raise BuildInfoError("section names out of range")
    names = _pread(fd, strsz, stroff)
    for i in range(shnum):
        name, off, sz = sh(i)
        if names[name:name + len(SECTION) + 1] == SECTION + b"\0":
            if off + sz > size or sz > MAX_SECTION:
                raise BuildInfoError(".go.buildinfo out of range")
            return _pread(fd, sz, off)
    return None


def _uvarint(b: bytes, pos: int) -> tuple[int, int]:
    x = shift = 0
    for i in range(10):
        if pos + i >= len(b):
            break
        c = b[pos + i]
        x |= (c & 0x7F) << shift
        if c < 0x80:
            return x, pos + i + 1
        shift += 7
    raise BuildInfoError("bad varint in the build info")


def parse(data: bytes) -> tuple[str, str]:
    """(Go version, module info text) from the .go.buildinfo section."""
    if len(data) < 32 or not data.startswith(MAGIC):
        raise BuildInfoError("no build info magic")
    if not data[15] & 0x2:
        raise BuildInfoError("pointer-based build info (Go < 1.18), not read")
    out, pos = [], 32
    for _ in range(2):
        n, pos = _uvarint(data, pos)
        if pos + n > len(data):
            raise BuildInfoError("a build info string past the section")
        out.append(data[pos:pos + n])
        pos += n
    version, mod = out
    if len(mod) >= 33 and mod[:16] == INFO_START and mod[-16:] == INFO_END:
        mod = mod[16:-16]
    return version.decode("utf-8", "replace"), mod.decode("utf-8", "replace")


def modules(modinfo: str) -> list[tuple[str, str, str]]:
    """(line kind 'mod'|'dep', path, version), replacements applied."""
    out: list[list[str]] = []
    for line in modinfo.splitlines():
        f = line.split("\t")
        if f[0] in ("mod", "dep") and len(f) >= 3:
            out.append([f[0], f[1], f[2]])
        elif f[0] == "=>" and len(f) >= 3 and out:
            if not f[1].startswith((".", "/")):   # a module; a local folder is not one
                out[-1][1], out[-1][2] = f[1], f[2]
    return [tuple(x) for x in out]


def read(fs, path: str, st, errors: list[str], layer: int | None = None) -> list[Package]:
    if st.st_size > fs.limits.max_binary_bytes:
        return []
    try:
        fd, size = fs.open_entry(path, layer, st, fs.limits.max_binary_bytes) \
            if layer is not None else fs.open(path, fs.limits.max_binary_bytes)
    except ImageFileError as e:
        errors.append(str(e))
        return []
    try:
        data = section(fd, size)
        if data is None:
            return []
        goversion, modinfo = parse(data)
    except (BuildInfoError, struct.error, OSError) as e:
        errors.append(f"{path}: Go build info: {e}")
        return []
    finally:
        os.close(fd)
    out = []
    for _, mpath, version in modules(modinfo):
        ns, _, name = mpath.rpartition("/")
        out.append(Package(kind="golang", name=mpath, version=version,
                           purl=lang_purl("golang", name, version, ns or None),
                           location=path, files=(path,)))
    if goversion.startswith("go"):
        v = goversion[2:].split(" ")[0]
        out.append(Package(kind="golang", name="stdlib", version=v,
                           purl=lang_purl("golang", "stdlib", v), location=path,
                           files=(path,)))
    return out
