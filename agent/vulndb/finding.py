"""A finding: one vulnerability in one installed component of one image."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    id: str                         # the OSV id: DSA-5532-1, GHSA-..., GO-2024-2687
    aliases: tuple[str, ...]        # CVE-..., other ids of the same vulnerability
    package: str                    # the installed component's name (the binary: libssl3)
    kind: str                       # purl type: deb, apk, rpm, pypi, npm, golang, maven
    installed: str                  # its version, whole, as installed
    fixed: str                      # the first version that fixes it; "" when none is known
    ecosystem: str                  # the OSV ecosystem it matched in: Debian:12, PyPI
    matched_name: str               # the name it matched by: the source package (openssl)
    matched_version: str            # the version compared: the source version
    severity: str                   # info | low | medium | high | critical | unknown
    cvss_score: float | None        # the CVSS base score computed from cvss_vector
    cvss_vector: str
    severity_source: str            # CVSS_V3 | CVSS_V4 | CVSS_V2 | urgency | ... | ""
    distro_severity: str            # the distribution's rating as written ("" if none)
    summary: str
    details: str
    references: tuple[str, ...]     # URLs
    image: str                      # the image key the inventory was made for
    location: str                   # where in the image the component was found
    purl: str

    @property
    def cves(self) -> tuple[str, ...]:
        ids = (self.id,) + self.aliases
        return tuple(x for x in ids if x.startswith("CVE-"))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["aliases"] = list(self.aliases)
        d["references"] = list(self.references)
        return d
