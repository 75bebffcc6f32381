"""The distribution an image is built on: etc/os-release (or usr/lib/os-release), the
freedesktop format — KEY=value lines, values optionally in single or double quotes with
backslash escapes. What an OS package's purl carries as its namespace and distro qualifier.

Failure modes: no os-release gives an empty OSRelease (the packages still get purls, with
no distro qualifier); an unreadable one is a SourceError for the caller's errors."""
from __future__ import annotations

import re

from .package import OSRelease
from .rootfs import ImageFileError

PATHS = ("/etc/os-release", "/usr/lib/os-release")
MAX_BYTES = 64 << 10
_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def parse(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        v = m.group(2).strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
            v = v[1:-1]
            v = re.sub(r"\\(.)", r"\1", v) if "\\" in v else v
        out[m.group(1)] = v
    return out


def read(fs) -> tuple[OSRelease, str, str]:
    """(OSRelease, the path it was read from or "", an error or "")."""
    err = ""
    for path in PATHS:
        try:
            data = fs.read(path, MAX_BYTES)
        except ImageFileError as e:
            if e.errno != 2:
                err = str(e)
            continue
        kv = parse(data.decode("utf-8", "replace"))
        return (OSRelease(id=kv.get("ID", "").lower(), version_id=kv.get("VERSION_ID", ""),
                          codename=kv.get("VERSION_CODENAME", ""),
                          pretty_name=kv.get("PRETTY_NAME", "")), path, "")
    return OSRelease(), "", err


def distro(osr: OSRelease) -> str:
    """The purl distro qualifier: debian-12, alpine-3.19.1, rocky-9.3 ("" when unknown)."""
    if not osr.id:
        return ""
    return f"{osr.id}-{osr.version_id}" if osr.version_id else osr.id
