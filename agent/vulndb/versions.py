"""Version ordering per ecosystem, from univers (never hand-written): Debian and Ubuntu
(epochs, `~`, revisions), RPM (epoch:version-release), Alpine (-rN, _p, _rc), PyPI (PEP 440),
npm and SEMVER ranges (semver 2), Go (module versions and the Go toolchain's "go1.22.1"),
Maven (ComparableVersion).

``parse(ecosystem, range_type, text)`` gives a version or raises InvalidVersion with the
reason; ``compare(a, b)`` orders two of them (-1, 0, 1); ``check`` says why a version cannot
be ordered, for the importer.

Only ``<`` and ``>`` of univers' versions are used: some of its classes define those two
(and ``==``) with the ecosystem's rules but inherit ``<=``/``>=`` from attrs, which compare
the text ("1.36.1-r2" >= "1.36.1-r16" is True for AlpineLinuxVersion in univers 32).
"""
from __future__ import annotations

from functools import lru_cache

from univers import versions as uv

from .ecosystems import ECOSYSTEMS

InvalidVersion = uv.InvalidVersion

# OSV ecosystem (the part before the first ':') -> univers version class
ECOSYSTEM_CLASS = {
    "Debian": uv.DebianVersion,
    "Ubuntu": uv.DebianVersion,
    "Alpine": uv.AlpineLinuxVersion,
    "Rocky Linux": uv.RpmVersion,
    "AlmaLinux": uv.RpmVersion,
    "Red Hat": uv.RpmVersion,
    "PyPI": uv.PypiVersion,
    "npm": uv.SemverVersion,
    "Go": uv.GolangVersion,
    "Maven": uv.MavenVersion,
}
assert set(ECOSYSTEM_CLASS) == set(ECOSYSTEMS), "agent/vulndb/ecosystems.py and versions disagree"


def base(ecosystem: str) -> str:
    return ecosystem.split(":", 1)[0]


def known(ecosystem: str) -> bool:
    return base(ecosystem) in ECOSYSTEM_CLASS


def _clean(ecosystem_base: str, range_type: str, text: str) -> str:
    text = text.strip()
    if ecosystem_base == "Go" or range_type == "SEMVER":
        if text.startswith("go") and text[2:3].isdigit():      # the toolchain: go1.22.1
            text = text[2:]
        if text[:1] == "v":
            text = text[1:]
    return text


@lru_cache(maxsize=65536)
def parse(ecosystem: str, range_type: str, text: str):
    """A comparable version. range_type "SEMVER" orders by semver whatever the ecosystem;
    "ECOSYSTEM" (and the explicit versions list, given as "ECOSYSTEM") by the ecosystem's
    own rules. Raises InvalidVersion (or KeyError for an ecosystem it does not know)."""
    b = base(ecosystem)
    cls = uv.SemverVersion if range_type == "SEMVER" else ECOSYSTEM_CLASS[b]
    text = _clean(b, range_type, text)
    if not text:
        raise InvalidVersion("empty version")
    try:
        return cls(text)
    except InvalidVersion:
        raise
    except Exception as e:            # univers raises what its parsers raise
        raise InvalidVersion(f"{text!r}: {e}") from None


def compare(a, b) -> int:
    """-1, 0 or 1 as a orders before, with or after b (see the module's note)."""
    if a < b:
        return -1
    if a > b:
        return 1
    return 0


def check(ecosystem: str, range_type: str, text: str) -> str | None:
    """None when the version orders in that ecosystem (or the ecosystem is not one Mamori
    matches, so there is nothing to check it against), else why not."""
    if not known(ecosystem) and range_type != "SEMVER":
        return None
    try:
        parse(ecosystem, range_type, text)
        return None
    except InvalidVersion as e:
        return f"not a valid {base(ecosystem) if range_type != 'SEMVER' else 'semver'} " \
               f"version ({e})"
