"""Image roots for the inventory tests, written in the real on-disk formats: dpkg status and
info/*.list, distroless status.d, Alpine's installed db, an rpmdb.sqlite whose Packages
blobs are RPM headers written here (rpm's header format: index entries, then the data
store), Python dist-info/egg-info, node_modules, a jar and a Go binary."""
from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import subprocess
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
GO_FIXTURE = os.path.join(HERE, "fixtures", "gohello")   # built by build_go(), checked in


def write(root: str, path: str, data, mode: int = 0o644) -> str:
    """Write a file inside root. Test images have no symbolic links on the way (the ones a
    test plants are made last, with os.symlink), so joining is safe here."""
    full = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.chmod(full, mode)
    return full


def os_release(root: str, id_: str, version_id: str, codename: str = "", pretty: str = ""):
    text = f'PRETTY_NAME="{pretty or id_}"\nNAME="{id_}"\nID={id_}\nVERSION_ID="{version_id}"\n'
    if codename:
        text += f"VERSION_CODENAME={codename}\n"
    write(root, "/usr/lib/os-release", text)
    os.makedirs(os.path.join(root, "etc"), exist_ok=True)
    os.symlink("../usr/lib/os-release", os.path.join(root, "etc/os-release"))


# -- Debian --------------------------------------------------------------------------------
DPKG_STATUS = """\
Package: libssl3
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 6175
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Architecture: amd64
Multi-Arch: same
Source: openssl
Version: 3.0.11-1~deb12u2
Depends: libc6 (>= 2.34)
Description: Secure Sockets Layer toolkit - shared libraries
 This package is part of the OpenSSL project's implementation of the SSL and TLS
 cryptographic protocols for secure communication over the Internet.

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u3
Description: GNU C Library: Shared libraries

Package: libpcre3
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: pcre3
Version: 2:8.39-15
Description: Old Perl 5 Compatible Regular Expression Library - runtime files

Package: libzstd1
Status: install ok installed
Architecture: amd64
Source: libzstd (1.5.4+dfsg2-5)
Version: 1.5.4+dfsg2-5+b1
Description: fast lossless compression algorithm

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1
Description: time zone and daylight-saving time data

Package: nano
Status: deinstall ok config-files
Architecture: amd64
Version: 7.2-1
Description: removed, its configuration kept

Package: broken-record
Status: install ok installed
Architecture: amd64
Description: no Version field
"""

DEBIAN_PURLS = {
    "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12",
    "pkg:deb/debian/libc6@2.36-9%2Bdeb12u3?arch=amd64&distro=debian-12",
    "pkg:deb/debian/libpcre3@2:8.39-15?arch=amd64&distro=debian-12",
    "pkg:deb/debian/libzstd1@1.5.4%2Bdfsg2-5%2Bb1?arch=amd64&distro=debian-12",
    "pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all&distro=debian-12",
}


def debian_layer(root: str) -> str:
    os_release(root, "debian", "12", "bookworm", "Debian GNU/Linux 12 (bookworm)")
    write(root, "/var/lib/dpkg/status", DPKG_STATUS)
    write(root, "/var/lib/dpkg/info/libssl3:amd64.list",
          "/.\n/usr\n/usr/lib\n/usr/lib/x86_64-linux-gnu/libssl.so.3\n"
          "/usr/lib/x86_64-linux-gnu/libcrypto.so.3\n")
    write(root, "/var/lib/dpkg/info/libc6:amd64.list",
          "/.\n/lib/x86_64-linux-gnu/libc.so.6\n")
    write(root, "/var/lib/dpkg/info/tzdata.list", "/.\n/usr/share/zoneinfo/UTC\n")
    return root


def distroless_layer(root: str) -> str:
    os_release(root, "debian", "12", "bookworm")
    write(root, "/var/lib/dpkg/status.d/base-files",
          "Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n"
          "Maintainer: Santiago Vila <sanvila@debian.org>\nDescription: base system\n")
    write(root, "/var/lib/dpkg/status.d/base-files.md5sums",
          "d41d8cd98f00b204e9800998ecf8427e  etc/debian_version\n"
          "0123456789abcdef0123456789abcdef  usr/lib/os-release\n")
    write(root, "/var/lib/dpkg/status.d/libssl3",
          "Package: libssl3\nSource: openssl\nVersion: 3.0.11-1~deb12u2\n"
          "Architecture: amd64\nDescription: shared libraries\n")
    return root


# -- Alpine --------------------------------------------------------------------------------
APK_INSTALLED = """\
C:Q1mhrsDVTLNzjQBKbAjuhxAz4SsMo=
P:busybox
V:1.36.1-r15
A:x86_64
S:509034
I:946176
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1700000000
c:a0d4db8b
D:so:libc.musl-x86_64.so.1
F:bin
R:busybox
Z:Q1Z8B0l5LeEeGI6V1rWq3b3a7Glvs=
F:etc
R:securetty

P:libcrypto3
V:3.1.4-r5
A:x86_64
o:openssl
F:lib
R:libcrypto.so.3

P:ssl_client
V:1.36.1-r15
A:x86_64
o:busybox
F:usr/bin
R:ssl_client

"""


def alpine_layer(root: str) -> str:
    os_release(root, "alpine", "3.19.1", pretty="Alpine Linux v3.19")
    write(root, "/lib/apk/db/installed", APK_INSTALLED)
    return root


# -- RPM -----------------------------------------------------------------------------------
RPM_NAME, RPM_VERSION, RPM_RELEASE, RPM_EPOCH, RPM_ARCH, RPM_SOURCERPM = 1000, 1001, 1002, \
    1003, 1022, 1044
RPM_DIRINDEXES, RPM_BASENAMES, RPM_DIRNAMES = 1116, 1117, 1118
RPM_HEADERIMMUTABLE = 63
_ALIGN = {4: 4, 3: 2, 5: 8}


def rpm_header(tags: list[tuple[int, int, object]]) -> bytes:
    """An RPM header blob as rpm stores it in rpmdb.sqlite: il, dl (big-endian int32),
    il index entries (tag, type, offset, count), then the data store. tags: (tag, type,
    value) with type 4 INT32 (list of ints), 6 STRING (str), 8 STRING_ARRAY (list of str).
    A region tag (HEADERIMMUTABLE, BIN) comes first like in real headers, its 16-byte
    trailer at the end of the data store."""
    store = bytearray()
    entries = []
    for tag, typ, value in tags:
        while len(store) % _ALIGN.get(typ, 1):
            store += b"\0"
        off = len(store)
        if typ == 4:
            store += struct.pack(f">{len(value)}i", *value)
            count = len(value)
        elif typ == 6:
            store += value.encode() + b"\0"
            count = 1
        elif typ == 8:
            for s in value:
                store += s.encode() + b"\0"
            count = len(value)
        else:
            raise ValueError(typ)
        entries.append((tag, typ, off, count))
    il = len(entries) + 1
    trailer_off = len(store)
    store += struct.pack(">iiii", RPM_HEADERIMMUTABLE, 7, -16 * il, 16)
    index = struct.pack(">iiii", RPM_HEADERIMMUTABLE, 7, trailer_off, 16)
    index += b"".join(struct.pack(">iiii", *e) for e in entries)
    return struct.pack(">ii", il, len(store)) + index + bytes(store)


def rpm_package(name, version, release, arch, sourcerpm, epoch=None, files=()) -> bytes:
    tags = [(RPM_NAME, 6, name), (RPM_VERSION, 6, version), (RPM_RELEASE, 6, release)]
    if epoch is not None:
        tags.append((RPM_EPOCH, 4, [epoch]))
    tags += [(RPM_ARCH, 6, arch)]
    if sourcerpm:
        tags.append((RPM_SOURCERPM, 6, sourcerpm))
    if files:
        dirs = sorted({os.path.dirname(f) + "/" for f in files})
        tags += [(RPM_DIRINDEXES, 4, [dirs.index(os.path.dirname(f) + "/") for f in files]),
                 (RPM_BASENAMES, 8, [os.path.basename(f) for f in files]),
                 (RPM_DIRNAMES, 8, dirs)]
    return rpm_header(tags)


def rpmdb(path: str, blobs: list[bytes]) -> None:
    """rpmdb.sqlite in rpm 4.16's schema (lib/backend/sqlite.c): Packages with the header
    blobs, and an index table like the ones rpm keeps beside it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE IF NOT EXISTS 'Packages' (hnum INTEGER PRIMARY KEY "
                "AUTOINCREMENT, blob BLOB NOT NULL)")
    con.execute("CREATE TABLE IF NOT EXISTS 'Name' (key 'TEXT' NOT NULL, hnum INTEGER NOT "
                "NULL, idx INTEGER NOT NULL, FOREIGN KEY (hnum) REFERENCES 'Packages'(hnum))")
    for b in blobs:
        cur = con.execute("INSERT INTO Packages (blob) VALUES (?)", (b,))
        con.execute("INSERT INTO Name VALUES (?, ?, 0)", ("x", cur.lastrowid))
    con.commit()
    con.close()


RPM_PURLS = {
    "pkg:rpm/rocky/openssl-libs@3.0.7-24.el9?arch=x86_64&distro=rocky-9.3&epoch=1",
    "pkg:rpm/rocky/bash@5.1.8-6.el9_1?arch=x86_64&distro=rocky-9.3",
}


def rpm_layer(root: str, extra=()) -> str:
    os_release(root, "rocky", "9.3", pretty="Rocky Linux 9.3 (Blue Onyx)")
    rpmdb(os.path.join(root, "var/lib/rpm/rpmdb.sqlite"), [
        rpm_package("openssl-libs", "3.0.7", "24.el9", "x86_64",
                    "openssl-3.0.7-24.el9.src.rpm", epoch=1,
                    files=["/usr/lib64/libssl.so.3", "/usr/lib64/libcrypto.so.3",
                           "/usr/share/licenses/openssl-libs/LICENSE.txt"]),
        rpm_package("bash", "5.1.8", "6.el9_1", "x86_64", "bash-5.1.8-6.el9_1.src.rpm",
                    files=["/usr/bin/bash"]),
        rpm_package("gpg-pubkey", "350d275d", "6279464b", "(none)", ""),
        *extra])
    return root


# -- language packages ---------------------------------------------------------------------
def python_packages(root: str) -> None:
    sp = "/usr/lib/python3/dist-packages"
    write(root, f"{sp}/requests-2.28.1.dist-info/METADATA",
          "Metadata-Version: 2.1\nName: requests\nVersion: 2.28.1\nSummary: HTTP\n"
          "Requires-Dist: urllib3 (<1.27,>=1.21.1)\n\nName: not-this\nVersion: 0\n")
    write(root, f"{sp}/requests-2.28.1.dist-info/RECORD",
          "requests/__init__.py,sha256=abc,4924\nrequests/api.py,sha256=def,6449\n"
          "requests-2.28.1.dist-info/RECORD,,\n")
    write(root, f"{sp}/requests/__init__.py", "")
    write(root, "/usr/local/lib/python3.11/site-packages/Jinja2-3.1.2.dist-info/METADATA",
          "Metadata-Version: 2.1\nName: Jinja2\nVersion: 3.1.2\n")
    write(root, "/usr/local/lib/python3.11/site-packages/six-1.16.0.egg-info/PKG-INFO",
          "Metadata-Version: 1.2\nName: six\nVersion: 1.16.0\n")
    write(root, "/usr/local/lib/python3.11/site-packages/six-1.16.0.egg-info/top_level.txt",
          "six\n")
    write(root, f"{sp}/PyYAML-6.0.egg-info", "Metadata-Version: 1.1\nName: PyYAML\n"
          "Version: 6.0\n")


PYTHON_PURLS = {"pkg:pypi/requests@2.28.1", "pkg:pypi/jinja2@3.1.2", "pkg:pypi/six@1.16.0",
                "pkg:pypi/pyyaml@6.0"}


def npm_packages(root: str) -> None:
    write(root, "/app/package.json", '{"name": "my-app", "version": "1.0.0"}')
    write(root, "/app/node_modules/lodash/package.json",
          '{"name": "lodash", "version": "4.17.20", "main": "lodash.js"}')
    write(root, "/app/node_modules/@babel/core/package.json",
          '{"name": "@babel/core", "version": "7.22.0"}')
    write(root, "/app/node_modules/@babel/core/node_modules/semver/package.json",
          '{"name": "semver", "version": "6.3.0"}')
    write(root, "/app/node_modules/lodash/fp/package.json", '{"main": "../fp.js"}')


NPM_PURLS = {"pkg:npm/lodash@4.17.20", "pkg:npm/%40babel/core@7.22.0",
             "pkg:npm/semver@6.3.0"}


def jar(root: str, path: str, entries: dict[str, str]) -> None:
    full = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with zipfile.ZipFile(full, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
        for name, text in entries.items():
            z.writestr(name, text)


def java_packages(root: str) -> None:
    jar(root, "/app/lib/log4j-core-2.14.1.jar", {
        "META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties":
            "#Created by Apache Maven 3.6.3\nversion=2.14.1\n"
            "groupId=org.apache.logging.log4j\nartifactId=log4j-core\n",
        "org/apache/logging/log4j/core/Logger.class": "\xca\xfe"})


MAVEN_PURLS = {"pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"}

GO_MAIN = 'package main\n\nimport (\n\t"fmt"\n\t"example.com/greet"\n)\n\n' \
          'func main() { fmt.Println(greet.Hello()) }\n'


def build_go(out: str) -> str | None:
    """A small Go binary with one dependency (a local module required at v1.2.3 and
    replaced by its folder, so no network is needed); None without a Go toolchain."""
    go = shutil.which("go")
    if go is None:
        return None
    src = out + ".src"
    shutil.rmtree(src, ignore_errors=True)
    write(src, "go.mod", "module example.com/hello\n\ngo 1.19\n\n"
          "require example.com/greet v1.2.3\n\nreplace example.com/greet v1.2.3 => ./greet\n")
    write(src, "main.go", GO_MAIN)
    write(src, "greet/go.mod", "module example.com/greet\n\ngo 1.19\n")
    write(src, "greet/greet.go", 'package greet\n\nfunc Hello() string { return "hi" }\n')
    env = {**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0",
           "GOCACHE": src + "/.cache", "GOPATH": src + "/.gopath", "HOME": src}
    subprocess.run([go, "build", "-buildvcs=false", "-trimpath", "-ldflags=-s -w", "-o", out, "."], cwd=src,
                   env=env, check=True, capture_output=True)
    shutil.rmtree(src, ignore_errors=True)
    return out


def go_version_of_toolchain() -> str | None:
    go = shutil.which("go")
    if go is None:
        return None
    v = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True).stdout
    return v.strip()
