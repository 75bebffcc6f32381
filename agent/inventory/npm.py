"""npm packages: node_modules/<name>/package.json and node_modules/@scope/<name>/package.json,
at any depth (nested node_modules of a dependency too). A package.json elsewhere is an
application's own manifest, not an installed package, and is not listed. The package's
files are its folder ("/app/node_modules/lodash/").

Failure modes: a package.json that is not JSON, or has no name or version, is one error."""
from __future__ import annotations

import json
import posixpath

from .package import Package
from .purls import lang_purl
from .rootfs import ImageFileError

MAX_BYTES = 4 << 20


def wanted(path: str) -> bool:
    if not path.endswith("/package.json"):
        return False
    parts = path.split("/")
    # .../node_modules/name/package.json or .../node_modules/@scope/name/package.json
    return (len(parts) >= 4 and parts[-3] == "node_modules" and not parts[-2].startswith("@")) \
        or (len(parts) >= 5 and parts[-4] == "node_modules" and parts[-3].startswith("@"))


def read(fs, path: str, errors: list[str], found=None) -> list[Package]:
    try:
        doc = json.loads(fs.read_entry(path, found[0], found[1], MAX_BYTES) if found
                         else fs.read(path, MAX_BYTES))
    except ImageFileError as e:
        errors.append(str(e))
        return []
    except (ValueError, UnicodeDecodeError) as e:
        errors.append(f"{path}: not JSON: {e}")
        return []
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or \
            not isinstance(doc.get("version"), str) or not doc["name"] or not doc["version"]:
        errors.append(f"{path}: package.json without a name or version")
        return []
    full = doc["name"]
    ns, _, name = full.rpartition("/") if full.startswith("@") else ("", "", full)
    return [Package(kind="npm", name=full, version=doc["version"],
                    purl=lang_purl("npm", name, doc["version"], ns or None), location=path,
                    files=(posixpath.dirname(path) + "/",))]
