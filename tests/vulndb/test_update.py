"""`vulndb update` and `vulndb import`: real downloads from a local server; a failed update
leaves the previous database in use and says why; a new database replaces the old one
atomically while readers read."""
from __future__ import annotations

import os
import threading
import zipfile

import pytest

from advisories import DSA_5532_1, GHSA_35JH, GHSA_J8R2, WITHDRAWN_TEST, zip_bytes, write_dir
from osv_server import OSVServer
from agent.vulndb import importer, update
from agent.vulndb.store import Store


@pytest.fixture
def server():
    s = OSVServer()
    yield s
    s.close()


def ids(path):
    s = Store(path)
    try:
        return {v for (v,) in s.db.execute("SELECT id FROM vulns")}
    finally:
        s.close()


def leftovers(d):
    return sorted(f for f in os.listdir(d) if f != "osv.sqlite3")


def test_download_and_import(server, tmp_path):
    server.files["/PyPI/all.zip"] = zip_bytes([GHSA_J8R2, WITHDRAWN_TEST])
    server.files["/npm/all.zip"] = zip_bytes([GHSA_35JH])
    db = str(tmp_path / "osv.sqlite3")
    seen = []
    res = update.update(db, [server.url + "/PyPI/all.zip", server.url + "/npm/all.zip"],
                        seen.append)
    assert (res.records, res.withdrawn, res.skipped, res.problems) == (2, 1, 0, [])
    assert ids(db) == {"GHSA-j8r2-6x86-q33q", "GHSA-35jh-r3h4-6jhm"}
    assert server.requests == ["/PyPI/all.zip", "/npm/all.zip"]
    assert any(m.endswith("downloaded") for m in seen) and "importing" in seen
    s = Store(db)
    assert s.counts() == {"PyPI": 1, "npm": 1}
    assert [x["source"] for x in s.sources()] == [server.url + "/PyPI/all.zip",
                                                  server.url + "/npm/all.zip"]
    s.close()
    assert leftovers(tmp_path) == []


def test_default_source_is_the_osv_export():
    assert update.source_url("Rocky Linux") == \
        "https://osv-vulnerabilities.storage.googleapis.com/Rocky%20Linux/all.zip"
    assert update.source_url("PyPI") == \
        "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"


@pytest.fixture
def previous(server, tmp_path):
    """A working database from an earlier update (DSA-5532-1 only)."""
    server.files["/old.zip"] = zip_bytes([DSA_5532_1])
    db = str(tmp_path / "osv.sqlite3")
    update.update(db, [server.url + "/old.zip"])
    return db, os.stat(db).st_ino


def assert_previous_kept(db, ino, tmp_path):
    assert os.stat(db).st_ino == ino
    assert ids(db) == {"DSA-5532-1"}
    assert leftovers(tmp_path) == []


def test_interrupted_download_keeps_previous(server, tmp_path, previous):
    db, ino = previous
    body = zip_bytes([GHSA_J8R2, GHSA_35JH])
    server.files["/new.zip"] = body
    server.cut["/new.zip"] = len(body) // 2
    with pytest.raises(update.UpdateFailed) as e:
        update.update(db, [server.url + "/new.zip"])
    assert f"{server.url}/new.zip: the connection closed after {len(body) // 2}" in str(e.value)
    assert "download incomplete" in str(e.value)
    assert_previous_kept(db, ino, tmp_path)


def test_one_failed_source_of_several_keeps_previous(server, tmp_path, previous):
    db, ino = previous
    server.files["/a.zip"] = zip_bytes([GHSA_J8R2])
    with pytest.raises(update.UpdateFailed, match=r"/missing\.zip: HTTP 404 Not Found"):
        update.update(db, [server.url + "/a.zip", server.url + "/missing.zip"])
    assert_previous_kept(db, ino, tmp_path)


def corrupt(body: bytes) -> bytes:
    """Flip bytes inside the first entry's compressed data (CRC or inflate error)."""
    with zipfile.ZipFile(__import__("io").BytesIO(body)) as z:
        info = z.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    b = bytearray(body)
    for i in range(start + 5, start + 15):
        b[i] ^= 0xFF
    return bytes(b)


def test_corrupt_zip_keeps_previous(server, tmp_path, previous):
    db, ino = previous
    server.files["/bad.zip"] = corrupt(zip_bytes([GHSA_J8R2, GHSA_35JH]))
    with pytest.raises(importer.ImportFailed) as e:
        update.update(db, [server.url + "/bad.zip"])
    assert f"{server.url}/bad.zip:GHSA-j8r2-6x86-q33q.json: corrupt zip entry" in str(e.value)
    assert_previous_kept(db, ino, tmp_path)


def test_not_a_zip_keeps_previous(server, tmp_path, previous):
    db, ino = previous
    server.files["/page.zip"] = b"<html>captive portal</html>"
    with pytest.raises(importer.ImportFailed, match="not a readable zip"):
        update.update(db, [server.url + "/page.zip"])
    assert_previous_kept(db, ino, tmp_path)


def test_zip_without_records_keeps_previous(server, tmp_path, previous):
    db, ino = previous
    server.files["/empty.zip"] = zip_bytes([], {"README.txt": b"nothing"})
    with pytest.raises(importer.ImportFailed, match="/empty.zip: no OSV record in it"):
        update.update(db, [server.url + "/empty.zip"])
    assert_previous_kept(db, ino, tmp_path)


def test_unreachable_server_keeps_previous(server, tmp_path, previous):
    db, ino = previous
    url = server.url
    server.close()
    with pytest.raises(update.UpdateFailed, match="cannot connect"):
        update.update(db, [url + "/x.zip"], timeout=5)
    assert_previous_kept(db, ino, tmp_path)
    server.httpd = type("Closed", (), {"shutdown": lambda s: None,
                                       "server_close": lambda s: None})()


def test_bad_records_are_reported_and_skipped(tmp_path):
    extra = {"broken.json": b"{not json", "list.json": b"[1, 2]",
             "noid.json": b'{"modified": "2024-01-01T00:00:00Z", "affected": []}',
             "badver.json": (b'{"id": "X-1", "modified": "2024-01-01T00:00:00Z", "affected": '
                             b'[{"package": {"ecosystem": "Debian:12", "name": "openssl"}, '
                             b'"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": '
                             b'"0"}, {"fixed": "not a version!"}]}]}]}')}
    z = str(tmp_path / "mixed.zip")
    with open(z, "wb") as f:
        f.write(zip_bytes([GHSA_J8R2], extra))
    res = importer.install(str(tmp_path / "osv.sqlite3"), [("mixed.zip", z)])
    assert (res.records, res.skipped) == (1, 4)
    got = sorted(res.problems)
    assert got[0].startswith("mixed.zip:badver.json: no affected package that can be matched "
                             "(affected[0].ranges[0].events[1]: fixed 'not a version!': not a "
                             "valid Debian version")
    assert got[1].startswith("mixed.zip:broken.json: not JSON:")
    assert got[2] == "mixed.zip:list.json: not an OSV record (a JSON object) (skipped)"
    assert got[3] == "mixed.zip:noid.json: id: missing (skipped)"


def test_import_directory_and_duplicates_keep_the_newer(tmp_path):
    d = write_dir(str(tmp_path / "export"), [GHSA_J8R2])
    newer = dict(GHSA_J8R2, modified="2030-01-01T00:00:00Z", summary="newer copy")
    z = str(tmp_path / "z.zip")
    with open(z, "wb") as f:
        f.write(zip_bytes([newer]))
    db = str(tmp_path / "osv.sqlite3")
    res = importer.install(db, [(d, d), (z, z)])
    assert res.records == 1
    s = Store(db)
    assert s.lookup("PyPI", "requests")[0][0].summary == "newer copy"
    s.close()


def test_import_of_missing_file_keeps_previous(tmp_path, server, previous):
    db, ino = previous
    with pytest.raises(importer.ImportFailed, match="no such file or directory"):
        importer.install(db, [("/nonexistent.zip", "/nonexistent.zip")])
    assert_previous_kept(db, ino, tmp_path)


def test_newer_import_replaces_atomically_while_a_reader_reads(tmp_path, server, previous):
    db, ino = previous
    reader = Store(db)                              # an open connection (a scan running)
    errors, rounds = [], [0]
    stop = threading.Event()

    def read():
        while not stop.is_set():
            try:
                hits = reader.lookup("Debian:12", "openssl")
                assert [v.id for v, _ in hits] == ["DSA-5532-1"]
                rounds[0] += 1
            except Exception as e:          # noqa: BLE001 -- any failure fails the test
                errors.append(repr(e))
                return
    t = threading.Thread(target=read)
    t.start()
    try:
        big = [dict(GHSA_J8R2, id=f"GHSA-test-{i:05d}") for i in range(1000)] + [GHSA_35JH]
        z = str(tmp_path / "new.zip")
        with open(z, "wb") as f:
            f.write(zip_bytes(big))
        importer.install(db, [("new.zip", z)])
    finally:
        stop.set()
        t.join()
    assert errors == [] and rounds[0] > 0
    assert os.stat(db).st_ino != ino
    # the old reader still reads the old database to its end; a new one sees the new
    assert [v.id for v, _ in reader.lookup("Debian:12", "openssl")] == ["DSA-5532-1"]
    assert reader.lookup("npm", "lodash") == []
    reader.close()
    new = Store(db)
    assert new.lookup("Debian:12", "openssl") == []
    assert [v.id for v, _ in new.lookup("npm", "lodash")] == ["GHSA-35jh-r3h4-6jhm"]
    new.close()
    os.unlink(z)
    assert leftovers(tmp_path) == []
