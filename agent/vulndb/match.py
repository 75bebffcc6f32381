"""Exact matching of an image's packages against the database.

Which OSV ecosystem and which name and version each kind of package is looked up by
(docs/vulnerabilities.md has the table):
  deb  Debian:<VERSION_ID major> / Ubuntu:<YY.MM>[:LTS], by source package and source version
  apk  Alpine:v<major.minor>, by origin (the source package), the package's version
  rpm  Rocky Linux:<major>, AlmaLinux:<major> by source rpm name; Red Hat:enterprise_linux:
       <major>::* by source and binary name; the installed epoch:version-release
  pypi PyPI by PEP 503 name; npm by name (@scope/name); golang Go by module path (the Go
       toolchain as "stdlib"); maven Maven by group:artifact
A range matches per the OSV schema's evaluation: events sorted in the ecosystem's order,
introduced opens, fixed closes (the fixed version is not affected), last_affected closes
after that version, limit bounds the range; versions[] lists affected versions exactly.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable

from . import severity as sevmod
from . import versions
from .finding import Finding
from .osv import Affected, normalise_name
from .store import Store, Vuln

LANGUAGE_ECOSYSTEM = {"pypi": "PyPI", "npm": "npm", "golang": "Go", "maven": "Maven"}
RPM_DISTROS = {"rocky": "Rocky Linux", "almalinux": "AlmaLinux"}
RHEL_IDS = ("rhel",)


@dataclass(frozen=True, slots=True)
class MatchResult:
    findings: tuple[Finding, ...]
    problems: tuple[str, ...]       # packages that could not be matched, and why


def ubuntu_ecosystems(version_id: str) -> list[str]:
    """Ubuntu 22.04 -> Ubuntu:22.04:LTS (LTS: even year, April), Ubuntu 23.10 -> Ubuntu:23.10.
    The plain form is asked too (older exports wrote no :LTS). Ubuntu Pro (ESM) streams are
    not: their fixes are not installed on an image without Pro."""
    parts = version_id.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        return []
    yy, mm = parts[0], parts[1]
    plain = f"Ubuntu:{yy}.{mm}"
    lts = int(yy) % 2 == 0 and mm == "04"
    return [plain + ":LTS", plain] if lts else [plain]


def os_ecosystems(os_release, kind: str, stored: Iterable[str] = ()) -> list[str]:
    """The OSV ecosystems an OS package of this kind on this distribution is looked up in
    ([] when the distribution is not one Mamori matches)."""
    osid, ver = (os_release.id or "").lower(), os_release.version_id or ""
    major = ver.split(".")[0]
    if kind == "deb":
        if osid == "debian" and major.isdigit():
            return [f"Debian:{major}"]
        if osid == "ubuntu":
            return ubuntu_ecosystems(ver)
    elif kind == "apk":
        if osid == "alpine":
            parts = ver.split(".")
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                return [f"Alpine:v{parts[0]}.{parts[1]}"]
    elif kind == "rpm":
        if osid in RPM_DISTROS and major.isdigit():
            return [f"{RPM_DISTROS[osid]}:{major}"]
        if osid in RHEL_IDS and major.isdigit():
            return [e for e in stored
                    if e.startswith(f"Red Hat:enterprise_linux:{major}::")
                    or e == f"Red Hat:enterprise_linux:{major}"]
    return []


def _purl_path(purl: str) -> tuple[str, str]:
    """(namespace, name) of a purl, or ("", "")."""
    if not purl:
        return "", ""
    try:
        from packageurl import PackageURL
        p = PackageURL.from_string(purl)
        return p.namespace or "", p.name
    except ValueError:
        return "", ""


def lookup_names(pkg) -> list[str]:
    """The names (normalised) a package is looked up by, most specific first."""
    k = pkg.kind
    if k in ("deb", "apk"):
        return [(pkg.source_name or pkg.name).lower()]
    if k == "rpm":
        names = [pkg.source_name or pkg.name]
        if pkg.name not in names:
            names.append(pkg.name)          # Red Hat records name binary rpms too
        return names
    ns, name = _purl_path(pkg.purl)
    if k == "pypi":
        return [normalise_name("PyPI", pkg.name)]
    if k == "npm":
        if ns and not pkg.name.startswith("@"):
            return [f"{ns}/{name}"]
        return [pkg.name]
    if k == "golang":
        if pkg.name in ("stdlib", "go", "toolchain"):
            return ["stdlib"]
        if ns and "/" not in pkg.name:
            return [f"{ns}/{name}"]
        return [pkg.name]
    if k == "maven":
        if ":" in pkg.name:
            return [pkg.name.lower()]
        if ns:
            return [f"{ns}:{name}".lower()]
        return [pkg.name.lower()]
    return [pkg.name]


def compared_version(pkg) -> str:
    if pkg.kind in ("deb", "apk"):
        return pkg.source_version or pkg.version
    return pkg.version


def _event_order(eco: str, rtype: str):
    """Sort key of (kind, version) events: introduced "0" first, then by version."""
    def cmp(a, b):
        a0, b0 = a == ("introduced", "0"), b == ("introduced", "0")
        if a0 or b0:
            return (b0 - a0) if not (a0 and b0) else 0
        return versions.compare(versions.parse(eco, rtype, a[1]),
                                versions.parse(eco, rtype, b[1]))
    return functools.cmp_to_key(cmp)


def in_range(eco: str, rng, installed: str) -> tuple[bool, str]:
    """(affected, the fixed version that closes the range above `installed`, or "")."""
    v = versions.parse(eco, rng.type, installed)

    def vs(ver: str) -> int:            # installed compared with an event's version
        return versions.compare(v, versions.parse(eco, rng.type, ver))
    evs = sorted(rng.events, key=_event_order(eco, rng.type))
    affected, limit = False, None
    for kind, ver in evs:
        if kind == "limit":
            limit = ver
        elif kind == "introduced":
            if ver == "0" or vs(ver) >= 0:
                affected = True
        elif kind == "fixed":
            if vs(ver) >= 0:
                affected = False
        elif kind == "last_affected":
            if vs(ver) > 0:
                affected = False
    if limit is not None and vs(limit) >= 0:
        affected = False
    fixed = ""
    if affected:
        for kind, ver in evs:
            if kind == "fixed" and vs(ver) < 0:
                fixed = ver
                break
    return affected, fixed


def affects(aff: Affected, installed: str) -> tuple[bool, str]:
    """Whether this affected entry covers the installed version, and its fix."""
    fixes = []
    hit = False
    for rng in aff.ranges:
        if rng.type == "GIT":
            continue
        a, fixed = in_range(aff.ecosystem, rng, installed)
        if a:
            hit = True
            if fixed:
                fixes.append((versions.parse(aff.ecosystem, rng.type, fixed), fixed))
    if not hit and aff.versions:
        v = versions.parse(aff.ecosystem, "ECOSYSTEM", installed)
        for listed in aff.versions:
            if listed == installed:
                hit = True
                break
            try:
                if versions.compare(versions.parse(aff.ecosystem, "ECOSYSTEM", listed), v) == 0:
                    hit = True
                    break
            except versions.InvalidVersion:
                continue
    if not hit:
        return False, ""
    if not fixes:
        return True, ""
    first = min(fixes, key=functools.cmp_to_key(lambda a, b: versions.compare(a[0], b[0])))
    return True, first[1]


def _finding(vuln: Vuln, aff: Affected, pkg, installed_cmp: str, fixed: str,
             image: str) -> Finding:
    sev = sevmod.of(aff.severity + vuln.severity,
                    (aff.ecosystem_specific, aff.database_specific, vuln.database_specific))
    return Finding(
        id=vuln.id, aliases=vuln.aliases, package=pkg.name, kind=pkg.kind,
        installed=pkg.version, fixed=fixed, ecosystem=aff.ecosystem, matched_name=aff.name,
        matched_version=installed_cmp, severity=sev.level, cvss_score=sev.score,
        cvss_vector=sev.vector, severity_source=sev.source, distro_severity=sev.distro,
        summary=vuln.summary, details=vuln.details, references=vuln.references,
        image=image, location=pkg.location, purl=pkg.purl)


def match(store: Store, os_release, packages: Iterable, image: str) -> MatchResult:
    """Every finding for these packages of one image (one per vulnerability and component),
    and what could not be matched."""
    findings: list[Finding] = []
    problems: list[str] = []
    unmatched_kinds: set[str] = set()
    stored = None
    seen: set[tuple] = set()
    for pkg in packages:
        if pkg.kind in LANGUAGE_ECOSYSTEM:
            ecos = [LANGUAGE_ECOSYSTEM[pkg.kind]]
        else:
            if pkg.kind == "rpm" and (os_release.id or "").lower() in RHEL_IDS and stored is None:
                stored = store.ecosystems()
            ecos = os_ecosystems(os_release, pkg.kind, stored or ())
            if not ecos:
                if pkg.kind not in unmatched_kinds:
                    unmatched_kinds.add(pkg.kind)
                    distro = os_release.id or "an unknown distribution"
                    problems.append(f"{pkg.kind} packages on {distro} "
                                    f"{os_release.version_id}: no vulnerability data is "
                                    "matched for this distribution and release")
                continue
        cmp_version = compared_version(pkg)
        for eco in ecos:
            for name in lookup_names(pkg):
                for vuln, aff in store.lookup(eco, name):
                    key = (vuln.id, pkg.name, pkg.version, pkg.location)
                    if key in seen:
                        continue
                    try:
                        hit, fixed = affects(aff, cmp_version)
                    except versions.InvalidVersion as e:
                        problems.append(f"{pkg.kind} {pkg.name} {cmp_version!r}: not "
                                        f"comparable in {eco} ({e})")
                        break
                    if hit:
                        seen.add(key)
                        findings.append(_finding(vuln, aff, pkg, cmp_version, fixed, image))
    findings.sort(key=lambda f: (f.package, f.id))
    return MatchResult(tuple(findings), tuple(dict.fromkeys(problems)))
