"""Import OSV exports (zips as osv.dev publishes them, or directories of .json files) into a
new database file, then swap it in for the old one.

Streaming: a zip is read entry by entry (each entry's bytes, then dropped), records go to
SQLite in batches; memory does not grow with the size of the export (bench/vulndb_bench.py).
All or nothing: every source must read to its end (zip CRCs checked as each entry is read)
and hold at least one OSV record, or nothing is replaced and the error says which source and
why. A bad record is skipped and reported as `source:entry: why`; withdrawn records are
counted and left out.
"""
from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator

from . import osv
from .store import Store, StoreError, Writer, utcnow

MAX_RECORD_BYTES = 64 << 20       # one OSV JSON file; larger is not a record (a zip bomb)
KEEP_PROBLEMS = 200               # problems listed in full; the rest are counted


class ImportFailed(Exception):
    """Nothing was replaced; the message says which source failed and why."""


@dataclass
class ImportResult:
    records: int = 0
    skipped: int = 0
    withdrawn: int = 0
    problems: list[str] = field(default_factory=list)
    more_problems: int = 0
    sources: list[dict] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < KEEP_PROBLEMS:
            self.problems.append(text)
        else:
            self.more_problems += 1


def entries(path: str, label: str = "") -> Iterator[tuple[str, bytes]]:
    """(entry name, bytes) of every .json record in a zip or below a directory, one at a
    time. Raises ImportFailed naming the source (label: its URL, else path) when the source
    itself is unreadable (not a zip, a bad CRC, truncated)."""
    label = label or path
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for f in sorted(files):
                if f.endswith(".json"):
                    full = os.path.join(root, f)
                    try:
                        with open(full, "rb") as fh:
                            yield os.path.relpath(full, path), fh.read(MAX_RECORD_BYTES + 1)
                    except OSError as e:
                        raise ImportFailed(f"{full}: {e.strerror or e}") from None
        return
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ImportFailed(f"{label}: no such file or directory") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ImportFailed(f"{label}: not a readable zip ({e})") from None
    with zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.endswith(".json"):
                continue
            if info.file_size > MAX_RECORD_BYTES:
                raise ImportFailed(f"{label}:{info.filename}: {info.file_size} bytes, more "
                                   f"than an OSV record can be ({MAX_RECORD_BYTES})")
            try:
                with zf.open(info) as fh:
                    data = fh.read(MAX_RECORD_BYTES + 1)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
                raise ImportFailed(f"{label}:{info.filename}: corrupt zip entry ({e})") from None
            yield info.filename, data


def build(sources: list[tuple[str, str]], out_path: str,
          progress: Callable[[str], None] | None = None) -> ImportResult:
    """Write a new database at out_path from (label, path) sources. On ImportFailed the
    partial file is removed."""
    res = ImportResult()
    w = Writer(out_path)
    try:
        for label, path in sources:
            n0, s0, wd0 = res.records, res.skipped, res.withdrawn
            for name, data in entries(path, label):
                where = f"{label}:{name}"
                if len(data) > MAX_RECORD_BYTES:
                    res.skipped += 1
                    res.problem(f"{where}: larger than {MAX_RECORD_BYTES} bytes (skipped)")
                    continue
                try:
                    rec, problems = osv.parse(data)
                except osv.RecordError as e:
                    res.skipped += 1
                    res.problem(f"{where}: {e} (skipped)")
                    continue
                for p in problems:
                    res.problem(f"{where}: {rec.id}: {p}")
                if rec.withdrawn:
                    res.withdrawn += 1
                    continue
                w.add(rec)
                res.records += 1
                if progress and res.records % 20000 == 0:
                    progress(f"{res.records} records")
            got = res.records - n0 + res.withdrawn - wd0
            if not got:
                raise ImportFailed(f"{label}: no OSV record in it"
                                   + (f" ({res.skipped - s0} bad files)" if res.skipped - s0
                                      else ""))
            res.sources.append({"source": label, "fetched_at": utcnow(),
                                "records": res.records - n0, "skipped": res.skipped - s0,
                                "withdrawn": res.withdrawn - wd0})
        w.finish(res.sources, res.withdrawn)
        res.records = w.records          # duplicates across sources counted once
    except BaseException:
        w.abort()
        raise
    return res


def install(db_path: str, sources: list[tuple[str, str]],
            progress: Callable[[str], None] | None = None) -> ImportResult:
    """Build a new database from the sources beside db_path, check that it opens, and
    replace db_path with it atomically (os.replace). On any failure db_path is untouched
    and ImportFailed says why."""
    d = os.path.dirname(os.path.abspath(db_path))
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".{os.path.basename(db_path)}.new-{os.getpid()}")
    if os.path.exists(tmp):
        os.unlink(tmp)                  # left by a process of ours that was killed
    try:
        res = build(sources, tmp, progress)
        try:
            s = Store(tmp)
            s.counts()
            s.close()
        except StoreError as e:
            raise ImportFailed(f"the new database does not read back: {e}") from None
        os.chmod(tmp, 0o644)
        os.replace(tmp, db_path)
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return res
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
