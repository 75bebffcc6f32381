"""What an image's files cannot make the inventory do: read a host file through a planted
symbolic link, block on a FIFO, open a device, read a huge or sparse file whole, or walk
without end. Each is a clear error in the inventory, never an exception."""
import os
import threading

import images
from agent.inventory.extract import extract
from agent.inventory.rootfs import ImageFS, Limits


def _inv(root, limits=Limits()):
    with ImageFS.of_layers([str(root)], limits) as fs:
        return extract(fs)


def _host_secret(tmp_path):
    """A host file, outside the image, in dpkg's format: nothing of it may show up."""
    secret = tmp_path / "host" / "shadow"
    secret.parent.mkdir()
    secret.write_text("Package: host-secret\nStatus: install ok installed\nVersion: 6.6.6\n"
                      "Architecture: amd64\n")
    return str(secret)


def test_planted_symlinks_to_host_files_are_not_followed(tmp_path):
    root = tmp_path / "img"
    images.os_release(str(root), "debian", "12")
    secret = _host_secret(tmp_path)
    os.makedirs(root / "var/lib/dpkg/status.d")
    os.symlink(secret, root / "var/lib/dpkg/status")                 # absolute
    os.symlink("../../../../../../../../" + secret.lstrip("/"),
               root / "var/lib/dpkg/status.d/evil")                    # a .. chain
    os.makedirs(root / "lib/apk/db")
    os.symlink(secret, root / "lib/apk/db/installed")
    os.makedirs(root / "app/node_modules/evil")
    os.symlink(secret, root / "app/node_modules/evil/package.json")
    os.makedirs(root / "usr/lib/python3/dist-packages/evil-1.0.dist-info")
    os.symlink("/" + os.path.relpath(secret, "/"),
               root / "usr/lib/python3/dist-packages/evil-1.0.dist-info/METADATA")
    os.symlink(os.path.dirname(secret), root / "hostdir")               # a link to a dir
    opened = []
    real_open = os.open

    def spy(path, *a, **kw):
        opened.append(str(path))
        return real_open(path, *a, **kw)
    os.open = spy
    try:
        res = _inv(root)
    finally:
        os.open = real_open
    assert res.packages == []
    assert not any("host" in p and "shadow" in p for p in opened), opened
    assert all("6.6.6" not in e and "host-secret" not in e for e in res.errors)
    # each link was resolved inside the image, where its target does not exist
    assert any(e.startswith("/var/lib/dpkg/status.d/evil") for e in res.errors), res.errors


def test_fifos_and_devices_are_never_opened(tmp_path):
    root = tmp_path / "img"
    images.os_release(str(root), "alpine", "3.19.1")
    os.makedirs(root / "lib/apk/db")
    os.mkfifo(root / "lib/apk/db/installed")
    os.makedirs(root / "var/lib/dpkg")
    os.mknod(root / "var/lib/dpkg/status", 0o600 | 0o020000, os.makedev(1, 5))  # /dev/zero
    os.makedirs(root / "app/node_modules/x")
    os.mkfifo(root / "app/node_modules/x/package.json")
    done = []
    t = threading.Thread(target=lambda: done.append(_inv(root)), daemon=True)
    t.start()
    t.join(20)
    assert done, "the inventory blocked on a FIFO or a device"
    res = done[0]
    assert res.packages == []
    assert sorted(res.errors) == [
        "/app/node_modules/x/package.json: not a regular file (fifo)",
        "/lib/apk/db/installed: not a regular file (fifo)",
        "/var/lib/dpkg/status: not a regular file (character device)"]


def test_huge_and_sparse_files_are_refused_before_reading(tmp_path):
    root = tmp_path / "img"
    images.os_release(str(root), "debian", "12")
    os.makedirs(root / "var/lib/dpkg")
    with open(root / "var/lib/dpkg/status", "wb") as f:
        f.truncate(1 << 40)                                  # 1 TiB, sparse
    res = _inv(root, Limits(max_file_bytes=1 << 20))
    assert res.packages == []
    assert res.errors == [f"/var/lib/dpkg/status: {1 << 40} bytes, over the limit of "
                          f"{1 << 20}"]


def test_walks_are_bounded_in_files_and_depth(tmp_path):
    root = tmp_path / "img"
    images.npm_packages(str(root))
    for i in range(300):
        images.write(str(root), f"/data/f{i}", "")
    deep = root
    for i in range(12):
        deep = deep / "d"
    images.write(str(deep), "/node_modules/hidden/package.json",
                 '{"name": "hidden", "version": "1.0.0"}')
    res = _inv(root, Limits(max_files=100))
    assert res.truncated == "stopped after 100 files (inventory.max_files)"
    assert "walk: stopped after 100 files (inventory.max_files)" in res.errors
    res = _inv(root, Limits(max_depth=8))
    assert "pkg:npm/hidden@1.0.0" not in {p.purl for p in res.packages}
    assert {p.purl for p in res.packages} == images.NPM_PURLS
    assert res.truncated.endswith("deeper than 8 directories (inventory.max_depth)")


def test_malformed_json_and_metadata_are_per_file_errors(tmp_path):
    root = str(tmp_path / "img")
    images.write(root, "/app/node_modules/a/package.json", "{not json")
    images.write(root, "/app/node_modules/b/package.json", '{"name": "b"}')
    images.write(root, "/srv/x-1.dist-info/METADATA", "Summary: nothing\n")
    images.write(root, "/app/lib/bad.jar", b"PK\x03\x04 not really a zip")
    res = _inv(root)
    assert res.packages == []
    assert sorted(e.split(":")[0] for e in res.errors) == [
        "/app/lib/bad.jar", "/app/node_modules/a/package.json",
        "/app/node_modules/b/package.json", "/srv/x-1.dist-info/METADATA"]
