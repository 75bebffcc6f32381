"""Issue 20, finding 8: whoever fills the journal's filesystem (container logs and emptyDirs
often share it) must not blind the node. Before: `journal.append` raised ENOSPC in the
evaluator thread, the thread died, no alert was raised any more, and /healthz said ok.

Here the journal lives on a real 256 KiB filesystem; a container reads /etc/shadow 400 times
(far more than 256 KiB of alerts); a later SSH-key read must still alert, on the output file
and on gRPC, with an alert of the agent's own and metrics saying that alerts are not being
persisted; when space returns the journal is written again and an alert says how many were
not persisted — and a replay says which."""
from __future__ import annotations

import os
import subprocess
import threading

import grpc

from agent.alerts.journal import read_records
from agent.api.gen.mamori.v1 import alerts_pb2 as pb
from agent.api.gen.mamori.v1 import alerts_pb2_grpc as pb_grpc
from testbed.waiting import wait_until

SHADOW, SSH = "Shadow file read in a container", "SSH private key read"


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


class Stream:
    """A live gRPC subscriber on the agent's unix socket, collecting in a thread."""

    def __init__(self, socket: str, **req):
        self.alerts: list = []
        self.call = pb_grpc.AlertsStub(grpc.insecure_channel(f"unix://{socket}")).Subscribe(
            pb.SubscribeRequest(**req))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for a in self.call:
                self.alerts.append(a)
        except grpc.RpcError:
            pass

    def close(self):
        self.call.cancel()


def test_a_full_journal_disk_degrades_to_live_delivery_and_recovers(agent_factory,
                                                                    containers, tmp_path):
    fs = tmp_path / "journal-fs"
    fs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(fs)], check=True)
    try:
        _scenario(agent_factory, containers, str(fs))
    finally:
        subprocess.run(["umount", "-l", str(fs)], check=False)


def _scenario(agent_factory, containers, fs):
    journal = os.path.join(fs, "journal")
    agent = agent_factory(alerts={"journal_dir": journal})
    c = containers()
    c.sh("mkdir -p /root/.ssh && echo not-a-real-key > /root/.ssh/id_rsa")
    live = Stream(agent.socket)
    assert wait_until(lambda: "mamori_subscribers 1.0" in agent.http("/metrics")[1], 10)
    m = agent.mark()
    c.sh("i=0; while [ $i -lt 400 ]; do cat /etc/shadow > /dev/null; i=$((i+1)); done",
         timeout=120)
    assert wait_until(lambda: len(agent.matching(SHADOW, c.id, since=m)) == 400, 60), \
        f"{len(agent.matching(SHADOW, c.id, since=m))} of 400 shadow reads alerted"
    lost = agent.wait_for("Mamori alerts not persisted", since=m, source="agent")
    f = lost["fields"]
    assert (lost["severity"], f["journal.dir"]) == ("high", journal)
    assert f["journal.error"].startswith("write: OSError: [Errno 28] No space left on device")
    first_lost = f["journal.first_not_persisted"]
    assert lost["output"].startswith(f"The alert journal in {journal} cannot be written")
    code, metrics = agent.http("/metrics")
    assert _metric(metrics, "mamori_journal_persisting") == 0
    assert _metric(metrics, "mamori_journal_write_errors_total") >= 1
    assert _metric(metrics, "mamori_journal_unpersisted_alerts_total") > 0
    assert agent.http("/healthz") == (200, "ok\n")            # alive, and detecting

    m2 = agent.mark()
    c.sh("cat /root/.ssh/id_rsa > /dev/null")
    ssh = agent.wait_for(SSH, c.id, since=m2)                 # the node is not blind
    assert ssh["fields"]["file.path"] == "/root/.ssh/id_rsa"
    assert ssh["seq"] > first_lost
    assert wait_until(lambda: any(a.rule == SSH for a in live.alerts), 10)
    [g] = [a for a in live.alerts if a.rule == SSH]
    assert (g.sequence, g.event.file.path, g.container.id) == (ssh["seq"],
                                                              "/root/.ssh/id_rsa", c.id)
    seqs = [a.sequence for a in live.alerts]                  # live: nothing skipped
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

    subprocess.run(["mount", "-o", "remount,size=16m", fs], check=True)   # space returns
    m3 = agent.mark()
    c.sh("cat /etc/shadow > /dev/null")
    back = agent.wait_for("Mamori alerts persisted again", since=m3, source="agent")
    after = agent.wait_for(SHADOW, c.id, since=m3)       # may come after the notice
    f = back["fields"]
    assert (back["severity"], f["journal.first_not_persisted"], f["journal.last_not_persisted"]
            ) == ("medium", first_lost, after["seq"] - 1)
    n = after["seq"] - first_lost
    assert f["journal.not_persisted"] == n
    assert f" {n} alerts (#{first_lost}..#{after['seq'] - 1}) were not persisted" in \
        back["output"]
    _, metrics = agent.http("/metrics")
    assert _metric(metrics, "mamori_journal_persisting") == 1
    assert _metric(metrics, "mamori_journal_unpersisted_alerts_total") == n
    on_disk = [r["seq"] for seg in sorted(os.listdir(journal))
               for r, _ in read_records(os.path.join(journal, seg))]
    assert on_disk == list(range(1, first_lost)) + [after["seq"], back["seq"]]

    # a replay from the start says which alerts the journal lacks, at the place they lack
    replay = Stream(agent.socket, since_sequence=0)
    assert wait_until(lambda: any(a.sequence == back["seq"] for a in replay.alerts), 10)
    notices = [a.notice for a in replay.alerts if a.HasField("notice")]
    assert [(x.not_persisted_first, x.not_persisted_last) for x in notices] == [
        (first_lost, after["seq"] - 1)]
    assert [a.sequence for a in replay.alerts if not a.HasField("notice")] == on_disk
    live.close()
    replay.close()
