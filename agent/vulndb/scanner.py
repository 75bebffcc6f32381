"""Scanner: the inventories known on this node, matched against the current database, and
matched again when the database file is replaced.

Made to be called from a worker thread (never the event path):
    scanner = Scanner("/var/lib/mamori/vulndb/osv.sqlite3")
    result = scanner.scan(image_key, os_release, packages)    # a new image: match it now
    changed = scanner.refresh()     # every few seconds: {image_key: result} after a swap
    scanner.forget(image_key)       # the last container of the image is gone
A new database is noticed by the file's identity (device, inode, mtime): `vulndb update`
and `vulndb import` replace the file with os.replace, so the inode changes. Scans that are
running keep the database they started with until they end.
"""
from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Callable, Iterable

from . import match as matchmod
from .finding import Finding
from .store import Store, StoreError


@dataclass(frozen=True, slots=True)
class ScanResult:
    image: str
    findings: tuple[Finding, ...]
    problems: tuple[str, ...]
    database_built_at: str          # "" when there was no database
    scanned_at: str


def _identity(path: str):
    import os
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino, st.st_mtime_ns)
    except FileNotFoundError:
        return None


class Scanner:
    def __init__(self, db_path: str,
                 on_result: Callable[[ScanResult], None] | None = None):
        self.db_path = db_path
        self.on_result = on_result
        self._lock = threading.RLock()
        self._store: Store | None = None
        self._store_error = ""
        self._inventories: dict[str, tuple] = {}      # image -> (os_release, packages)
        self._results: dict[str, ScanResult] = {}

    # -- the database --------------------------------------------------------------------
    def _current(self) -> Store | None:
        """The open store, reopened when the file on disk is another one."""
        ident = _identity(self.db_path)
        if self._store is not None and ident == self._store.identity:
            return self._store
        if ident is None and self._store is not None:
            return self._store                 # deleted: keep what we have open
        try:
            new = Store(self.db_path)
        except StoreError as e:
            self._store_error = str(e)
            return self._store                 # a bad new file: keep the old one
        old, self._store, self._store_error = self._store, new, ""
        if old is not None:
            old.close()
        return new

    def database_error(self) -> str:
        return self._store_error

    # -- scans ---------------------------------------------------------------------------
    def scan(self, image: str, os_release, packages: Iterable) -> ScanResult:
        """Remember this image's inventory and match it against the current database."""
        pkgs = tuple(packages)
        with self._lock:
            self._inventories[image] = (os_release, pkgs)
            store = self._current()
            return self._scan(store, image, os_release, pkgs)

    def _scan(self, store, image, os_release, pkgs) -> ScanResult:
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
        if store is None:
            res = ScanResult(image, (), (self._store_error or "no vulnerability database",),
                             "", now)
        else:
            m = matchmod.match(store, os_release, pkgs, image)
            res = ScanResult(image, m.findings, m.problems, store.meta.get("built_at", ""),
                             now)
        self._results[image] = res
        if self.on_result:
            self.on_result(res)
        return res

    def refresh(self) -> dict[str, ScanResult]:
        """If the database file was replaced since the last scan: reopen it and rescan every
        known inventory; {image: new result}. {} when nothing changed."""
        with self._lock:
            before = self._store.identity if self._store is not None else None
            store = self._current()
            after = store.identity if store is not None else None
            if after == before:
                return {}
            return {image: self._scan(store, image, os_r, pkgs)
                    for image, (os_r, pkgs) in self._inventories.items()}

    def rescan_all(self) -> dict[str, ScanResult]:
        """Match every known inventory again now, whether the database changed or not."""
        with self._lock:
            store = self._current()
            return {image: self._scan(store, image, os_r, pkgs)
                    for image, (os_r, pkgs) in self._inventories.items()}

    def forget(self, image: str) -> None:
        with self._lock:
            self._inventories.pop(image, None)
            self._results.pop(image, None)

    def result(self, image: str) -> ScanResult | None:
        with self._lock:
            return self._results.get(image)

    def images(self) -> list[str]:
        with self._lock:
            return sorted(self._inventories)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
