"""Scanner: inventories remembered, rescanned when the database is replaced; new images
scanned at once; a bad new file does not replace the database in use."""
from __future__ import annotations

import os
import threading

from advisories import DSA_5532_1, GHSA_35JH, write_zip
from agent.inventory.package import OSRelease, Package
from agent.vulndb import importer
from agent.vulndb.scanner import Scanner

DEB = (OSRelease("debian", "12", "bookworm"),
       [Package("deb", "libssl3", "3.0.11-1~deb12u1", "openssl", "3.0.11-1~deb12u1"),
        Package("npm", "lodash", "4.17.20", location="/app/node_modules/lodash/package.json")])


def test_rescan_when_the_database_changes(tmp_path):
    db = str(tmp_path / "osv.sqlite3")
    importer.install(db, [("v1", write_zip(str(tmp_path / "v1.zip"), [DSA_5532_1]))])
    results = []
    sc = Scanner(db, on_result=results.append)
    r = sc.scan("sha256:aaa", *DEB)
    assert [(f.id, f.package) for f in r.findings] == [("DSA-5532-1", "libssl3")]
    assert sc.refresh() == {}                               # nothing changed: no rescan
    # a new database with a vulnerability for what is already running
    importer.install(db, [("v2", write_zip(str(tmp_path / "v2.zip"),
                                           [DSA_5532_1, GHSA_35JH]))])
    changed = sc.refresh()
    assert list(changed) == ["sha256:aaa"]
    assert [(f.id, f.package, f.location) for f in changed["sha256:aaa"].findings] == [
        ("DSA-5532-1", "libssl3", ""),
        ("GHSA-35jh-r3h4-6jhm", "lodash", "/app/node_modules/lodash/package.json")]
    assert sc.result("sha256:aaa") is changed["sha256:aaa"]
    assert [x.image for x in results] == ["sha256:aaa", "sha256:aaa"]
    # a new image is matched at once against the current database
    r2 = sc.scan("sha256:bbb", OSRelease(), [Package("npm", "lodash", "4.17.21")])
    assert r2.findings == ()
    assert sc.images() == ["sha256:aaa", "sha256:bbb"]
    sc.forget("sha256:aaa")
    assert sc.images() == ["sha256:bbb"] and sc.result("sha256:aaa") is None
    sc.close()


def test_no_database_then_one_appears(tmp_path):
    db = str(tmp_path / "osv.sqlite3")
    sc = Scanner(db)
    r = sc.scan("img", *DEB)
    assert r.findings == () and r.problems[0].startswith("no vulnerability database at")
    assert r.database_built_at == ""
    importer.install(db, [("v1", write_zip(str(tmp_path / "v1.zip"), [GHSA_35JH]))])
    changed = sc.refresh()
    assert [f.id for f in changed["img"].findings] == ["GHSA-35jh-r3h4-6jhm"]
    assert changed["img"].database_built_at != ""
    sc.close()


def test_a_bad_file_swapped_in_does_not_replace_the_open_database(tmp_path):
    db = str(tmp_path / "osv.sqlite3")
    importer.install(db, [("v1", write_zip(str(tmp_path / "v1.zip"), [GHSA_35JH]))])
    sc = Scanner(db)
    assert len(sc.scan("img", *DEB).findings) == 1
    bad = str(tmp_path / "garbage")
    with open(bad, "wb") as f:
        f.write(b"this is not sqlite" * 100)
    os.replace(bad, db)                 # someone copies a wrong file in place
    assert sc.refresh() == {}
    assert "not a Mamori vulnerability database" in sc.database_error()
    assert len(sc.rescan_all()["img"].findings) == 1        # still the database it had
    sc.close()


def test_scans_from_worker_threads(tmp_path):
    db = str(tmp_path / "osv.sqlite3")
    importer.install(db, [("v1", write_zip(str(tmp_path / "v1.zip"), [DSA_5532_1, GHSA_35JH]))])
    sc = Scanner(db)
    out, errors = {}, []

    def work(i):
        try:
            out[i] = len(sc.scan(f"img{i}", *DEB).findings)
        except Exception as e:      # noqa: BLE001
            errors.append(repr(e))
    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == [] and out == {i: 2 for i in range(8)}
    sc.close()
