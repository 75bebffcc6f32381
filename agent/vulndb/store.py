"""The database file: SQLite (stdlib sqlite3), written once by ``Writer`` into a new file and
then only read (``Store``, read-only).

Schema (SCHEMA_VERSION 1):
  meta(key, value)        schema_version, built_at (UTC ISO 8601), records, withdrawn
  sources(source, fetched_at, records, skipped, withdrawn)   where each part came from
  vulns(id, modified, aliases, summary, details, severity, refs, dbspec)   one per record
  affected(vuln_id, ecosystem, name_key, name, purl, ranges, versions, severity,
           ecospec, dbspec)       one per affected package; index (ecosystem, name_key)
List and object columns are JSON text. A record met twice (two sources) keeps the copy
with the later `modified`.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
from dataclasses import dataclass

from .osv import Affected, Range, Record

SCHEMA_VERSION = "1"

_DDL = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sources(source TEXT NOT NULL, fetched_at TEXT NOT NULL, records INTEGER,
                     skipped INTEGER, withdrawn INTEGER);
CREATE TABLE vulns(id TEXT PRIMARY KEY, modified TEXT NOT NULL, aliases TEXT, summary TEXT,
                   details TEXT, severity TEXT, refs TEXT, dbspec TEXT);
CREATE TABLE affected(vuln_id TEXT NOT NULL, ecosystem TEXT NOT NULL, name_key TEXT NOT NULL,
                      name TEXT NOT NULL, purl TEXT, ranges TEXT, versions TEXT,
                      severity TEXT, ecospec TEXT, dbspec TEXT);
"""


class StoreError(Exception):
    pass


def utcnow() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def _j(v) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


class Writer:
    """Builds a new database file at `path` (which must not exist). Not for a file in use:
    the importer writes a temporary file and swaps it in."""

    BATCH = 2000

    def __init__(self, path: str):
        if os.path.exists(path):
            raise StoreError(f"{path}: exists already")
        self.path = path
        self.db = sqlite3.connect(path)
        self.db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _DDL)
        self.records = 0
        self._pending: list[Record] = []
        self._seen: dict[str, str] = {}        # id -> modified, for duplicates

    def add(self, rec: Record) -> None:
        prev = self._seen.get(rec.id)
        if prev is not None:
            if rec.modified <= prev:
                return
            self._flush()
            self.db.execute("DELETE FROM vulns WHERE id=?", (rec.id,))
            self.db.execute("DELETE FROM affected WHERE vuln_id=?", (rec.id,))
            self.records -= 1
        self._seen[rec.id] = rec.modified
        self._pending.append(rec)
        self.records += 1
        if len(self._pending) >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        self.db.executemany(
            "INSERT INTO vulns VALUES (?,?,?,?,?,?,?,?)",
            [(r.id, r.modified, _j(list(r.aliases)), r.summary, r.details,
              _j(list(r.severity)), _j(list(r.references)), _j(r.database_specific))
             for r in self._pending])
        self.db.executemany(
            "INSERT INTO affected VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(r.id, a.ecosystem, a.key, a.name, a.purl,
              _j([[g.type, [list(e) for e in g.events]] for g in a.ranges]),
              _j(list(a.versions)), _j(list(a.severity)), _j(a.ecosystem_specific),
              _j(a.database_specific))
             for r in self._pending for a in r.affected])
        self._pending.clear()

    def finish(self, sources: list[dict], withdrawn: int) -> None:
        """Index, record where it came from, write it to disk (fsync) and close."""
        self._flush()
        self.db.execute("CREATE INDEX affected_by_package ON affected(ecosystem, name_key)")
        self.db.executemany("INSERT INTO sources VALUES (?,?,?,?,?)",
                            [(s["source"], s["fetched_at"], s["records"], s["skipped"],
                              s["withdrawn"]) for s in sources])
        self.db.executemany("INSERT INTO meta VALUES (?,?)", [
            ("schema_version", SCHEMA_VERSION), ("built_at", utcnow()),
            ("records", str(self.records)), ("withdrawn", str(withdrawn))])
        self.db.commit()
        self.db.close()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def abort(self) -> None:
        try:
            self.db.close()
        finally:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


@dataclass(frozen=True, slots=True)
class Vuln:
    """A record as the matcher reads it back (affected entries come separately)."""
    id: str
    modified: str
    aliases: tuple[str, ...]
    summary: str
    details: str
    severity: tuple[dict, ...]
    references: tuple[str, ...]
    database_specific: dict


class Store:
    """A database file opened read-only. It keeps reading the file it opened even after a
    newer one replaced it (the old inode stays open); ``identity`` tells them apart.
    One connection, shared by threads under a lock."""

    def __init__(self, path: str):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise StoreError(f"no vulnerability database at {path} (run `vulndb update` "
                             "or `vulndb import`)") from None
        self.path = path
        self.identity = (st.st_dev, st.st_ino, st.st_mtime_ns)
        try:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                      check_same_thread=False)
            self.meta = dict(self.db.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{path}: not a Mamori vulnerability database ({e})") from None
        if self.meta.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(f"{path}: schema version {self.meta.get('schema_version')!r}, "
                             f"this Mamori reads {SCHEMA_VERSION}")
        self._lock = threading.Lock()
        self._vulns: dict[str, Vuln] = {}
        self._ecosystems: list[str] | None = None

    def close(self) -> None:
        self.db.close()

    def built_at(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.meta["built_at"])

    def ecosystems(self) -> list[str]:
        with self._lock:
            if self._ecosystems is None:
                self._ecosystems = [r[0] for r in self.db.execute(
                    "SELECT DISTINCT ecosystem FROM affected ORDER BY ecosystem")]
            return self._ecosystems

    def lookup(self, ecosystem: str, name_key: str) -> list[tuple[Vuln, Affected]]:
        with self._lock:
            rows = self.db.execute(
                "SELECT vuln_id, ecosystem, name_key, name, purl, ranges, versions, "
                "severity, ecospec, dbspec FROM affected WHERE ecosystem=? AND name_key=?",
                (ecosystem, name_key)).fetchall()
            out = []
            for (vid, eco, key, name, purl, ranges, vers, sev, ecospec, dbspec) in rows:
                aff = Affected(eco, name, key, purl or "",
                               tuple(Range(t, tuple((k, v) for k, v in evs))
                                     for t, evs in json.loads(ranges)),
                               tuple(json.loads(vers)), tuple(json.loads(sev)),
                               json.loads(ecospec), json.loads(dbspec))
                out.append((self._vuln(vid), aff))
            return out

    def _vuln(self, vid: str) -> Vuln:
        v = self._vulns.get(vid)
        if v is None:
            r = self.db.execute("SELECT id, modified, aliases, summary, details, severity, "
                                "refs, dbspec FROM vulns WHERE id=?", (vid,)).fetchone()
            v = Vuln(r[0], r[1], tuple(json.loads(r[2])), r[3] or "", r[4] or "",
                     tuple(json.loads(r[5])), tuple(json.loads(r[6])), json.loads(r[7]))
            if len(self._vulns) < 100_000:
                self._vulns[vid] = v
        return v

    def counts(self) -> dict[str, int]:
        """Records per ecosystem (as written in the records: "Debian:12", "PyPI")."""
        with self._lock:
            return dict(self.db.execute(
                "SELECT ecosystem, COUNT(DISTINCT vuln_id) FROM affected GROUP BY ecosystem "
                "ORDER BY ecosystem"))

    def sources(self) -> list[dict]:
        with self._lock:
            return [dict(zip(("source", "fetched_at", "records", "skipped", "withdrawn"), r))
                    for r in self.db.execute("SELECT * FROM sources")]
