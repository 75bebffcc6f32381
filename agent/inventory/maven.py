"""Java packages: META-INF/maven/<groupId>/<artifactId>/pom.properties inside *.jar, *.war,
*.ear files (a fat jar's own entries included), read from the zip's central directory
without unpacking the archive; nested jars (BOOT-INF/lib/*.jar) are not opened. The
component's file is the archive itself.

Bounded: archives up to inventory.max_binary_bytes, at most MAX_ENTRIES central-directory
entries, pom.properties entries up to 64 KiB (a zip bomb's declared sizes are checked
before any inflating, and the read is capped anyway).

Failure modes: not a zip, or a pom.properties without groupId/artifactId/version: one error."""
from __future__ import annotations

import os
import zipfile

from .package import Package
from .purls import lang_purl
from .rootfs import ImageFileError

SUFFIXES = (".jar", ".war", ".ear")
MAX_ENTRIES = 200_000
MAX_PROPS = 64 << 10


def wanted(path: str) -> bool:
    return path.endswith(SUFFIXES)


def properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        for sep in ("=", ":"):
            if sep in line:
                k, _, v = line.partition(sep)
                out[k.strip()] = v.strip()
                break
    return out


def read(fs, path: str, errors: list[str], found=None) -> list[Package]:
    try:
        fd, _ = fs.open_entry(path, found[0], found[1], fs.limits.max_binary_bytes) if found \
            else fs.open(path, fs.limits.max_binary_bytes)
    except ImageFileError as e:
        errors.append(str(e))
        return []
    out = []
    try:
        with os.fdopen(fd, "rb") as f, zipfile.ZipFile(f) as z:
            infos = z.infolist()
            if len(infos) > MAX_ENTRIES:
                errors.append(f"{path}: {len(infos)} zip entries, over {MAX_ENTRIES}")
                return []
            for info in infos:
                parts = info.filename.split("/")
                if len(parts) != 5 or parts[:2] != ["META-INF", "maven"] or \
                        parts[4] != "pom.properties":
                    continue
                if info.file_size > MAX_PROPS:
                    errors.append(f"{path}!{info.filename}: {info.file_size} bytes, too big")
                    continue
                with z.open(info) as e:
                    props = properties(e.read(MAX_PROPS).decode("utf-8", "replace"))
                g, a, v = props.get("groupId"), props.get("artifactId"), props.get("version")
                if not g or not a or not v:
                    errors.append(f"{path}!{info.filename}: no groupId, artifactId or version")
                    continue
                out.append(Package(kind="maven", name=f"{g}:{a}", version=v,
                                   purl=lang_purl("maven", a, v, g), location=path,
                                   files=(path,)))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            NotImplementedError) as e:
        errors.append(f"{path}: not a readable jar: {e}")
        return []
    return out
