"""What `vulndb status`, the agent's warnings and its metrics read about the database: its
age, whether it is older than the configured age, counts per ecosystem, its sources.

``Collector`` is a Prometheus collector (mamori_vulndb_age_seconds, mamori_vulndb_stale,
mamori_vulndb_records) for agent/metrics.py's registry: ``registry.register(Collector(path,
max_age_s))`` -- registered by the agent's wiring, not here (agent/metrics.py is not edited
by this part).
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from .store import Store, StoreError

log = logging.getLogger("mamori.vulndb")


@dataclass(frozen=True)
class DatabaseStatus:
    path: str
    present: bool
    error: str = ""
    built_at: str = ""
    age_s: float | None = None
    stale: bool = False
    max_age_s: float = 0.0
    records: int = 0
    withdrawn: int = 0
    per_ecosystem: dict = field(default_factory=dict)
    sources: list = field(default_factory=list)


def read_status(path: str, max_age_s: float, now: dt.datetime | None = None) -> DatabaseStatus:
    try:
        s = Store(path)
    except StoreError as e:
        import os
        return DatabaseStatus(path, os.path.exists(path), str(e), max_age_s=max_age_s,
                              stale=True)
    try:
        now = now or dt.datetime.now(dt.timezone.utc)
        age = (now - s.built_at()).total_seconds()
        return DatabaseStatus(path, True, "", s.meta["built_at"], age, age > max_age_s,
                              max_age_s, int(s.meta.get("records", 0)),
                              int(s.meta.get("withdrawn", 0)), s.counts(), s.sources())
    finally:
        s.close()


def database_age_seconds(path: str) -> float | None:
    """Seconds since the database was built; None when there is none (metrics read this)."""
    return read_status(path, 0).age_s


def warn_if_stale(st: DatabaseStatus) -> str:
    """The warning for a database older than the configured age ("" if it is not); logged.
    A stale database is still used."""
    if st.age_s is None or not st.stale:
        return ""
    msg = (f"the vulnerability database {st.path} is {st.age_s / 3600:.1f} h old, more than "
           f"vulndb.max_age ({st.max_age_s / 3600:.1f} h): it is still used; run `vulndb "
           "update` (or import a newer export)")
    log.warning("%s", msg)
    return msg


class Collector:
    """Prometheus gauges of the database, read at scrape time."""

    def __init__(self, path: str, max_age_s: float):
        self.path, self.max_age_s = path, max_age_s

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        st = read_status(self.path, self.max_age_s)
        yield GaugeMetricFamily("mamori_vulndb_age_seconds", "Seconds since the "
                                "vulnerability database was built (NaN: none)",
                                value=st.age_s if st.age_s is not None else float("nan"))
        yield GaugeMetricFamily("mamori_vulndb_stale", "1 when the vulnerability database is "
                                "missing or older than vulndb.max_age", value=1 if st.stale else 0)
        g = GaugeMetricFamily("mamori_vulndb_records", "Vulnerability records per ecosystem",
                              labels=["ecosystem"])
        for eco, n in st.per_ecosystem.items():
            g.add_metric([eco], n)
        yield g
