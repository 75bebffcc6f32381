"""RPM packages: var/lib/rpm/rpmdb.sqlite (rpm ≥ 4.16: Fedora 33+, RHEL/Rocky/Alma 9), whose
Packages table holds one header blob per package (hnum INTEGER, blob BLOB).

A header blob, as rpm stores it in the database (no lead, no header magic):
    int32 il        number of index entries          (big-endian, like everything here)
    int32 dl        bytes in the data store
    il × 16 bytes   index entries: int32 tag, type, offset (into the data store), count
    dl bytes        the data store
Types used here: 4 INT32 (count values), 6 STRING (one NUL-terminated string), 8
STRING_ARRAY and 9 I18NSTRING (count NUL-terminated strings). Tags: NAME 1000, VERSION
1001, RELEASE 1002, EPOCH 1003, ARCH 1022, SOURCERPM 1044 ("openssl-3.0.7-24.el9.src.rpm"),
DIRINDEXES 1116, BASENAMES 1117, DIRNAMES 1118 (file i is dirnames[dirindexes[i]] +
basenames[i]), OLDFILENAMES 1027 (older headers: whole paths).

The database is read into memory (bounded by inventory.max_file_bytes) and opened with
sqlite3's deserialize — never by path, so no -wal/-journal file beside it is looked at and
nothing is written. Not read: the Berkeley DB `Packages` and ndb `Packages.db` formats of
older releases (an error says so), and a WAL not yet checkpointed into the main file.

Failure modes: a header that does not parse (sizes out of range, an entry pointing outside
its data store, a missing NAME/VERSION) is skipped with "rpmdb.sqlite: package hnum N: ..."
in the errors; a file that is not a SQLite database is one error."""
from __future__ import annotations

import errno
import sqlite3
import struct

from .package import OSRelease, Package
from .purls import os_purl
from .rootfs import ImageFileError

SQLITE = "/var/lib/rpm/rpmdb.sqlite"
OLD_FORMATS = ("/var/lib/rpm/Packages", "/var/lib/rpm/Packages.db",
               "/usr/lib/sysimage/rpm/Packages", "/usr/lib/sysimage/rpm/Packages.db")
PATHS = (SQLITE, "/usr/lib/sysimage/rpm/rpmdb.sqlite")

NAME, VERSION, RELEASE, EPOCH, ARCH, OLDFILENAMES, SOURCERPM = 1000, 1001, 1002, 1003, \
    1022, 1027, 1044
DIRINDEXES, BASENAMES, DIRNAMES = 1116, 1117, 1118
INT32, STRING, STRING_ARRAY, I18NSTRING = 4, 6, 8, 9
MAX_ENTRIES = 1 << 16
MAX_DATA = 256 << 20


class HeaderError(ValueError):
    pass


def parse_header(blob: bytes) -> dict[int, object]:
    """{tag: value} of the tags this module reads (str, list[str] or list[int])."""
    if len(blob) < 8:
        raise HeaderError("shorter than a header")
    il, dl = struct.unpack_from(">ii", blob, 0)
    if not 0 < il <= MAX_ENTRIES or not 0 <= dl <= MAX_DATA:
        raise HeaderError(f"index count {il} or data size {dl} out of range")
    base = 8 + 16 * il
    if base + dl > len(blob):
        raise HeaderError(f"{il} entries and {dl} data bytes do not fit in {len(blob)} bytes")
    store = blob[base:base + dl]
    wanted = (NAME, VERSION, RELEASE, EPOCH, ARCH, OLDFILENAMES, SOURCERPM, DIRINDEXES,
              BASENAMES, DIRNAMES)
    out: dict[int, object] = {}
    for i in range(il):
        tag, typ, off, count = struct.unpack_from(">iiii", blob, 8 + 16 * i)
        if tag not in wanted:
            continue
        if not 0 <= off < dl or count < 0 or count > dl:
            raise HeaderError(f"tag {tag}: offset {off} or count {count} outside the data")
        if typ == INT32:
            if off + 4 * count > dl:
                raise HeaderError(f"tag {tag}: {count} integers past the data")
            out[tag] = list(struct.unpack_from(f">{count}i", store, off))
        elif typ in (STRING, STRING_ARRAY, I18NSTRING):
            n = 1 if typ == STRING else count
            vals, pos = [], off
            for _ in range(n):
                end = store.find(b"\0", pos)
                if end < 0:
                    raise HeaderError(f"tag {tag}: a string without its NUL")
                vals.append(store[pos:end].decode("utf-8", "replace"))
                pos = end + 1
            out[tag] = vals[0] if typ == STRING else vals
        else:
            raise HeaderError(f"tag {tag}: unexpected type {typ}")
    return out


def source_of(sourcerpm: str) -> tuple[str, str]:
    """'openssl-3.0.7-24.el9.src.rpm' -> ('openssl', '3.0.7-24.el9')."""
    s = sourcerpm
    for suffix in (".src.rpm", ".nosrc.rpm"):
        if s.endswith(suffix):
            s = s[: -len(suffix)]
            break
    else:
        return "", ""
    name_version, _, release = s.rpartition("-")
    name, _, version = name_version.rpartition("-")
    if not name or not version or not release:
        return "", ""
    return name, f"{version}-{release}"


def _str(h: dict, tag: int) -> str:
    v = h.get(tag, "")
    return v[0] if isinstance(v, list) and v and isinstance(v[0], str) else \
        (v if isinstance(v, str) else "")


def package_of(h: dict, osr: OSRelease, location: str) -> Package | None:
    name, version, release = _str(h, NAME), _str(h, VERSION), _str(h, RELEASE)
    if not name or not version:
        raise HeaderError("no NAME or VERSION")
    if name == "gpg-pubkey":
        return None                      # an imported signing key, not software
    epoch = h.get(EPOCH)
    epoch = str(epoch[0]) if isinstance(epoch, list) and epoch else ""
    evr = f"{version}-{release}" if release else version
    full = f"{epoch}:{evr}" if epoch else evr
    arch = _str(h, ARCH)
    src_name, src_version = source_of(_str(h, SOURCERPM))
    files: list[str] = []
    dirs, bases, idx = h.get(DIRNAMES), h.get(BASENAMES), h.get(DIRINDEXES)
    if isinstance(bases, list) and isinstance(dirs, list) and isinstance(idx, list):
        if len(idx) != len(bases):
            raise HeaderError("DIRINDEXES and BASENAMES differ in length")
        for i, b in zip(idx, bases):
            if not 0 <= i < len(dirs):
                raise HeaderError(f"a dir index {i} outside DIRNAMES")
            files.append(dirs[i] + b)
    elif isinstance(h.get(OLDFILENAMES), list):
        files = list(h[OLDFILENAMES])
    return Package(kind="rpm", name=name, version=full, source_name=src_name or name,
                   source_version=src_version or evr, arch=arch,
                   purl=os_purl("rpm", name, evr, arch, osr, epoch=epoch),
                   location=location, files=tuple(files))


def read(fs, osr: OSRelease, data_cap: int) -> tuple[list[Package], list[str]]:
    for path in PATHS:
        try:
            data = fs.read(path, data_cap)
        except ImageFileError as e:
            if e.errno == errno.ENOENT:
                continue
            return [], [str(e)]
        return _from_sqlite(data, osr, path)
    errors = [f"{p}: an rpm database in the Berkeley DB / ndb format (rpm < 4.16), not read"
              for p in OLD_FORMATS if fs.exists(p)]
    return [], errors


def _from_sqlite(data: bytes, osr: OSRelease, path: str):
    pkgs, errors = [], []
    con = sqlite3.connect(":memory:")
    try:
        try:
            con.deserialize(data)
            rows = con.execute("SELECT hnum, blob FROM Packages ORDER BY hnum")
            for hnum, blob in rows:
                try:
                    if not isinstance(blob, bytes):
                        raise HeaderError("not a blob")
                    p = package_of(parse_header(blob), osr, path)
                except HeaderError as e:
                    errors.append(f"{path}: package hnum {hnum}: {e} (skipped)")
                    continue
                if p is not None:
                    pkgs.append(p)
        except sqlite3.DatabaseError as e:
            errors.append(f"{path}: not a readable rpm sqlite database: {e}")
    finally:
        con.close()
    return pkgs, errors
