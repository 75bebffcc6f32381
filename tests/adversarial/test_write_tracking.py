"""Issue 21, finding 7: the kernel counts opens for writing per overlay inode (inode_writes),
so that drift prevention stops trusting an image file once its copy may have been written.
A container that opens more files for writing than the map holds used to leave every later
write uncounted — on the whole node — and an image binary patched after that ran
un-prevented. Now the map is sized by drift.write_tracking_entries and a write it cannot
count fails closed for that container's overlay, with an alert."""
from __future__ import annotations

KILLED = 137                        # runc exec's status for a process killed by SIGKILL
UNCOUNTED = "Mamori cannot count writes in a container"
MODIFIED = "Drift - modified image program run"
PROBE = "/usr/local/bin/probe"


def _exists(c, path):
    return c.sh(f"test -e {path}", check=False).returncode == 0


def test_a_full_write_count_map_fails_closed_and_says_so(agent_factory, containers):
    agent = agent_factory(drift={"prevent_all": True, "write_tracking_entries": 64})
    c = containers()
    # prevention is on: a copy of an image program is new drift and never runs
    c.sh(f"cp {PROBE} /tmp/p")
    r = c.exec("/tmp/p", "touch", "/tmp/m0", check=False)
    assert r.returncode == KILLED and not _exists(c, "/tmp/m0"), r
    m = agent.mark()
    # fill the node-wide map: 200 files opened for writing, more than its 64 entries
    c.sh("i=0; while [ $i -lt 200 ]; do : > /tmp/f$i; i=$((i+1)); done")
    # then patch the image's program in place, same size: its writes cannot be counted
    at = c.exec("cat", PROBE).stdout.find(b"usage: probe")
    assert at > 0
    c.sh(f"printf U | dd of={PROBE} bs=1 seek={at} conv=notrunc 2>/dev/null")
    assert c.exec("cat", PROBE).stdout[at:at + 12] == b"Usage: probe"
    r = c.exec(PROBE, "touch", "/tmp/m1", check=False)
    assert r.returncode == KILLED, r                     # before: it ran, not killed
    assert not _exists(c, "/tmp/m1")
    a = agent.wait_for(UNCOUNTED, since=m)
    f = a["fields"]
    assert (a["severity"], a["source"], f["container.id"], f["write_tracking.entries"]) == (
        "high", "agent", c.id, 64)
    assert f["write_tracking.uncounted"] >= 1 and f["write_tracking.device"] > 0
    assert "drift.write_tracking_entries: 64" in a["output"] and c.id in a["output"]
    d = agent.wait_for(MODIFIED, c.id, since=m)
    assert (d["fields"]["proc.exe"], d["fields"]["drift.kind"], d["fields"]["drift.prevented"]
            ) == (PROBE, "modified", True)
    # one alert per container, however many more writes go uncounted
    c.sh("i=0; while [ $i -lt 50 ]; do : > /tmp/g$i; i=$((i+1)); done")
    agent.assert_none(UNCOUNTED, since=agent.mark(), wait=2.5)
    assert len(agent.matching(UNCOUNTED, since=m)) == 1


def test_a_container_with_room_in_the_map_is_judged_as_before(agent_factory, containers):
    """The same patch with the map not full: counted, so a verified-unchanged copy runs
    and the patched one is killed — the count, not the fail-closed mark, decides."""
    agent = agent_factory(drift={"prevent_all": True})
    c = containers()
    m = agent.mark()
    c.sh(f"chmod 755 {PROBE}")                          # copied up, never opened to write
    r = c.exec(PROBE, "touch", "/tmp/m0", check=False)
    assert r.returncode == 0 and _exists(c, "/tmp/m0"), r
    at = c.exec("cat", PROBE).stdout.find(b"usage: probe")
    c.sh(f"printf U | dd of={PROBE} bs=1 seek={at} conv=notrunc 2>/dev/null")
    r = c.exec(PROBE, "touch", "/tmp/m1", check=False)
    assert r.returncode == KILLED and not _exists(c, "/tmp/m1"), r
    assert agent.matching(UNCOUNTED, since=m) == []
