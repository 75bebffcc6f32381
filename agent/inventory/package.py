"""The records an image inventory is made of, shared by the inventory (which makes them) and
the vulnerability matcher (which reads them)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class OSRelease:
    """The distribution an image is built on, from its etc/os-release ("" when not known)."""
    id: str = ""             # ID: debian, ubuntu, alpine, rocky, almalinux, rhel, ...
    version_id: str = ""     # VERSION_ID: 12, 22.04, 3.19.1, 9.3
    codename: str = ""       # VERSION_CODENAME: bookworm, jammy
    pretty_name: str = ""    # PRETTY_NAME, for display only


@dataclass(frozen=True, slots=True)
class Package:
    """One installed component.

    kind is the Package URL type: deb, apk, rpm, pypi, npm, golang, maven.
    version is the version as installed, whole: deb "1:3.0.11-1~deb12u2", rpm
    "1:3.0.7-24.el9" (epoch:version-release, no epoch part when there is none), apk
    "1.36.1-r15", pypi "2.31.0". source_name/source_version are what OS vulnerability data is
    keyed by: the Debian source package (the binary's own name and version when the status
    has no Source: line), the Alpine origin, the RPM source rpm's name and version-release.
    location is the file the record was read from, as a path inside the image ("/var/lib/dpkg/status").
    files are the paths inside the image the component installed, when its database says
    (for telling which packages are in use)."""
    kind: str
    name: str
    version: str
    source_name: str = ""
    source_version: str = ""
    arch: str = ""
    purl: str = ""
    location: str = ""
    files: tuple[str, ...] = field(default=(), compare=False, repr=False)
