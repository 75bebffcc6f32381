"""The node's vulnerability scanning in the agent: each image inventory matched against the
database when the inventory is made, and every known one again when the database file is
replaced (`mamori vulndb update` / `import` swap it atomically), in a thread of its own —
never on the event path.

    node = NodeScanner(cfg.vulndb)
    node.start()
    inventory_worker.on_done.append(node.inventoried)    # (Inventory) -> None, queues
    node.results()                                        # {image key: ScanResult}
"""
from __future__ import annotations

import logging
import queue
import threading
from collections import Counter

from .scanner import ScanResult, Scanner
from .status import database_age_seconds, read_status, warn_if_stale

log = logging.getLogger("mamori.vulndb")
QUEUE = 1024


class NodeScanner:
    def __init__(self, cfg, check_s: float = 2.0):
        self.cfg = cfg
        self.check_s = check_s
        self.scanner = Scanner(cfg.path)
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE)
        self.scans = 0                  # images matched (new inventories and rescans)
        self.rescans = 0                # times every image was matched again after a swap
        self.dropped = 0                # inventories not queued (the queue was full)
        self.errors = 0
        self.changed = threading.Event()    # set after each scan (for tests and watchers)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- fed by the inventory worker -----------------------------------------------------
    def inventoried(self, inv) -> None:
        """An image's inventory is made (or made again): match it, off this thread."""
        try:
            self.queue.put_nowait(("scan", inv.key, inv.os, tuple(inv.packages)))
        except queue.Full:
            self.dropped += 1

    def forget(self, key: str) -> None:
        try:
            self.queue.put_nowait(("forget", key, None, None))
        except queue.Full:
            self.dropped += 1

    # -- the thread ----------------------------------------------------------------------
    def start(self) -> None:
        st = read_status(self.cfg.path, self.cfg.max_age_hours * 3600)
        if not st.present:
            log.warning("no vulnerability database at %s yet: images are inventoried, and "
                        "matched once one is imported (mamori vulndb update | import)",
                        self.cfg.path)
        warn_if_stale(st)
        self._thread = threading.Thread(target=self._run, name="mamori-vulns", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self.queue.put_nowait(("stop", "", None, None))
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.scanner.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                what, key, os_release, packages = self.queue.get(timeout=self.check_s)
            except queue.Empty:
                what = "check"
            try:
                if what == "scan":
                    self._log(self.scanner.scan(key, os_release, packages))
                    self.scans += 1
                elif what == "forget":
                    self.scanner.forget(key)
                elif what == "check":
                    done = self.scanner.refresh()
                    if done:
                        self.rescans += 1
                        self.scans += len(done)
                        log.info("vulnerability database replaced: %d image(s) matched again",
                                 len(done))
                        for res in done.values():
                            self._log(res)
                else:
                    continue
                self.changed.set()
            except Exception:                  # noqa: BLE001 - the thread must go on
                self.errors += 1
                log.exception("vulnerability scan (%s %s) failed; going on", what, key)

    @staticmethod
    def _log(res: ScanResult) -> None:
        by = Counter(f.severity for f in res.findings)
        log.info("image %s: %d vulnerabilit%s (%s)%s", res.image, len(res.findings),
                 "y" if len(res.findings) == 1 else "ies",
                 ", ".join(f"{n} {s}" for s, n in sorted(by.items())) or "none",
                 f"; {res.problems[0]}" if res.problems else "")

    # -- reading -------------------------------------------------------------------------
    def results(self) -> dict[str, ScanResult]:
        return {k: r for k in self.scanner.images()
                if (r := self.scanner.result(k)) is not None}

    def age_seconds(self) -> float | None:
        return database_age_seconds(self.cfg.path)
