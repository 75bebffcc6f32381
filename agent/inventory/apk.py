"""Alpine packages: lib/apk/db/installed, one record per package separated by blank lines,
one `X:value` line per field — P: name, V: version, A: arch, o: origin (the source package,
what Alpine's secdb is keyed by), F: a directory and R: a file in the last F: directory.

Failure modes: a record without P: or V: is skipped with "path:line: ..." in the errors."""
from __future__ import annotations

import errno

from .package import OSRelease, Package
from .purls import os_purl
from .rootfs import ImageFileError

INSTALLED = "/lib/apk/db/installed"


def read(fs, osr: OSRelease, data_cap: int) -> tuple[list[Package], list[str]]:
    try:
        text = fs.read(INSTALLED, data_cap).decode("utf-8", "replace")
    except ImageFileError as e:
        return [], ([] if e.errno == errno.ENOENT else [str(e)])
    pkgs, errors = [], []
    rec: dict = {}
    files: list[str] = []
    folder = ""
    start = 1

    def flush():
        if not rec:
            return
        name, version = rec.get("P", ""), rec.get("V", "")
        if not name or not version:
            errors.append(f"{INSTALLED}:{start}: a package without P: or V: (skipped)")
            return
        arch = rec.get("A", "")
        pkgs.append(Package(kind="apk", name=name, version=version,
                            source_name=rec.get("o") or name, source_version=version,
                            arch=arch, purl=os_purl("apk", name, version, arch, osr),
                            location=INSTALLED, files=tuple(files)))

    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            flush()
            rec, files, folder = {}, [], ""
            continue
        if len(line) < 2 or line[1] != ":":
            errors.append(f"{INSTALLED}:{n}: not a 'X:value' line (ignored)")
            continue
        if not rec:
            start = n
        key, value = line[0], line[2:]
        if key == "F":
            folder = value.strip("/")
        elif key == "R":
            files.append(f"/{folder}/{value}" if folder else f"/{value}")
        elif key not in rec:
            rec[key] = value
    flush()
    return pkgs, errors
