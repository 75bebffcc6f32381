"""Debian and Ubuntu packages: var/lib/dpkg/status (deb822 paragraphs) with the file lists
in var/lib/dpkg/info/<package>[:<arch>].list, and distroless images' var/lib/dpkg/status.d/
(one paragraph file per package, its files in <name>.md5sums).

Kept per package: Package, Version (epoch included, "1:2.36-9+deb12u3"), Architecture, and
the source package — `Source: name` or `Source: name (version)` when the source version
differs — which is what Debian vulnerability data is keyed by; without a Source: line the
binary's own name and version. Only paragraphs whose Status says installed count (status.d
files often have no Status line: they are installed by construction).

Failure modes: a paragraph without Package or Version is skipped with "path:line: ..." in
the errors; a missing or unreadable file list leaves that package's files empty."""
from __future__ import annotations

import errno
import re

from .package import OSRelease, Package
from .purls import os_purl
from .rootfs import ImageFileError

STATUS = "/var/lib/dpkg/status"
STATUS_D = "/var/lib/dpkg/status.d"
INFO = "/var/lib/dpkg/info"
_SOURCE = re.compile(r"^(\S+)(?:\s+\((\S+)\))?\s*$")
MAX_LIST_BYTES = 16 << 20


def paragraphs(text: str):
    """(first line number, {field: value}) of each deb822 paragraph; continuation lines
    are joined to their field with newlines."""
    fields: dict[str, str] = {}
    start, last = 0, None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if fields:
                yield start, fields
            fields, last = {}, None
            continue
        if line[0] in " \t":
            if last is not None:
                fields[last] += "\n" + line.strip()
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        if not fields:
            start = n
        last = key.strip().lower()
        fields[last] = value.strip()
    if fields:
        yield start, fields


def installed(fields: dict) -> bool:
    status = fields.get("status")
    return status is None or status.split()[-1:] == ["installed"]


def package_of(fields: dict, osr: OSRelease, location: str, files=()) -> Package:
    name, version = fields["package"], fields["version"]
    src_name, src_version = name, version
    src = fields.get("source", "")
    if src:
        m = _SOURCE.match(src)
        if m:
            src_name = m.group(1)
            src_version = m.group(2) or version
    arch = fields.get("architecture", "")
    return Package(kind="deb", name=name, version=version, source_name=src_name,
                   source_version=src_version, arch=arch,
                   purl=os_purl("deb", name, version, arch, osr), location=location,
                   files=tuple(files))


def read(fs, osr: OSRelease, data_cap: int) -> tuple[list[Package], list[str]]:
    pkgs: list[Package] = []
    errors: list[str] = []
    try:
        text = fs.read(STATUS, data_cap).decode("utf-8", "replace")
    except ImageFileError as e:
        if e.errno != errno.ENOENT:
            errors.append(str(e))
        text = None
    if text is not None:
        lists = fs.listdir(INFO.strip("/"))
        for line, f in paragraphs(text):
            if not installed(f):
                continue
            if not f.get("package") or not f.get("version"):
                errors.append(f"{STATUS}:{line}: a package without Package or Version "
                              f"(skipped)")
                continue
            files = _file_list(fs, f, lists, errors)
            pkgs.append(package_of(f, osr, STATUS, files))
    pkgs += _status_d(fs, osr, data_cap, errors)
    return pkgs, errors


def _file_list(fs, f: dict, lists: dict, errors: list[str]) -> list[str]:
    name, arch = f["package"], f.get("architecture", "")
    for cand in ((f"{name}:{arch}", name) if arch else (name,)):
        hit = lists.get(cand + ".list")
        if hit is None:
            continue
        layer, st = hit[0]
        try:
            data = fs.read_entry(f"{INFO}/{cand}.list", layer, st, MAX_LIST_BYTES)
        except ImageFileError as e:
            if e.errno != errno.ENOENT:
                errors.append(str(e))
            continue
        return [p for p in data.decode("utf-8", "replace").splitlines()
                if p.startswith("/") and p != "/."]
    return []


def _status_d(fs, osr: OSRelease, data_cap: int, errors: list[str]) -> list[Package]:
    try:
        entries = fs.listdir(STATUS_D.strip("/"))
    except ImageFileError as e:
        errors.append(str(e))
        return []
    out = []
    for name in sorted(entries):
        if name.endswith(".md5sums"):
            continue
        path = f"{STATUS_D}/{name}"
        try:
            text = fs.read(path, data_cap).decode("utf-8", "replace")
        except ImageFileError as e:
            errors.append(str(e))
            continue
        for line, f in paragraphs(text):
            if not installed(f):
                continue
            if not f.get("package") or not f.get("version"):
                errors.append(f"{path}:{line}: a package without Package or Version "
                              f"(skipped)")
                continue
            files = []
            try:
                sums = fs.read(f"{STATUS_D}/{name}.md5sums", MAX_LIST_BYTES)
                for ln in sums.decode("utf-8", "replace").splitlines():
                    parts = ln.split(None, 1)
                    if len(parts) == 2:
                        files.append("/" + parts[1].lstrip("/"))
            except ImageFileError:
                pass
            out.append(package_of(f, osr, path, files))
    return out
