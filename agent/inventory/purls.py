"""Package URLs for inventory components (packageurl-python does the encoding and each
type's normalisation: pypi names lower-cased with '-', npm scopes as a namespace)."""
from __future__ import annotations

from packageurl import PackageURL

from .osrelease import distro
from .package import OSRelease

# the purl namespace of an OS package when os-release does not name the distribution
DEFAULT_NAMESPACE = {"deb": "debian", "apk": "alpine", "rpm": ""}


def os_purl(kind: str, name: str, version: str, arch: str, osr: OSRelease,
            epoch: str = "") -> str:
    q = {}
    if arch:
        q["arch"] = arch
    if epoch:
        q["epoch"] = epoch
    d = distro(osr)
    if d:
        q["distro"] = d
    return PackageURL(type=kind, namespace=osr.id or DEFAULT_NAMESPACE.get(kind) or None,
                      name=name, version=version or None, qualifiers=q or None).to_string()


def lang_purl(kind: str, name: str, version: str, namespace: str | None = None) -> str:
    return PackageURL(type=kind, namespace=namespace or None, name=name,
                      version=version or None).to_string()
