"""Python packages: <dir>/<name>.dist-info/METADATA (wheels, pip) with the installed files in
RECORD beside it, and <name>.egg-info/PKG-INFO (setuptools; a directory, or the .egg-info
file itself) with its top-level folders (top_level.txt) as its files. Found wherever they
are in the image (site-packages, dist-packages, a virtualenv, /app), not only on sys.path.

Name and Version come from the metadata's RFC 822 headers (the first of each); the purl's
name is normalised by packageurl (lower case, '_' as '-'); Package.name is as written.

Failure modes: metadata without Name or Version is one error naming the file."""
from __future__ import annotations

import csv
import io
import posixpath

from .package import Package
from .purls import lang_purl
from .rootfs import ImageFileError

META_MAX = 4 << 20
RECORD_MAX = 32 << 20


def wanted(path: str) -> bool:
    d, base = posixpath.split(path)
    return (base == "METADATA" and d.endswith(".dist-info")) or \
        (base == "PKG-INFO" and d.endswith(".egg-info")) or \
        (path.endswith(".egg-info") and "/" in path)       # an egg-info file


def headers(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if not line.strip():
            break                                 # the body (the description) follows
        if line[0] in " \t":
            continue
        k, sep, v = line.partition(":")
        if sep and k.lower() not in out:
            out[k.lower()] = v.strip()
    return out


def read(fs, path: str, errors: list[str]) -> list[Package]:
    try:
        text = fs.read(path, META_MAX).decode("utf-8", "replace")
    except ImageFileError as e:
        if path.endswith(".egg-info") and e.errno == 22:
            return []                             # the egg-info directory (PKG-INFO inside)
        errors.append(str(e))
        return []
    h = headers(text)
    name, version = h.get("name", ""), h.get("version", "")
    if not name or not version:
        errors.append(f"{path}: Python package metadata without Name or Version")
        return []
    d = posixpath.dirname(path)
    if path.endswith("METADATA"):
        files = _record(fs, d, errors)
    elif path.endswith("PKG-INFO"):
        files = _top_level(fs, d)
    else:
        files = [path]
    return [Package(kind="pypi", name=name, version=version,
                    purl=lang_purl("pypi", name, version), location=path,
                    files=tuple(files))]


def _record(fs, dist_info: str, errors: list[str]) -> list[str]:
    """RECORD's paths, relative to the folder holding the .dist-info, made absolute."""
    try:
        data = fs.read(dist_info + "/RECORD", RECORD_MAX).decode("utf-8", "replace")
    except ImageFileError as e:
        if e.errno != 2:
            errors.append(str(e))
        return []
    base = posixpath.dirname(dist_info)
    out = []
    try:
        for row in csv.reader(io.StringIO(data)):
            if row and row[0]:
                out.append(posixpath.normpath(posixpath.join(base, row[0])))
    except csv.Error as e:
        errors.append(f"{dist_info}/RECORD: {e}")
    return out


def _top_level(fs, egg_info: str) -> list[str]:
    base = posixpath.dirname(egg_info)
    try:
        names = fs.read(egg_info + "/top_level.txt", 1 << 20).decode("utf-8", "replace")
    except ImageFileError:
        return [egg_info + "/"]
    return [egg_info + "/"] + [f"{base}/{n.strip()}/" for n in names.splitlines()
                               if n.strip() and "/" not in n and n.strip() not in (".", "..")]
