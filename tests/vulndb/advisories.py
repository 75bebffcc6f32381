"""Real advisories, in OSV form, with the facts they publish (ids, aliases, packages,
ecosystems, introduced/fixed/last_affected versions, CVSS vectors); the fixture database the
matcher tests use is written from these. Where a test adds a field an advisory does not carry
(to exercise that field), the record says so in its name or its comment.

  DSA-5532-1          openssl, Debian 12 (bookworm): CVE-2023-5363, fixed 3.0.11-1~deb12u2
  DSA-5724-1          openssh, Debian 12: regreSSHion CVE-2024-6387, fixed 1:9.2p1-2+deb12u3
  UBUNTU-CVE-2023-0464  openssl: Ubuntu 22.04 LTS fixed 3.0.2-0ubuntu1.9 (USN-6039-1);
                      Ubuntu Pro 14.04 fixed 1.0.1f-1ubuntu2.27+esm7
  ALPINE-CVE-2023-42366 busybox awk heap overflow, Alpine v3.19, fixed 1.36.1-r16
  RLSA-2024:4312      openssh, Rocky Linux 9: CVE-2024-6387, fixed 8.7p1-38.el9_4.1
  GHSA-j8r2-6x86-q33q requests Proxy-Authorization leak, CVE-2023-32681 / PYSEC-2023-74:
                      introduced 2.3.0, fixed 2.31.0
  GHSA-wj6h-64fc-37mp ecdsa Minerva timing attack, CVE-2024-23342: last_affected 0.18.0
  GHSA-35jh-r3h4-6jhm lodash command injection in template, CVE-2021-23337: fixed 4.17.21
  GO-2024-2687        HTTP/2 CONTINUATION flood, CVE-2023-45288: stdlib fixed 1.21.9 and
                      1.22.2 (from 1.22.0-0), golang.org/x/net fixed 0.23.0
  GHSA-jfh8-c2jp-5v3q Log4Shell, CVE-2021-44228: log4j-core 2.0-beta9..2.3.1, 2.4..2.12.2,
                      2.13.0..2.15.0
"""
from __future__ import annotations

import io
import json
import os
import zipfile


def _eco(introduced="0", fixed=None, last_affected=None, type_="ECOSYSTEM"):
    ev = [{"introduced": introduced}]
    if fixed:
        ev.append({"fixed": fixed})
    if last_affected:
        ev.append({"last_affected": last_affected})
    return {"type": type_, "events": ev}


def pkg(ecosystem, name, ranges, versions=None, **kw):
    a = {"package": {"ecosystem": ecosystem, "name": name}, "ranges": ranges}
    if versions:
        a["versions"] = versions
    a.update(kw)
    return a


DSA_5532_1 = {
    "id": "DSA-5532-1", "modified": "2023-10-26T00:00:00Z", "published": "2023-10-26T00:00:00Z",
    "aliases": ["CVE-2023-5363"],
    "summary": "openssl - security update",
    "details": "Incorrect cipher key and IV length processing in OpenSSL 3.0.",
    "references": [{"type": "ADVISORY", "url": "https://www.debian.org/security/2023/dsa-5532"}],
    "affected": [pkg("Debian:12", "openssl", [_eco(fixed="3.0.11-1~deb12u2")])],
}

DSA_5724_1 = {
    "id": "DSA-5724-1", "modified": "2024-07-01T00:00:00Z",
    "aliases": ["CVE-2024-6387"],
    "summary": "openssh - security update",
    "details": "The Qualys Threat Research Team discovered that the OpenSSH server is prone "
               "to a signal handler race condition (regreSSHion).",
    "references": [{"type": "ADVISORY", "url": "https://www.debian.org/security/2024/dsa-5724"}],
    "affected": [pkg("Debian:12", "openssh", [_eco(fixed="1:9.2p1-2+deb12u3")])],
}

UBUNTU_CVE_2023_0464 = {
    "id": "UBUNTU-CVE-2023-0464", "modified": "2026-02-04T04:39:46Z",
    "upstream": ["CVE-2023-0464"], "related": ["USN-6039-1"],
    "details": "A security vulnerability has been identified in all supported versions of "
               "OpenSSL related to the verification of X.509 certificate chains that include "
               "policy constraints.",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}],
    "references": [{"type": "REPORT", "url": "https://ubuntu.com/security/CVE-2023-0464"},
                   {"type": "ADVISORY", "url": "https://ubuntu.com/security/notices/USN-6039-1"}],
    "affected": [
        pkg("Ubuntu:Pro:14.04:LTS", "openssl", [_eco(fixed="1.0.1f-1ubuntu2.27+esm7")]),
        pkg("Ubuntu:22.04:LTS", "openssl", [_eco(fixed="3.0.2-0ubuntu1.9")]),
    ],
}

ALPINE_CVE_2023_42366 = {
    "id": "ALPINE-CVE-2023-42366", "modified": "2024-05-01T00:00:00Z",
    "upstream": ["CVE-2023-42366"],
    "details": "A heap-buffer-overflow was discovered in BusyBox v.1.36.1 in the next_token "
               "function at awk.c:1159.",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:N/I:N/A:H"}],
    "references": [{"type": "ADVISORY",
                    "url": "https://security.alpinelinux.org/vuln/CVE-2023-42366"}],
    "affected": [pkg("Alpine:v3.19", "busybox", [_eco(fixed="1.36.1-r16")])],
}

RLSA_2024_4312 = {
    "id": "RLSA-2024:4312", "modified": "2024-07-03T00:00:00Z",
    "aliases": ["CVE-2024-6387"],
    "summary": "Important: openssh security update",
    "details": "A signal handler race condition was found in OpenSSH's server (sshd).",
    "references": [{"type": "ADVISORY", "url": "https://errata.rockylinux.org/RLSA-2024:4312"}],
    "affected": [pkg("Rocky Linux:9", "openssh", [_eco(fixed="8.7p1-38.el9_4.1")])],
}

GHSA_J8R2 = {
    "id": "GHSA-j8r2-6x86-q33q", "modified": "2023-11-08T00:00:00Z",
    "aliases": ["CVE-2023-32681", "PYSEC-2023-74"],
    "summary": "Unintended leak of Proxy-Authorization header in requests",
    "details": "Requests forwards proxy-authorization headers to destination servers when "
               "following HTTPS redirects.",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N"}],
    "references": [{"type": "WEB", "url": "https://github.com/psf/requests/security/"
                                          "advisories/GHSA-j8r2-6x86-q33q"},
                   {"type": "ADVISORY", "url": "https://nvd.nist.gov/vuln/detail/CVE-2023-32681"}],
    "affected": [pkg("PyPI", "requests", [_eco("2.3.0", fixed="2.31.0")])],
}

GHSA_WJ6H = {
    "id": "GHSA-wj6h-64fc-37mp", "modified": "2024-01-23T00:00:00Z",
    "aliases": ["CVE-2024-23342"],
    "summary": "Minerva timing attack on P-256 in python-ecdsa",
    "details": "python-ecdsa has been found to be subject to a Minerva timing attack on the "
               "P-256 curve.",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:N"}],
    "references": [{"type": "ADVISORY", "url": "https://nvd.nist.gov/vuln/detail/CVE-2024-23342"}],
    "affected": [pkg("PyPI", "ecdsa", [_eco(last_affected="0.18.0")])],
}

GHSA_35JH = {
    "id": "GHSA-35jh-r3h4-6jhm", "modified": "2023-08-01T00:00:00Z",
    "aliases": ["CVE-2021-23337"],
    "summary": "Command Injection in lodash",
    "details": "lodash versions prior to 4.17.21 are vulnerable to Command Injection via the "
               "template function.",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H"}],
    "references": [{"type": "ADVISORY", "url": "https://nvd.nist.gov/vuln/detail/CVE-2021-23337"}],
    "affected": [pkg("npm", "lodash", [_eco(fixed="4.17.21", type_="SEMVER")])],
}

GO_2024_2687 = {
    "id": "GO-2024-2687", "modified": "2024-04-04T00:00:00Z",
    "aliases": ["CVE-2023-45288", "GHSA-4v7x-pqxf-cx7m"],
    "summary": "HTTP/2 CONTINUATION flood in net/http",
    "details": "An attacker may cause an HTTP/2 endpoint to read arbitrary amounts of header "
               "data by sending an excessive number of CONTINUATION frames.",
    "references": [{"type": "REPORT", "url": "https://go.dev/issue/65051"}],
    "affected": [
        pkg("Go", "stdlib", [{"type": "SEMVER", "events": [
            {"introduced": "0"}, {"fixed": "1.21.9"},
            {"introduced": "1.22.0-0"}, {"fixed": "1.22.2"}]}]),
        pkg("Go", "golang.org/x/net", [_eco(fixed="0.23.0", type_="SEMVER")]),
    ],
}

GHSA_JFH8 = {
    "id": "GHSA-jfh8-c2jp-5v3q", "modified": "2024-01-01T00:00:00Z",
    "aliases": ["CVE-2021-44228"],
    "summary": "Remote code injection in Log4j",
    "details": "Apache Log4j2 JNDI features do not protect against attacker controlled LDAP "
               "and other JNDI related endpoints.",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}],
    "references": [{"type": "ADVISORY", "url": "https://nvd.nist.gov/vuln/detail/CVE-2021-44228"}],
    "affected": [pkg("Maven", "org.apache.logging.log4j:log4j-core", [{
        "type": "ECOSYSTEM", "events": [
            {"introduced": "2.0-beta9"}, {"fixed": "2.3.1"},
            {"introduced": "2.4"}, {"fixed": "2.12.2"},
            {"introduced": "2.13.0"}, {"fixed": "2.15.0"}]}])],
}

# Not an advisory: the requests record re-issued under a test id and withdrawn, the shape of a
# GHSA withdrawal (`withdrawn` set). It must not match anything.
WITHDRAWN_TEST = dict(GHSA_J8R2, id="MAMORI-TEST-WITHDRAWN", withdrawn="2023-06-01T00:00:00Z",
                      affected=[pkg("PyPI", "requests", [_eco(fixed="99.0")])])

ALL = [DSA_5532_1, DSA_5724_1, UBUNTU_CVE_2023_0464, ALPINE_CVE_2023_42366, RLSA_2024_4312,
       GHSA_J8R2, GHSA_WJ6H, GHSA_35JH, GO_2024_2687, GHSA_JFH8, WITHDRAWN_TEST]


def zip_bytes(records, extra: dict[str, bytes] | None = None) -> bytes:
    """An OSV export as osv.dev writes it: one <id>.json per record at the top of the zip."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for r in records:
            z.writestr(f"{r['id']}.json", json.dumps(r, indent=2))
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def write_zip(path: str, records, extra=None) -> str:
    with open(path, "wb") as f:
        f.write(zip_bytes(records, extra))
    return path


def write_dir(path: str, records) -> str:
    os.makedirs(path, exist_ok=True)
    for r in records:
        with open(os.path.join(path, r["id"].replace(":", "_") + ".json"), "w") as f:
            json.dump(r, f)
    return path
