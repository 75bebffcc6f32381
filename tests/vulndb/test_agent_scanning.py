"""The agent end to end (real eBPF, a real runc container over overlayfs): discovery sees the
container start, the inventory reads its image off the event path, the node scanner matches
it against the database, and matches it again when `vulndb import` replaces the database —
a vulnerability that appears for software already running shows without a restart. The
inventory is served over gRPC to `mamori inventory`, the database's state to /metrics, and
the agent keeps alerting meanwhile."""
from __future__ import annotations

import os
import sys
import urllib.request

from advisories import DSA_5532_1, _eco, pkg, write_zip
from agent import cli
from agent.vulndb import importer
from testbed.image import build_image
from testbed.live_agent import start_agent
from testbed.runc import Container
from testbed.waiting import value_within

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "inventory"))
import images  # noqa: E402 (tests/inventory/images.py: real-format package databases)

# DSA-5611-1 (glibc, CVE-2023-6246 and others): fixed in bookworm in 2.36-9+deb12u4; the
# image's libc6 (source glibc) is 2.36-9+deb12u3
DSA_5611_1 = {
    "id": "DSA-5611-1", "modified": "2024-01-31T00:00:00Z",
    "aliases": ["CVE-2023-6246", "CVE-2023-6779", "CVE-2023-6780"],
    "summary": "glibc - security update",
    "details": "A heap-based buffer overflow in __vsyslog_internal() of the GNU C Library.",
    "references": [{"type": "ADVISORY", "url": "https://www.debian.org/security/2024/dsa-5611"}],
    "affected": [pkg("Debian:12", "glibc", [_eco(fixed="2.36-9+deb12u4")])],
}
def test_an_image_is_inventoried_matched_and_matched_again_on_a_new_database(
        tmp_path, capsys):
    base = build_image(str(tmp_path / "image"))
    images.debian_layer(base)
    db = str(tmp_path / "osv.sqlite3")
    importer.install(db, [("v1", write_zip(str(tmp_path / "v1.zip"), [DSA_5532_1]))])
    sock = f"unix://{tmp_path}/mamori.sock"
    agent, alerts = start_agent(tmp_path, **{"api.listen": [sock],
                                             "metrics.listen": "127.0.0.1:0",
                                             "vulndb.path": db})
    c = None
    try:
        c = Container(base, str(tmp_path / "work")).start()
        res = value_within(lambda: next(iter(agent.vulns.results().values()), None))
        inv = agent.inventory.store.all()[0]
        assert (res.image, inv.state, inv.os.id, inv.os.version_id) == (
            inv.key, "done", "debian", "12")
        assert {p.purl for p in inv.packages} == images.DEBIAN_PURLS
        # libssl3 (source openssl) is at DSA-5532-1's fixed version: not vulnerable
        assert res.findings == () and res.problems == ()
        # a newer database, with a glibc advisory: the running libc6 is matched again
        importer.install(db, [("v2", write_zip(str(tmp_path / "v2.zip"),
                                               [DSA_5532_1, DSA_5611_1]))])
        res2 = value_within(lambda: (r := agent.vulns.results().get(inv.key)) is not None and
                      r.findings and r)
        assert [(f.id, f.package, f.installed, f.fixed, f.matched_name, f.aliases[0],
                 f.location) for f in res2.findings] == [
            ("DSA-5611-1", "libc6", "2.36-9+deb12u3", "2.36-9+deb12u4", "glibc",
             "CVE-2023-6246", "/var/lib/dpkg/status")]
        assert agent.vulns.rescans == 1
        # the agent alerts as before
        c.sh("cat /etc/shadow > /dev/null")
        value_within(lambda: any(a.rule == "Shadow read" for a in alerts), 10)
        # the inventory over gRPC, as `mamori inventory` shows it
        capsys.readouterr()
        assert cli.main(["inventory", "--server", sock]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["IMAGE", "OS", "PACKAGES", "STATE", "CONTAINERS"]
        assert lines[1].split() == [inv.key[:40], "debian", "12", "5", "done", "1"]
        # `vulndb update` with no source asks the agent which exports its images need
        from agent.api.client import channel
        from agent.api.gen.mamori.v1 import alerts_pb2 as pb, alerts_pb2_grpc as pb_grpc
        r = pb_grpc.AlertsStub(channel(sock)).ListInventories(pb.ListInventoriesRequest(),
                                                              timeout=5)
        assert [list(i.ecosystems) for i in r.images] == [["Debian"]]
        from agent.vulndb.cli import _node_ecosystems
        assert _node_ecosystems(type("A", (), {"server": sock, "config": None})) == (
            ["Debian"], "")
        # the database's state in /metrics
        body = urllib.request.urlopen(
            f"http://127.0.0.1:{agent.health.port}/metrics", timeout=5).read().decode()
        assert 'mamori_vulndb_records{ecosystem="Debian:12"} 2.0' in body
        assert "mamori_vulndb_stale 0.0" in body
        assert 'mamori_inventory_images_total{state="done"} 1.0' in body
    finally:
        if c is not None:
            c.stop()
        agent.stop()
