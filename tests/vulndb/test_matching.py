"""Acceptance: the fixture database of real advisories (advisories.py) matches exactly the
installed versions it should and none it should not."""
from __future__ import annotations

import pytest

from advisories import ALL, write_zip
from agent.inventory.package import OSRelease, Package
from agent.vulndb import importer
from agent.vulndb.match import match
from agent.vulndb.store import Store

BOOKWORM = OSRelease("debian", "12", "bookworm")
BULLSEYE = OSRelease("debian", "11", "bullseye")
JAMMY = OSRelease("ubuntu", "22.04", "jammy")
ALPINE319 = OSRelease("alpine", "3.19.1")
ALPINE318 = OSRelease("alpine", "3.18.6")
ROCKY9 = OSRelease("rocky", "9.4")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("db")
    res = importer.install(str(d / "osv.sqlite3"),
                           [("fixture.zip", write_zip(str(d / "fixture.zip"), ALL))])
    assert (res.records, res.withdrawn, res.skipped) == (len(ALL) - 1, 1, 0)
    s = Store(str(d / "osv.sqlite3"))
    yield s
    s.close()


def deb(name, version, src="", srcver=""):
    return Package("deb", name, version, src or name, srcver or version, "amd64",
                   f"pkg:deb/debian/{name}@{version}", "/var/lib/dpkg/status")


def found(store, os_r, pkgs, image="img"):
    r = match(store, os_r, pkgs, image)
    return {(f.package, f.installed, f.id, f.fixed) for f in r.findings}, r


def test_debian_source_package_tilde_and_fixed_equal(store):
    pkgs = [deb("libssl3", "3.0.11-1~deb12u1", "openssl"),       # binary != source
            deb("openssl", "3.0.11-1~deb12u2"),                   # == fixed: not vulnerable
            deb("libssl3", "3.0.15-1~deb12u1", "openssl"),        # newer: not
            deb("libssl3", "3.0.11-1", "openssl")]                # 3.0.11-1 > ~deb12u2: not
    got, r = found(store, BOOKWORM, pkgs)
    assert got == {("libssl3", "3.0.11-1~deb12u1", "DSA-5532-1", "3.0.11-1~deb12u2")}
    assert r.problems == ()
    f = r.findings[0]
    assert (f.aliases, f.ecosystem, f.matched_name, f.matched_version) == \
        (("CVE-2023-5363",), "Debian:12", "openssl", "3.0.11-1~deb12u1")
    assert (f.severity, f.cvss_score, f.severity_source) == ("unknown", None, "")
    assert f.summary == "openssl - security update"
    assert f.references == ("https://www.debian.org/security/2023/dsa-5532",)
    assert (f.image, f.location, f.purl) == ("img", "/var/lib/dpkg/status",
                                             "pkg:deb/debian/libssl3@3.0.11-1~deb12u1")


def test_debian_binary_name_alone_is_not_the_source(store):
    """libssl3 whose status has no Source: line would be keyed by its own name: no match
    (the inventory must give the source; matching by binary name would guess)."""
    got, _ = found(store, BOOKWORM, [Package("deb", "libssl3", "3.0.11-1~deb12u1")])
    assert got == set()


def test_debian_epoch(store):
    pkgs = [deb("openssh-client", "1:9.2p1-2+deb12u2", "openssh"),
            deb("openssh-server", "1:9.2p1-2+deb12u3", "openssh"),   # == fixed
            # without the epoch 9.9 is older than 1:9.2: vulnerable
            deb("openssh-sftp-server", "9.9p1-1", "openssh")]
    got, r = found(store, BOOKWORM, pkgs)
    assert got == {("openssh-client", "1:9.2p1-2+deb12u2", "DSA-5724-1", "1:9.2p1-2+deb12u3"),
                   ("openssh-sftp-server", "9.9p1-1", "DSA-5724-1", "1:9.2p1-2+deb12u3")}
    assert {f.aliases for f in r.findings} == {("CVE-2024-6387",)}


def test_debian_source_version_is_compared_not_the_binary_version(store):
    """A binNMU binary (+b1) of a vulnerable source is vulnerable by its source version."""
    got, _ = found(store, BOOKWORM, [deb("libssl3", "3.0.11-1~deb12u2+b1", "openssl",
                                         "3.0.11-1~deb12u1")])
    assert got == {("libssl3", "3.0.11-1~deb12u2+b1", "DSA-5532-1", "3.0.11-1~deb12u2")}


def test_debian_release_is_scoped(store):
    got, r = found(store, BULLSEYE, [deb("libssl1.1", "1.1.1n-0+deb11u4", "openssl")])
    assert got == set() and r.problems == ()


def test_ubuntu_lts_ecosystem_and_cvss(store):
    pkgs = [deb("libssl3", "3.0.2-0ubuntu1.8", "openssl"),
            deb("openssl", "3.0.2-0ubuntu1.9"), deb("libssl3", "3.0.2-0ubuntu1.10", "openssl")]
    got, r = found(store, JAMMY, pkgs)
    assert got == {("libssl3", "3.0.2-0ubuntu1.8", "UBUNTU-CVE-2023-0464", "3.0.2-0ubuntu1.9")}
    f = r.findings[0]
    assert (f.ecosystem, f.aliases) == ("Ubuntu:22.04:LTS", ("CVE-2023-0464",))
    assert (f.severity, f.cvss_score, f.severity_source) == ("high", 7.5, "CVSS_V3")


def apk(name, version, origin):
    return Package("apk", name, version, origin, version, "x86_64",
                   f"pkg:apk/alpine/{name}@{version}", "/lib/apk/db/installed")


def test_alpine_by_origin_and_release(store):
    pkgs = [apk("busybox-binsh", "1.36.1-r15", "busybox"),   # origin busybox: vulnerable
            apk("busybox", "1.36.1-r16", "busybox"),          # == fixed
            apk("ssl_client", "1.36.1-r2", "busybox"),        # r2 < r16 (numeric, not text)
            apk("busybox-extras", "1.36.1-r29", "busybox")]
    got, r = found(store, ALPINE319, pkgs)
    assert got == {("busybox-binsh", "1.36.1-r15", "ALPINE-CVE-2023-42366", "1.36.1-r16"),
                   ("ssl_client", "1.36.1-r2", "ALPINE-CVE-2023-42366", "1.36.1-r16")}
    f = r.findings[0]
    assert (f.ecosystem, f.matched_name, f.aliases) == ("Alpine:v3.19", "busybox",
                                                        ("CVE-2023-42366",))
    assert (f.severity, f.cvss_score) == ("medium", 5.5)
    got, _ = found(store, ALPINE318, pkgs)
    assert got == set()


def test_rocky_by_source_rpm(store):
    def rpm(name, version):
        return Package("rpm", name, version, "openssh", version.split(":")[-1], "x86_64",
                       f"pkg:rpm/rocky/{name}@{version}", "/var/lib/rpm/rpmdb.sqlite")
    pkgs = [rpm("openssh-server", "8.7p1-38.el9"), rpm("openssh-clients", "8.7p1-38.el9_4.1"),
            rpm("openssh", "8.7p1-43.el9")]
    got, _ = found(store, ROCKY9, pkgs)
    assert got == {("openssh-server", "8.7p1-38.el9", "RLSA-2024:4312", "8.7p1-38.el9_4.1")}


def lang(kind, name, version, purl=""):
    return Package(kind, name, version, purl=purl, location="/app")


def test_pypi_pep503_name_introduced_fixed_last_affected_withdrawn(store):
    pkgs = [lang("pypi", "Requests", "2.30.0"),      # PEP 503: Requests == requests
            lang("pypi", "requests", "2.31.0"),      # == fixed
            lang("pypi", "requests", "2.2.1"),       # before introduced 2.3.0
            lang("pypi", "ecdsa", "0.18.0"),         # == last_affected: vulnerable, no fix
            lang("pypi", "ecdsa", "0.18.0b1"),       # pre-release of it: vulnerable
            lang("pypi", "ecdsa", "0.19.0")]         # after last_affected
    got, r = found(store, OSRelease(), pkgs)
    assert got == {("Requests", "2.30.0", "GHSA-j8r2-6x86-q33q", "2.31.0"),
                   ("ecdsa", "0.18.0", "GHSA-wj6h-64fc-37mp", ""),
                   ("ecdsa", "0.18.0b1", "GHSA-wj6h-64fc-37mp", "")}
    assert "MAMORI-TEST-WITHDRAWN" not in {f.id for f in r.findings}
    req = next(f for f in r.findings if f.id == "GHSA-j8r2-6x86-q33q")
    assert req.aliases == ("CVE-2023-32681", "PYSEC-2023-74")
    assert req.cves == ("CVE-2023-32681",)
    assert (req.severity, req.cvss_score, req.cvss_vector) == (
        "medium", 6.1, "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N")


def test_npm_semver(store):
    pkgs = [lang("npm", "lodash", "4.17.20"), lang("npm", "lodash", "4.17.21"),
            lang("npm", "underscore", "1.13.0")]
    got, r = found(store, OSRelease(), pkgs)
    assert got == {("lodash", "4.17.20", "GHSA-35jh-r3h4-6jhm", "4.17.21")}
    assert (r.findings[0].severity, r.findings[0].cvss_score) == ("high", 7.2)


def test_go_stdlib_and_module(store):
    pkgs = [lang("golang", "stdlib", "go1.22.1"), lang("golang", "stdlib", "go1.21.9"),
            lang("golang", "stdlib", "go1.21.8"), lang("golang", "stdlib", "1.22.2"),
            lang("golang", "golang.org/x/net", "v0.22.0"),
            lang("golang", "net", "v0.23.0", "pkg:golang/golang.org/x/net@v0.23.0")]
    got, r = found(store, OSRelease(), pkgs)
    assert got == {("stdlib", "go1.22.1", "GO-2024-2687", "1.22.2"),
                   ("stdlib", "go1.21.8", "GO-2024-2687", "1.21.9"),
                   ("golang.org/x/net", "v0.22.0", "GO-2024-2687", "0.23.0")}
    assert {f.severity for f in r.findings} == {"unknown"}      # Go gives no severity
    assert r.findings[0].aliases == ("CVE-2023-45288", "GHSA-4v7x-pqxf-cx7m")


def test_go_module_by_purl_path(store):
    got, _ = found(store, OSRelease(), [lang("golang", "net", "v0.17.0",
                                             "pkg:golang/golang.org/x/net@v0.17.0")])
    assert got == {("net", "v0.17.0", "GO-2024-2687", "0.23.0")}


def test_maven_group_artifact_and_several_ranges(store):
    pkgs = [lang("maven", "org.apache.logging.log4j:log4j-core", "2.14.1"),
            lang("maven", "log4j-core", "2.12.1",
                 "pkg:maven/org.apache.logging.log4j/log4j-core@2.12.1"),
            lang("maven", "org.apache.logging.log4j:log4j-core", "2.12.2"),
            lang("maven", "org.apache.logging.log4j:log4j-core", "2.17.1"),
            lang("maven", "org.apache.logging.log4j:log4j-core", "2.0-beta8"),
            lang("maven", "org.apache.logging.log4j:log4j-api", "2.14.1")]
    got, r = found(store, OSRelease(), pkgs)
    assert got == {("org.apache.logging.log4j:log4j-core", "2.14.1", "GHSA-jfh8-c2jp-5v3q",
                    "2.15.0"),
                   ("log4j-core", "2.12.1", "GHSA-jfh8-c2jp-5v3q", "2.12.2")}
    assert {(f.severity, f.cvss_score) for f in r.findings} == {("critical", 10.0)}


def test_unknown_distribution_and_bad_version_are_reported(store):
    r = match(store, OSRelease("gentoo", "2.15"), [deb("openssl", "3.0.0")], "img")
    assert r.findings == ()
    assert r.problems == ("deb packages on gentoo 2.15: no vulnerability data is matched "
                          "for this distribution and release",)
    r = match(store, OSRelease(), [lang("pypi", "requests", "not a version!")], "img")
    assert r.findings == ()
    assert len(r.problems) == 1 and r.problems[0].startswith(
        "pypi requests 'not a version!': not comparable in PyPI")


def test_explicit_versions_list(tmp_path):
    rec = {"id": "PYSEC-TEST-VERSIONS", "modified": "2024-01-01T00:00:00Z",
           "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"},
                         "versions": ["2.0.0", "2.0.1"]}]}
    importer.install(str(tmp_path / "db"), [("x", write_zip(str(tmp_path / "x.zip"), [rec]))])
    s = Store(str(tmp_path / "db"))
    got, _ = found(s, OSRelease(), [lang("pypi", "requests", "2.0.1"),
                                    lang("pypi", "requests", "2.0.2")])
    s.close()
    assert got == {("requests", "2.0.1", "PYSEC-TEST-VERSIONS", "")}


def test_distro_urgency_when_no_cvss(tmp_path):
    """DSA-5532-1's facts with an ecosystem_specific urgency added by the test (the field
    Debian's tracker data uses): the finding's severity is the distro's."""
    from advisories import DSA_5532_1
    rec = dict(DSA_5532_1, affected=[dict(DSA_5532_1["affected"][0],
                                          ecosystem_specific={"urgency": "high"})])
    importer.install(str(tmp_path / "db"), [("x", write_zip(str(tmp_path / "x.zip"), [rec]))])
    s = Store(str(tmp_path / "db"))
    r = match(s, BOOKWORM, [deb("libssl3", "3.0.11-1~deb12u1", "openssl")], "img")
    s.close()
    f, = r.findings
    assert (f.severity, f.cvss_score, f.severity_source, f.distro_severity) == \
        ("high", None, "urgency", "high")
