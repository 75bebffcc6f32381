"""`vulndb update`: download OSV exports over HTTP(S), then import them (importer.install).

Each source is downloaded into a temporary directory beside the database (never over it); a
download is complete only when it has as many bytes as the server announced and the zip then
reads to its end with good CRCs. Any source failing -- HTTP error, connection closed mid-file,
timeout, corrupt zip -- stops the update before anything is replaced: the previous database
stays in use and UpdateFailed says which source and why. A later run starts the downloads
again from nothing (no partial file is ever trusted).
"""
from __future__ import annotations

import http.client
import os
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

from . import importer

# The official osv.dev export: one all.zip per ecosystem (https://google.github.io/osv.dev/data/)
OSV_EXPORT = "https://osv-vulnerabilities.storage.googleapis.com"
CHUNK = 1 << 20


class UpdateFailed(Exception):
    """Nothing was replaced; the message says why."""


def source_url(ecosystem: str) -> str:
    """The osv.dev export of one ecosystem ("Debian", "Rocky Linux", "PyPI")."""
    return f"{OSV_EXPORT}/{urllib.parse.quote(ecosystem)}/all.zip"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def download(url: str, dest: str, progress: Callable[[str], None] | None = None,
             timeout: float = 60.0) -> int:
    """Fetch url into dest (a new file); the number of bytes. Raises UpdateFailed."""
    req = urllib.request.Request(url, headers={"User-Agent": "mamori-vulndb"})
    got, last = 0, time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r, open(dest, "xb") as out:
            status = getattr(r, "status", 200)
            if status is not None and status != 200:
                raise UpdateFailed(f"{url}: HTTP {status}")
            length = r.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while True:
                chunk = r.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                got += len(chunk)
                if progress and time.monotonic() - last >= 1.0:
                    last = time.monotonic()
                    progress(f"{url}: {_mib(got)}" + (f" of {_mib(total)}" if total else ""))
            if total is not None and got != total:
                raise UpdateFailed(f"{url}: the connection closed after {got} of {total} "
                                   "bytes (download incomplete)")
            out.flush()
            os.fsync(out.fileno())
    except UpdateFailed:
        raise
    except urllib.error.HTTPError as e:
        raise UpdateFailed(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise UpdateFailed(f"{url}: cannot connect ({e.reason})") from None
    except http.client.IncompleteRead as e:
        raise UpdateFailed(f"{url}: the connection closed after {got + len(e.partial)} "
                           f"bytes, {e.expected} more were announced (download incomplete)"
                           ) from None
    except (socket.timeout, TimeoutError):
        raise UpdateFailed(f"{url}: no data for {timeout:.0f} s (timed out after "
                           f"{got} bytes)") from None
    except (http.client.HTTPException, OSError) as e:
        raise UpdateFailed(f"{url}: download failed after {got} bytes "
                           f"({type(e).__name__}: {e})") from None
    if progress:
        progress(f"{url}: {_mib(got)} downloaded")
    return got


def update(db_path: str, urls: list[str], progress: Callable[[str], None] | None = None,
           timeout: float = 60.0) -> importer.ImportResult:
    """Download every url, then import them all into a new database that replaces db_path.
    Raises UpdateFailed (download) or importer.ImportFailed (content); db_path is then
    untouched."""
    if not urls:
        raise UpdateFailed("no source to download (give --source or set vulndb.ecosystems)")
    d = os.path.dirname(os.path.abspath(db_path))
    os.makedirs(d, exist_ok=True)
    tmpdir = tempfile.mkdtemp(prefix=".vulndb-download-", dir=d)
    try:
        files = []
        for i, url in enumerate(urls):
            dest = os.path.join(tmpdir, f"{i}.zip")
            download(url, dest, progress, timeout)
            files.append((url, dest))
        if progress:
            progress("importing")
        return importer.install(db_path, files, progress)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
