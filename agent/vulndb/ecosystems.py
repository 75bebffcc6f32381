"""The OSV ecosystems Mamori matches, declared once (config, versions, update and the docs
read this). Spelled as the OSV schema's ecosystems.json spells them."""
from __future__ import annotations

# base name (before the first ':') -> the purl type of the packages matched in it
ECOSYSTEMS = {
    "Debian": "deb", "Ubuntu": "deb", "Alpine": "apk",
    "Rocky Linux": "rpm", "AlmaLinux": "rpm", "Red Hat": "rpm",
    "PyPI": "pypi", "npm": "npm", "Go": "golang", "Maven": "maven",
}
_OS_BASE = {("deb", "debian"): "Debian", ("deb", "ubuntu"): "Ubuntu", ("apk", "alpine"): "Alpine",
            ("rpm", "rocky"): "Rocky Linux", ("rpm", "almalinux"): "AlmaLinux",
            ("rpm", "rhel"): "Red Hat"}
_LANGUAGE_BASE = {"pypi": "PyPI", "npm": "npm", "golang": "Go", "maven": "Maven"}


def of_inventory(os_id: str, kinds) -> list[str]:
    """The base ecosystems (osv.dev's export names) an image's packages are matched in: the
    exports `vulndb update` needs for it. os_id is etc/os-release's ID; kinds the purl types
    of its packages."""
    out = set()
    for kind in kinds:
        base = _LANGUAGE_BASE.get(kind) or _OS_BASE.get((kind, (os_id or "").lower()))
        if base:
            out.add(base)
    return sorted(out)
