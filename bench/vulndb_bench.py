"""Vulnerability database import: records per second and peak memory (issue 14).

    .venv/bin/python bench/vulndb_bench.py [--records 100000] [--runs 3]

Writes an OSV export zip of N records shaped like osv.dev's Debian and PyPI records (one or
two affected packages, ECOSYSTEM ranges, a versions list, CVSS vectors, references), then
imports it with agent.vulndb.importer.install in a fresh child process per run (its peak
RSS is the child's ru_maxrss, so the parent's generation of the zip does not count) and
prints the median run as a Markdown row. Then times matching 1,000 packages of an image
against the built database.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def record(i: int) -> dict:
    if i % 2:
        return {"id": f"DEBIAN-CVE-2099-{i:06d}", "modified": "2024-05-01T00:00:00Z",
                "upstream": [f"CVE-2099-{i:06d}"],
                "details": "A flaw was found in a library. " * 8,
                "severity": [{"type": "CVSS_V3",
                              "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                "references": [{"type": "ADVISORY",
                                "url": f"https://security-tracker.debian.org/tracker/"
                                       f"CVE-2099-{i:06d}"}],
                "affected": [{"package": {"ecosystem": f"Debian:{11 + i % 3}",
                                          "name": f"srcpkg{i % 5000}"},
                              "ranges": [{"type": "ECOSYSTEM", "events": [
                                  {"introduced": "0"}, {"fixed": f"1.{i % 50}.0-1+deb12u1"}]}],
                              "versions": [f"1.{k}.0-1" for k in range(i % 20)],
                              "ecosystem_specific": {"urgency": "medium"}}]}
    return {"id": f"GHSA-bench-{i:06d}", "modified": "2024-05-01T00:00:00Z",
            "aliases": [f"CVE-2098-{i:06d}"], "summary": "Bench advisory",
            "details": "Improper input validation. " * 8,
            "severity": [{"type": "CVSS_V3",
                          "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N"}],
            "references": [{"type": "WEB", "url": f"https://github.com/advisories/{i}"}],
            "affected": [{"package": {"ecosystem": "PyPI", "name": f"py-pkg-{i % 8000}"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [
                              {"introduced": "0"}, {"fixed": f"2.{i % 30}.1"}]}]},
                         {"package": {"ecosystem": "PyPI", "name": f"py-pkg-{i % 8000}-ext"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [
                              {"introduced": "1.0"}, {"last_affected": "1.9"}]}]}]}


def write_zip(path: str, n: int) -> int:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(n):
            r = record(i)
            z.writestr(f"{r['id']}.json", json.dumps(r))
    return os.path.getsize(path)


CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from agent.vulndb import importer
t0 = time.perf_counter()
res = importer.install({db!r}, [("bench.zip", {zip!r})])
dt = time.perf_counter() - t0
print(json.dumps({{"records": res.records, "seconds": dt,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def run_import(zpath: str, db: str) -> dict:
    if os.path.exists(db):
        os.unlink(db)
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=ROOT, db=db, zip=zpath)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def baseline_rss() -> int:
    """The child's RSS with the same imports and no work (what Python + sqlite + univers
    cost before a record is read)."""
    code = (f"import sys, resource; sys.path.insert(0, {ROOT!r}); "
            "from agent.vulndb import importer; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                              text=True).stdout)


def bench_match(db: str, n: int = 1000) -> float:
    from agent.inventory.package import OSRelease, Package
    from agent.vulndb.match import match
    from agent.vulndb.store import Store
    pkgs = [Package("deb", f"bin{i}", f"1.{i % 40}.0-1", f"srcpkg{i % 5000}", f"1.{i % 40}.0-1")
            for i in range(n // 2)]
    pkgs += [Package("pypi", f"py_pkg_{i}", f"2.{i % 30}.0") for i in range(n // 2)]
    s = Store(db)
    t0 = time.perf_counter()
    r = match(s, OSRelease("debian", "12"), pkgs, "bench")
    dt = time.perf_counter() - t0
    s.close()
    print(f"match: {n} packages -> {len(r.findings)} findings in {dt * 1000:.0f} ms",
          file=sys.stderr)
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vulndb-bench-") as d:
        zpath, db = os.path.join(d, "bench.zip"), os.path.join(d, "osv.sqlite3")
        size = write_zip(zpath, a.records)
        runs = [run_import(zpath, db) for _ in range(a.runs)]
        base = baseline_rss()
        med = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
        rate = med["records"] / med["seconds"]
        dbsize = os.path.getsize(db)
        match_s = bench_match(db)
        print(f"| {a.records:,} records, zip {size / (1 << 20):.1f} MiB | "
              f"{med['seconds']:.1f} s | {rate:,.0f} records/s | "
              f"{med['maxrss_kib'] / 1024:.0f} MiB ({base / 1024:.0f} MiB before the first "
              f"record) | {dbsize / (1 << 20):.0f} MiB | {match_s * 1000:.0f} ms |")
        print("runs (s): " + ", ".join(f"{r['seconds']:.2f}" for r in runs), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
