"""Per-ecosystem ordering through univers, including the traps plain text comparison falls
into, and the <=/>= defect the matcher avoids."""
import pytest

from agent.vulndb import versions
from agent.vulndb.osv import normalise_name

ORDERED = [  # (ecosystem, range type, lower, higher)
    ("Debian:12", "ECOSYSTEM", "3.0.11-1~deb12u2", "3.0.11-1"),          # ~ sorts first
    ("Debian:12", "ECOSYSTEM", "9.9p1-1", "1:9.2p1-2+deb12u3"),          # epoch wins
    ("Debian:12", "ECOSYSTEM", "3.0.11-1~deb12u1", "3.0.11-1~deb12u2"),
    ("Ubuntu:22.04:LTS", "ECOSYSTEM", "3.0.2-0ubuntu1.9", "3.0.2-0ubuntu1.10"),
    ("Alpine:v3.19", "ECOSYSTEM", "1.36.1-r2", "1.36.1-r16"),            # numeric -rN
    ("Alpine:v3.19", "ECOSYSTEM", "1.2.3_rc1-r0", "1.2.3-r0"),
    ("Rocky Linux:9", "ECOSYSTEM", "8.7p1-38.el9", "8.7p1-38.el9_4.1"),
    ("AlmaLinux:9", "ECOSYSTEM", "3.0.7-27.el9", "1:3.0.7-24.el9"),       # epoch
    ("PyPI", "ECOSYSTEM", "0.18.0b1", "0.18.0"),
    ("PyPI", "ECOSYSTEM", "2.9.0", "2.10.0"),
    ("npm", "SEMVER", "4.17.9", "4.17.21"),
    ("npm", "SEMVER", "1.0.0-rc.1", "1.0.0"),
    ("Go", "SEMVER", "1.22.0-0", "1.22.0"),
    ("Go", "SEMVER", "go1.21.9", "v1.22.1"),
    ("Maven", "ECOSYSTEM", "2.0-beta9", "2.0"),
    ("Maven", "ECOSYSTEM", "2.12.2", "2.13.0"),
]


@pytest.mark.parametrize("eco,rtype,lo,hi", ORDERED)
def test_order(eco, rtype, lo, hi):
    a, b = versions.parse(eco, rtype, lo), versions.parse(eco, rtype, hi)
    assert versions.compare(a, b) == -1
    assert versions.compare(b, a) == 1
    assert versions.compare(a, versions.parse(eco, rtype, lo)) == 0


def test_univers_ge_is_textual_for_alpine():
    """Why versions.compare exists: if this starts failing, univers fixed it."""
    a = versions.parse("Alpine:v3.19", "ECOSYSTEM", "1.36.1-r2")
    b = versions.parse("Alpine:v3.19", "ECOSYSTEM", "1.36.1-r16")
    assert a < b and a >= b


@pytest.mark.parametrize("eco,text", [("Debian:12", "not a version!"), ("PyPI", "xx yy"),
                                      ("npm", "abc"), ("Alpine:v3.19", "1.0-r")])
def test_invalid_is_reported(eco, text):
    why = versions.check(eco, "SEMVER" if eco == "npm" else "ECOSYSTEM", text)
    assert why and why.startswith("not a valid")


def test_unknown_ecosystem_is_not_checked():
    assert versions.check("crates.io", "ECOSYSTEM", "whatever") is None


@pytest.mark.parametrize("eco,name,key", [
    ("PyPI", "Zope.Interface", "zope-interface"), ("PyPI", "charset_normalizer",
                                                   "charset-normalizer"),
    ("Maven", "Org.Apache:Foo", "org.apache:foo"), ("npm", "@Scope/Name", "@Scope/Name"),
    ("Go", "github.com/Foo/bar", "github.com/Foo/bar")])
def test_names(eco, name, key):
    assert normalise_name(eco, name) == key
