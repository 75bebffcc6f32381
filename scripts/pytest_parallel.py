#!/usr/bin/env python3
"""The whole test suite in parallel: one pytest process per test file, N at a time,
longest first (`make test` runs this; `make test-serial` runs one pytest over everything).

Why files and processes, not pytest-xdist: the suite's fixtures are per file (a module's
containers, its agent), tests/kernel imports its own conftest by name, and a file is the
unit whose set-up is worth sharing. Each process has its own --basetemp and JUnit report;
containers, cgroups, ports and sockets are already unique per test.

What it prints: a line per file as it ends, then every failed file's output, the skip
reasons, and one total. A file that fails while others run beside it is run once more
alone, after the rest: if it passes alone it is reported as passing only alone (so the
load-sensitive test is named, not hidden), and the run still passes; if it fails again the
run fails. Exit status: 0 only if every file passed (alone at the latest) with no error.

    scripts/pytest_parallel.py [--jobs N] [--no-retry] [PATH ...]   (default: tests/)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DURATIONS = os.path.join(ROOT, "tests", "durations.json")   # seconds per file, last measured
UNKNOWN = 600.0            # a file not measured yet starts first


def test_files(paths: list[str]) -> list[str]:
    out = []
    for p in paths:
        p = os.path.relpath(os.path.join(ROOT, p), ROOT)
        if os.path.isfile(p):
            out.append(p)
            continue
        for d, subdirs, files in os.walk(os.path.join(ROOT, p)):
            subdirs[:] = sorted(s for s in subdirs if s != "__pycache__")
            out += sorted(os.path.relpath(os.path.join(d, f), ROOT) for f in files
                          if f.startswith("test_") and f.endswith(".py"))
    return out


def load_durations() -> dict[str, float]:
    try:
        with open(DURATIONS) as f:
            return {k: float(v) for k, v in json.load(f).items()}
    except (OSError, ValueError):
        return {}


class Result:
    def __init__(self, path: str, code: int, log: str, junit: str, seconds: float):
        self.path, self.code, self.log, self.seconds = path, code, log, seconds
        self.tests = self.failures = self.errors = self.skipped = 0
        self.skips: list[str] = []
        try:
            root = ET.parse(junit).getroot()
        except (OSError, ET.ParseError):
            self.errors = 1                    # no report: pytest itself did not finish
            return
        for suite in root.iter("testsuite"):
            self.tests += int(suite.get("tests", 0))
            self.failures += int(suite.get("failures", 0))
            self.errors += int(suite.get("errors", 0))
            self.skipped += int(suite.get("skipped", 0))
        for case in root.iter("testcase"):
            for s in case.findall("skipped"):
                self.skips.append(f"{case.get('classname')}::{case.get('name')}: "
                                  f"{s.get('message', '')}")

    @property
    def ok(self) -> bool:
        # exit 5: no tests collected in the file — a file of helpers only, not a failure
        return self.code in (0, 5) and not self.failures and not self.errors

    def summary(self) -> str:
        passed = self.tests - self.failures - self.errors - self.skipped
        parts = [f"{passed} passed"]
        for n, what in ((self.failures, "failed"), (self.errors, "errors"),
                        (self.skipped, "skipped")):
            if n:
                parts.append(f"{n} {what}")
        return ", ".join(parts)


def run_file(path: str, work: str, n: int) -> Result:
    tag = f"{n:03d}-" + path.replace("/", "_")
    log, junit = os.path.join(work, tag + ".log"), os.path.join(work, tag + ".xml")
    start = time.monotonic()
    with open(log, "w") as out:
        code = subprocess.call(
            # a short --basetemp: unix socket paths below it must stay under 108 bytes
            [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider",
             f"--basetemp={os.path.join(work, f't{n:03d}')}", f"--junitxml={junit}", path],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Result(path, code, log, junit, time.monotonic() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", default=["tests"])
    ap.add_argument("--jobs", "-j", type=int,
                    default=int(os.environ.get("MAMORI_TEST_JOBS", 0)) or
                    max(2, min(4, (os.cpu_count() or 1) + 1)),
                    help="files run at once (default: CPUs + 1, 2 to 4; MAMORI_TEST_JOBS)")
    ap.add_argument("--no-retry", action="store_true",
                    help="do not run a failed file once more alone")
    ap.add_argument("--write-durations", action="store_true",
                    help=f"record each file's time in {os.path.relpath(DURATIONS, ROOT)}")
    args = ap.parse_args()
    files = test_files(args.paths)
    if not files:
        print("no test files under " + " ".join(args.paths), file=sys.stderr)
        return 2
    known = load_durations()
    files.sort(key=lambda p: -known.get(p, UNKNOWN))
    work = tempfile.mkdtemp(prefix="mt-")
    print(f"{len(files)} test files, {args.jobs} at a time; logs in {work}", flush=True)

    queue, results, lock = list(files), [], threading.Lock()
    started = time.monotonic()

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                path = queue.pop(0)
                n = len(files) - len(queue)
            r = run_file(path, work, n)
            with lock:
                results.append(r)
                print(f"{'ok  ' if r.ok else 'FAIL'} {r.seconds:7.1f}s  {path}  "
                      f"({r.summary()})", flush=True)
    threads = [threading.Thread(target=worker) for _ in range(min(args.jobs, len(files)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    final = {r.path: r for r in results}
    alone_only = []
    failed = sorted(p for p, r in final.items() if not r.ok)
    if failed and not args.no_retry:
        print(f"\n{len(failed)} file(s) failed beside others; each once more, alone:",
              flush=True)
        for i, path in enumerate(failed):
            first = final[path]
            r = run_file(path, work, len(files) + i + 1)
            print(f"{'ok  ' if r.ok else 'FAIL'} {r.seconds:7.1f}s  {path}  "
                  f"({r.summary()}) alone", flush=True)
            if r.ok:
                alone_only.append(first)
            final[path] = r

    if args.write_durations:
        with open(DURATIONS, "w") as f:
            json.dump({p: round(r.seconds, 1) for p, r in sorted(final.items())}, f,
                      indent=1, sort_keys=True)
            f.write("\n")

    bad = [r for r in final.values() if not r.ok]
    for r in bad:
        print(f"\n===== {r.path} (exit {r.code}) =====")
        with open(r.log, errors="replace") as f:
            text = f.read()
        print(text[-20000:])
    for r in alone_only:
        print(f"\n===== {r.path}: failed beside others, passed alone — its first output =====")
        with open(r.log, errors="replace") as f:
            print(f.read()[-6000:])
    skips = [s for r in final.values() for s in r.skips]
    if skips:
        print("\nskipped:")
        for s in skips:
            print("  " + s)
    total = {k: sum(getattr(r, k) for r in final.values())
             for k in ("tests", "failures", "errors", "skipped")}
    passed = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
    print(f"\n{passed} passed, {total['failures']} failed, {total['errors']} errors, "
          f"{total['skipped']} skipped, in {len(files)} files; "
          f"{len(alone_only)} file(s) passed only alone; "
          f"{time.monotonic() - started:.0f} s wall", flush=True)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
