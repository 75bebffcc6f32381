"""The OSV ecosystems Mamori matches, declared once (config, versions, update and the docs
read this). Spelled as the OSV schema's ecosystems.json spells them."""
from __future__ import annotations

# base name (before the first ':') -> the purl type of the packages matched in it
ECOSYSTEMS = {
    "Debian": "deb", "Ubuntu": "deb", "Alpine": "apk",
    "Rocky Linux": "rpm", "AlmaLinux": "rpm", "Red Hat": "rpm",
    "PyPI": "pypi", "npm": "npm", "Go": "golang", "Maven": "maven",
}
