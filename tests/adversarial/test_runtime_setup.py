"""Issue 20, finding 1: a container must not be able to pass for the runtime's own setup.

Before: a process whose comm was runc/crun/conmon/`runc:[…` or whose exe ended in /runc
counted as runtime setup, and every rule (through the container_workload macro) and drift
skipped it. comm and file names are the attacker's."""

import subprocess

SHADOW = "Shadow file read in a container"
NEW_PROGRAM = "Drift - new program run in a container"


def test_a_spoofed_comm_does_not_silence_the_rules(agent_factory, containers):
    agent = agent_factory()
    c = containers()
    for comm in ("runc", "runc:[2:INIT]", "crun", "conmon"):
        m = agent.mark()
        c.sh(f"printf '{comm}' >/proc/self/comm; read l </etc/shadow; true")
        a = agent.wait_for(SHADOW, c.id, since=m)
        assert a["fields"]["file.path"] == "/etc/shadow"
        assert a["fields"]["proc.runtime_setup"] is False
        assert a["fields"]["proc.name"] == "sh"     # the program it was run as, not comm


def test_a_binary_saved_as_runc_is_drift_and_its_acts_are_seen(agent_factory, containers):
    agent = agent_factory()
    c = containers()
    m = agent.mark()
    # the dropped program (the test helper, copied) runs cat on the shadow file
    c.sh("cp /usr/local/bin/probe /root/runc; /root/runc spawn /bin/cat /etc/shadow "
         ">/dev/null")
    d = agent.wait_for(NEW_PROGRAM, c.id, since=m)
    assert (d["fields"]["proc.exe"], d["fields"]["drift.kind"]) == ("/root/runc", "new")
    assert d["fields"]["proc.runtime_setup"] is False
    a = agent.wait_for(SHADOW, c.id, since=m)
    assert a["fields"]["proc.pexe"] == "/root/runc"
    assert a["fields"]["proc.runtime_setup"] is False


def test_the_runtimes_own_setup_still_raises_nothing(agent_factory, containers):
    """runc's init mounts, chmods /dev and reads /etc/passwd in the container's cgroup
    before the workload's first program: it is the setup (its parent is on the host), and
    none of it is an alert."""
    agent = agent_factory()
    m = agent.mark()
    c = containers()
    c.exec("/bin/true")
    agent.assert_none(None, c.id, since=m, wait=2)


def test_concurrent_runc_execs_are_setup_too(agent_factory, containers):
    """Eight `runc exec` at once: each init is moved into the container from the host (the
    kernel's record of the move, not its name, says so) and raises nothing before its
    program runs."""
    agent = agent_factory()
    c = containers()
    m = agent.mark()
    procs = [c.popen("/bin/sleep", "1", stdout=subprocess.DEVNULL) for _ in range(8)]
    for p in procs:
        assert p.wait(timeout=30) == 0
    agent.assert_none(None, c.id, since=m, wait=2)
