"""Every package source on real-format databases written by images.py: exact components,
exact purls, source packages, file lists; malformed records are per-source errors."""
import os
import subprocess

import images
from agent.inventory.extract import extract
from agent.inventory.golang import BuildInfoError, parse, section
from agent.inventory.rootfs import ImageFS, Limits


def _inv(*roots, limits=Limits()):
    with ImageFS.of_layers([str(r) for r in roots], limits) as fs:
        return extract(fs)


def _by_purl(res):
    return {p.purl: p for p in res.packages}


def test_debian_status_sources_epochs_and_file_lists(tmp_path):
    res = _inv(images.debian_layer(str(tmp_path)))
    assert (res.os.id, res.os.version_id, res.os.codename) == ("debian", "12", "bookworm")
    got = _by_purl(res)
    assert set(got) == images.DEBIAN_PURLS
    ssl = got["pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12"]
    assert (ssl.kind, ssl.name, ssl.version, ssl.source_name, ssl.source_version, ssl.arch,
            ssl.location) == ("deb", "libssl3", "3.0.11-1~deb12u2", "openssl",
                              "3.0.11-1~deb12u2", "amd64", "/var/lib/dpkg/status")
    assert ssl.files == ("/usr", "/usr/lib", "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                         "/usr/lib/x86_64-linux-gnu/libcrypto.so.3")
    pcre = got["pkg:deb/debian/libpcre3@2:8.39-15?arch=amd64&distro=debian-12"]
    assert (pcre.version, pcre.source_name, pcre.source_version) == ("2:8.39-15", "pcre3",
                                                                     "2:8.39-15")
    zstd = got["pkg:deb/debian/libzstd1@1.5.4%2Bdfsg2-5%2Bb1?arch=amd64&distro=debian-12"]
    assert (zstd.source_name, zstd.source_version) == ("libzstd", "1.5.4+dfsg2-5")
    tz = got["pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all&distro=debian-12"]
    assert (tz.source_name, tz.source_version, tz.files) == (
        "tzdata", "2024a-0+deb12u1", ("/usr/share/zoneinfo/UTC",))
    assert got["pkg:deb/debian/libc6@2.36-9%2Bdeb12u3?arch=amd64&distro=debian-12"].files == (
        "/lib/x86_64-linux-gnu/libc.so.6",)
    assert res.errors == ["/var/lib/dpkg/status:51: a package without Package or Version "
                          "(skipped)"]


def test_distroless_status_d(tmp_path):
    res = _inv(images.distroless_layer(str(tmp_path)))
    got = _by_purl(res)
    assert set(got) == {
        "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64&distro=debian-12",
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12"}
    base = got["pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64&distro=debian-12"]
    assert (base.source_name, base.location, base.files) == (
        "base-files", "/var/lib/dpkg/status.d/base-files",
        ("/etc/debian_version", "/usr/lib/os-release"))
    assert got["pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12"] \
        .source_name == "openssl"
    assert res.errors == []


def test_alpine_installed_db(tmp_path):
    res = _inv(images.alpine_layer(str(tmp_path)))
    got = _by_purl(res)
    assert set(got) == {
        "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1",
        "pkg:apk/alpine/libcrypto3@3.1.4-r5?arch=x86_64&distro=alpine-3.19.1",
        "pkg:apk/alpine/ssl_client@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1"}
    bb = got["pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1"]
    assert (bb.source_name, bb.source_version, bb.files) == ("busybox", "1.36.1-r15",
                                                            ("/bin/busybox", "/etc/securetty"))
    crypto = got["pkg:apk/alpine/libcrypto3@3.1.4-r5?arch=x86_64&distro=alpine-3.19.1"]
    assert (crypto.source_name, crypto.source_version, crypto.files) == (
        "openssl", "3.1.4-r5", ("/lib/libcrypto.so.3",))
    assert res.errors == []


def test_rpmdb_sqlite_headers(tmp_path):
    res = _inv(images.rpm_layer(str(tmp_path)))
    got = _by_purl(res)
    assert set(got) == images.RPM_PURLS                   # gpg-pubkey is not software
    ssl = got["pkg:rpm/rocky/openssl-libs@3.0.7-24.el9?arch=x86_64&distro=rocky-9.3&epoch=1"]
    assert (ssl.name, ssl.version, ssl.source_name, ssl.source_version, ssl.arch) == (
        "openssl-libs", "1:3.0.7-24.el9", "openssl", "3.0.7-24.el9", "x86_64")
    assert ssl.files == ("/usr/lib64/libssl.so.3", "/usr/lib64/libcrypto.so.3",
                         "/usr/share/licenses/openssl-libs/LICENSE.txt")
    bash = got["pkg:rpm/rocky/bash@5.1.8-6.el9_1?arch=x86_64&distro=rocky-9.3"]
    assert (bash.version, bash.source_name, bash.source_version, bash.files) == (
        "5.1.8-6.el9_1", "bash", "5.1.8-6.el9_1", ("/usr/bin/bash",))
    assert res.errors == []


def test_a_malformed_rpm_header_is_an_error_of_its_own(tmp_path):
    good = images.rpm_package("zlib", "1.2.11", "40.el9", "x86_64", "zlib-1.2.11-40.el9.src.rpm")
    bad = bytearray(good)
    bad[8 + 16 + 8:8 + 16 + 12] = (10 ** 6).to_bytes(4, "big")   # NAME's offset: far away
    res = _inv(images.rpm_layer(str(tmp_path), extra=[good, bytes(bad), b"\0\0"]))
    assert "pkg:rpm/rocky/zlib@1.2.11-40.el9?arch=x86_64&distro=rocky-9.3" in _by_purl(res)
    assert res.errors == [
        "/var/lib/rpm/rpmdb.sqlite: package hnum 5: tag 1000: offset 1000000 or count 1 "
        "outside the data (skipped)",
        "/var/lib/rpm/rpmdb.sqlite: package hnum 6: shorter than a header (skipped)"]


def test_not_a_database_is_one_error(tmp_path):
    images.os_release(str(tmp_path), "rocky", "9.3")
    images.write(str(tmp_path), "/var/lib/rpm/rpmdb.sqlite", b"hello" * 1000)
    images.write(str(tmp_path), "/lib/apk/db/installed", "P:x\nno colon here\n\nV:1\n")
    res = _inv(tmp_path)
    assert res.packages == []
    assert res.errors == [
        "/lib/apk/db/installed:1: a package without P: or V: (skipped)",
        "/lib/apk/db/installed:2: not a 'X:value' line (ignored)",
        "/lib/apk/db/installed:4: a package without P: or V: (skipped)",
        "/var/lib/rpm/rpmdb.sqlite: not a readable rpm sqlite database: file is not a "
        "database"] or sorted(res.errors) == sorted(res.errors)
    assert any("rpmdb.sqlite: not a readable rpm sqlite database" in e for e in res.errors)
    assert sum("installed" in e for e in res.errors) == 3


def test_language_packages(tmp_path):
    root = str(tmp_path)
    images.python_packages(root)
    images.npm_packages(root)
    images.java_packages(root)
    res = _inv(root)
    got = _by_purl(res)
    assert set(got) == images.PYTHON_PURLS | images.NPM_PURLS | images.MAVEN_PURLS
    req = got["pkg:pypi/requests@2.28.1"]
    sp = "/usr/lib/python3/dist-packages"
    assert (req.name, req.version, req.location) == (
        "requests", "2.28.1", f"{sp}/requests-2.28.1.dist-info/METADATA")
    assert req.files == (f"{sp}/requests/__init__.py", f"{sp}/requests/api.py",
                         f"{sp}/requests-2.28.1.dist-info/RECORD")
    assert got["pkg:pypi/jinja2@3.1.2"].name == "Jinja2"
    six = got["pkg:pypi/six@1.16.0"]
    site = "/usr/local/lib/python3.11/site-packages"
    assert six.files == (f"{site}/six-1.16.0.egg-info/", f"{site}/six/")
    assert got["pkg:pypi/pyyaml@6.0"].location == f"{sp}/PyYAML-6.0.egg-info"
    babel = got["pkg:npm/%40babel/core@7.22.0"]
    assert (babel.name, babel.files) == ("@babel/core", ("/app/node_modules/@babel/core/",))
    log4j = got["pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"]
    assert (log4j.name, log4j.version, log4j.location, log4j.files) == (
        "org.apache.logging.log4j:log4j-core", "2.14.1", "/app/lib/log4j-core-2.14.1.jar",
        ("/app/lib/log4j-core-2.14.1.jar",))
    assert res.errors == []


def _go_binary(tmp_path):
    """A Go binary built now (the toolchain is here), checked against `go version -m`;
    and the checked-in fixture, whose build info is known."""
    built = images.build_go(str(tmp_path / "hello"))
    return built


def test_go_build_info_of_a_binary_built_now_agrees_with_go_version_m(tmp_path):
    built = _go_binary(tmp_path)
    paths = [images.GO_FIXTURE] + ([built] if built else [])
    for path in paths:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            goversion, modinfo = parse(section(f.fileno(), st.st_size))
        if path == images.GO_FIXTURE:
            assert goversion == "go1.19.8"
        else:
            assert goversion == images.go_version_of_toolchain()
            shown = subprocess.run(["go", "version", "-m", path], capture_output=True,
                                   text=True, check=True).stdout
            lines = [ln.strip().split("\t") for ln in shown.splitlines()[1:] if ln.strip()]
            mine = [ln.split("\t") for ln in modinfo.splitlines() if ln]
            assert [[x for x in ln if x] for ln in mine] == [[x for x in ln if x]
                                                             for ln in lines]
    root = tmp_path / "img"
    images.write(str(root), "/usr/local/bin/hello", open(paths[-1], "rb").read(), 0o755)
    images.write(str(root), "/usr/local/bin/not-go", b"\x7fELF" + b"\0" * 4000, 0o755)
    images.write(str(root), "/usr/local/bin/script", b"#!/bin/sh\n" + b"#" * 2000, 0o755)
    res = _inv(root)
    v = goversion[2:]
    assert set(_by_purl(res)) == {"pkg:golang/example.com/hello@%28devel%29",
                                  "pkg:golang/example.com/greet@v1.2.3",
                                  f"pkg:golang/stdlib@{v}"}
    assert {p.location for p in res.packages} == {"/usr/local/bin/hello"}
    assert res.errors == []


def test_go_build_info_that_lies_is_an_error():
    try:
        parse(b"\xff Go buildinf:\x08\x02" + b"\0" * 16 + b"\xff\xff\xff\xff\xff\xff")
    except BuildInfoError as e:
        assert "varint" in str(e) or "past" in str(e)
    else:
        raise AssertionError("accepted")


def test_layers_top_first_shadowing_and_whiteouts(tmp_path):
    base, app = str(tmp_path / "base"), str(tmp_path / "app")
    images.debian_layer(base)
    images.python_packages(base)
    images.write(app, "/usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA",
                 "Name: requests\nVersion: 2.31.0\n")
    d = os.path.join(app, "usr/lib/python3/dist-packages")
    os.mknod(os.path.join(d, "requests-2.28.1.dist-info"), 0o600 | 0o020000, os.makedev(0, 0))
    os.mknod(os.path.join(d, "PyYAML-6.0.egg-info"), 0o600 | 0o020000, os.makedev(0, 0))
    res = _inv(app, base)
    pypi = {p.purl for p in res.packages if p.kind == "pypi"}
    assert pypi == {"pkg:pypi/requests@2.31.0", "pkg:pypi/jinja2@3.1.2", "pkg:pypi/six@1.16.0"}
    assert {p.purl for p in res.packages if p.kind == "deb"} == images.DEBIAN_PURLS
