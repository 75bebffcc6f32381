"""Issue 21, findings 2 and 3: what an attacker puts before the part that matters must not
hide it. argv longer than the kernel's buffer keeps its head and its tail (so the last
arguments are seen), more arguments than the decoder keeps keeps the first and the last,
and truncation is a rule field with default rules on it."""
from __future__ import annotations

ARCHIVED = "Sensitive directories archived"
BASE64 = "Base64 decoding in a container"
ARGV_CUT = "Arguments too long to check in a container"
PATH_CUT = "Path too long to check in a container"


def _args(a):
    return a["fields"]["proc.args"]


def test_seventy_filler_arguments_before_the_target(agent_factory, containers):
    """More arguments than the decoder keeps (64): the first ones and the last ones."""
    agent = agent_factory()
    c = containers()
    m = agent.mark()
    fill = [f"/tmp/f{i}" for i in range(70)]
    c.exec("tar", "cf", "/tmp/o.tar", *fill, "/etc/shadow", check=False)
    a = agent.wait_for(ARCHIVED, c.id, since=m)
    args = _args(a)
    assert a["fields"]["proc.args_truncated"] is True
    assert args[:4] == ["tar", "cf", "/tmp/o.tar", "/tmp/f0"] and args[-2:] == [
        "/tmp/f69", "/etc/shadow"]
    assert len(args) == 64
    cut = agent.wait_for(ARGV_CUT, c.id, since=m)
    assert (cut["fields"]["proc.name"], cut["severity"]) == ("tar", "medium")


def test_one_huge_argument_before_the_target(agent_factory, containers):
    """argv longer than the kernel's buffer (4 KiB): its head and its last 1 KiB."""
    agent = agent_factory()
    c = containers()
    m = agent.mark()
    pad = "/tmp/" + "p" * 6000
    c.exec("tar", "cf", "/tmp/o.tar", pad, "/etc/shadow", check=False)
    a = agent.wait_for(ARCHIVED, c.id, since=m)
    args = _args(a)
    assert args[:3] == ["tar", "cf", "/tmp/o.tar"] and args[-1] == "/etc/shadow"
    # the padding's head (to 3 KiB of argv) and the part of it in the last KiB, both cut
    assert args[3] == pad[:3072 - len("tar\0cf\0/tmp/o.tar\0")]
    assert args[4] == "p" * (1024 - len("/etc/shadow\0") - 1)
    assert a["fields"]["proc.args_truncated"] is True
    m = agent.mark()
    c.exec("base64", "p" * 5000, "-d", check=False)
    b = agent.wait_for(BASE64, c.id, since=m)
    assert _args(b)[0] == "base64" and _args(b)[-1] == "-d"


def test_short_arguments_raise_nothing_about_length(agent_factory, containers):
    agent = agent_factory()
    c = containers()
    m = agent.mark()
    c.exec("tar", "cf", "/tmp/o.tar", "/etc/hostname", check=False)
    c.exec("cat", "/etc/hostname")
    agent.assert_none(ARGV_CUT, c.id, since=m)
    agent.assert_none(PATH_CUT, c.id, since=m, wait=0)


def test_a_file_deeper_than_the_resolved_path_keeps_is_flagged(agent_factory, containers):
    """Padding no longer cuts a path (file.path is the kernel's: tests/adversarial/
    test_path_spellings.py); a file more than 511 bytes deep does. Its path keeps its end
    (the file's own name, for rules on it), and the truncation rule fires."""
    agent = agent_factory()
    c = containers()
    deep = "/tmp/" + "/".join(["d" * 120] * 5)
    m = agent.mark()
    c.sh(f"mkdir -p {deep} && cd {deep} && touch s && cat s")
    a = agent.wait_for(PATH_CUT, c.id, since=m)
    f = a["fields"]
    assert (f["file.path_truncated"], f["event.kind"], f["file.resolved"]) == (True, "open", True)
    assert f["file.path"].endswith("/" + "d" * 120 + "/s") and len(f["file.path"]) < 512
    assert (deep + "/s").endswith(f["file.path"])
