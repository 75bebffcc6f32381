"""On real runc containers over overlayfs (tests/testbed): the inventory of each image read
from its lower layers, shared by containers of one image, blind to the upper layer; the
memory cap; the /proc/PID/root fallback; CycloneDX 1.6 valid against the schema."""
import json
import os
import time
from dataclasses import replace

import pytest

import images
from agent.config import InventoryConfig
from agent.inventory.cyclonedx import document
from agent.inventory.store import DONE, TOO_LARGE
from agent.inventory.worker import InventoryWorker, run_capped
from agent.inventory.rootfs import Limits
from testbed.image import build_image
from testbed.runc import Container


@pytest.fixture(scope="module")
def app_image(tmp_path_factory):
    """Two image layers: a Debian-like base (busybox so the container runs, dpkg status)
    and an application layer on top (Python, npm, a jar, a Go binary), top first."""
    top = tmp_path_factory.mktemp("app-image")
    base = build_image(str(top / "base"))
    images.debian_layer(base)
    images.python_packages(base)
    app = str(top / "app")
    images.npm_packages(app)
    images.java_packages(app)
    images.write(app, "/usr/local/bin/hello", open(images.GO_FIXTURE, "rb").read(), 0o755)
    d = os.path.join(app, "usr/lib/python3/dist-packages")
    os.makedirs(d)
    os.mknod(os.path.join(d, "PyYAML-6.0.egg-info"), 0o600 | 0o020000, os.makedev(0, 0))
    return f"{app}:{base}"


EXPECTED = (images.DEBIAN_PURLS | images.PYTHON_PURLS - {"pkg:pypi/pyyaml@6.0"} |
            images.NPM_PURLS | images.MAVEN_PURLS |
            {"pkg:golang/example.com/hello@%28devel%29", "pkg:golang/example.com/greet@v1.2.3",
             "pkg:golang/stdlib@1.19.8"})


def _worker(**kw):
    w = InventoryWorker(replace(InventoryConfig(), **kw))
    w.start()
    return w


def _until(pred, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out")


def _done(w, key):
    return _until(lambda: (lambda i: i if i and i.state != "pending" else None)(
        w.store.get(key)))


def test_two_containers_of_one_image_share_one_inventory_blind_to_the_upper_layer(
        app_image, tmp_path):
    work = str(tmp_path)
    w = _worker()
    a = Container(app_image, work).start()
    b = None
    try:
        # the container installs a package at runtime: drift, not the image's
        a.sh("mkdir -p /usr/lib/python3/dist-packages/evil-1.0.dist-info && printf "
             "'Name: evil\\nVersion: 1.0\\n' > /usr/lib/python3/dist-packages/evil-1.0"
             ".dist-info/METADATA && rm -rf /app/node_modules/lodash")
        w.container_started(a.cgroup_id, a.cgroup_path, a.id)
        inv = _until(lambda: next((i for i in w.store.all() if i.state != "pending"), None))
        assert inv.state == DONE, inv.reason
        assert inv.key.startswith("layers:")
        assert inv.layers == tuple(app_image.split(":"))
        assert {p.purl for p in inv.packages} == EXPECTED
        assert (inv.os.id, inv.os.version_id) == ("debian", "12")
        b = Container(app_image, work).start()
        w.container_started(b.cgroup_id, b.cgroup_path, b.id)
        _until(lambda: len(inv.containers) == 2)
        assert len(w.store.all()) == 1 and w.counts[DONE] == 1      # read once
        w.container_gone(a.cgroup_id)
        _until(lambda: inv.containers == {b.id})
    finally:
        a.stop()
        if b is not None:
            b.stop()
        w.stop()


def test_an_image_id_from_the_runtime_keys_the_inventory(tmp_path):
    root = build_image(str(tmp_path / "alp"))
    images.alpine_layer(root)
    w = _worker()
    c = Container(root, str(tmp_path), annotations={
        "io.kubernetes.cri.image-id": "sha256:" + "ab" * 32,
        "io.kubernetes.cri.image-name": "docker.io/library/alpine:3.19"}).start()
    try:
        w.container_started(c.cgroup_id, c.cgroup_path, c.id)
        inv = _done(w, "sha256:" + "ab" * 32)
        assert (inv.image, inv.state) == ("docker.io/library/alpine:3.19", DONE)
        assert {p.purl for p in inv.packages} == {
            "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1",
            "pkg:apk/alpine/libcrypto3@3.1.4-r5?arch=x86_64&distro=alpine-3.19.1",
            "pkg:apk/alpine/ssl_client@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1"}
    finally:
        c.stop()
        w.stop()


def test_the_proc_root_fallback_reads_the_merged_view(tmp_path):
    root = build_image(str(tmp_path / "rpm"))
    images.rpm_layer(root)
    c = Container(root, str(tmp_path)).start()
    try:
        state, res, why = run_capped({"pid": c.pid}, Limits(), 512 << 20, 60)
        assert state == DONE, why
        assert {p.purl for p in res.packages} == images.RPM_PURLS
    finally:
        c.stop()


def _big_debian(root: str, n: int) -> None:
    images.os_release(root, "debian", "12")
    images.write(root, "/var/lib/dpkg/status", "".join(
        f"Package: pkg{i}\nStatus: install ok installed\nArchitecture: amd64\n"
        f"Version: 1.{i}-1\nSource: src{i % 97} (1.{i})\nDescription: d\n\n"
        for i in range(n)))


def test_memory_cap_marks_too_large_and_a_larger_cap_retries(tmp_path):
    root = build_image(str(tmp_path / "big"))
    _big_debian(root, 60_000)
    w = _worker(memory_limit=100 << 20)
    c = Container(root, str(tmp_path)).start()
    try:
        w.container_started(c.cgroup_id, c.cgroup_path, c.id)
        inv = _until(lambda: next((i for i in w.store.all() if i.state != "pending"), None))
        assert inv.state == TOO_LARGE
        assert inv.memory_limit == 100 << 20
        assert inv.reason == "over the memory limit of 100 MiB (inventory.memory_limit)"
        assert inv.packages == ()
        assert w._thread.is_alive()
        w.set_limits(memory_limit=1 << 30)
        _until(lambda: inv.state == DONE and len(inv.packages) == 60_000, timeout=120)
        assert inv.memory_limit == 1 << 30 and inv.attempts == 2
    finally:
        c.stop()
        w.stop()


def test_cyclonedx_1_6_is_valid_against_the_schema(app_image, tmp_path):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    w = _worker()
    c = Container(app_image, str(tmp_path)).start()
    try:
        w.container_started(c.cgroup_id, c.cgroup_path, c.id)
        inv = _until(lambda: next((i for i in w.store.all() if i.state == DONE), None))
        doc = document(inv)
        errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(doc)
        assert errors is None, errors
        bom = json.loads(doc)
        assert bom["specVersion"] == "1.6"
        assert bom["metadata"]["component"]["type"] == "container"
        comps = {x["purl"]: x for x in bom["components"] if "purl" in x}
        assert set(comps) == EXPECTED
        assert comps["pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"]["evidence"] == {
            "occurrences": [{"location": "/app/lib/log4j-core-2.14.1.jar"}]}
        os_comp = [x for x in bom["components"] if x["type"] == "operating-system"]
        assert [(x["name"], x["version"]) for x in os_comp] == [("debian", "12")]
        ssl = comps["pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12"]
        assert {p["name"]: p["value"] for p in ssl["properties"]} == {
            "mamori:source_name": "openssl", "mamori:source_version": "3.0.11-1~deb12u2"}
        # a broken document is rejected: the validator can fail
        bad = json.loads(doc)
        bad["components"][0]["type"] = "not-a-type"
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bad))
    finally:
        c.stop()
        w.stop()
