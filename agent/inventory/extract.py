"""One image's inventory from its files: the OS package databases at their fixed paths, then
one bounded walk of the merged tree for language packages (Python metadata, npm
package.json, jars, Go executables). Runs inside the memory-capped child (worker.py); it is a
plain function of an ImageFS so that tests and the benchmark call it directly too.

Every source's trouble (an unreadable file, a malformed record) becomes a line in
`errors` ("path:line: what"), never an exception out of here, so one bad database does not
hide the rest of the image."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import apk, dpkg, golang, maven, npm, osrelease, python, rpm
from .package import OSRelease, Package
from .rootfs import ImageFS

OS_SOURCES = (("dpkg", dpkg.read), ("apk", apk.read), ("rpm", rpm.read))


@dataclass
class Extracted:
    os: OSRelease = field(default_factory=OSRelease)
    packages: list[Package] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    files_seen: int = 0
    truncated: str = ""
    seconds: float = 0.0


def extract(fs: ImageFS) -> Extracted:
    t0 = time.monotonic()
    out = Extracted()
    osr, _, err = osrelease.read(fs)
    out.os = osr
    if err:
        out.errors.append(err)
    for name, reader in OS_SOURCES:
        try:
            pkgs, errs = reader(fs, osr, fs.limits.max_file_bytes)
        except (ValueError, OSError, UnicodeError) as e:
            pkgs, errs = [], [f"{name}: {e}"]
        out.packages += pkgs
        out.errors += errs
    n = 0
    for path, st, layer in fs.walk():
        n += 1
        try:
            if python.wanted(path):
                out.packages += python.read(fs, path, out.errors)
            elif npm.wanted(path):
                out.packages += npm.read(fs, path, out.errors, (layer, st))
            elif maven.wanted(path):
                out.packages += maven.read(fs, path, out.errors, (layer, st))
            elif golang.wanted(path, st):
                out.packages += golang.read(fs, path, st, out.errors, layer)
        except (ValueError, OSError, UnicodeError) as e:
            out.errors.append(f"{path}: {e}")
    out.files_seen = n
    if fs.truncated:
        out.truncated = fs.truncated
        out.errors.append(f"walk: {fs.truncated}")
    out.seconds = time.monotonic() - t0
    return out
