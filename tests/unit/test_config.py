"""Configuration: defaults, overrides, and every mistake reported with its line."""
import pytest

from agent import config
from agent.cli import main


def _write(tmp_path, text):
    p = tmp_path / "m.yaml"
    p.write_text(text)
    return str(p)


def test_defaults_and_the_shipped_file_agree():
    import os
    shipped = config.load(os.path.join(os.path.dirname(__file__), "../../config/mamori.yaml"))
    assert shipped == config.load(None)


def test_values_and_overrides(tmp_path):
    p = _write(tmp_path, "node_name: n1\nsensor:\n  ring_bytes: 4Mi\n  families: [file]\n")
    c = config.load(p, {"sensor.all_processes": True})
    assert (c.node_name, c.sensor.ring_bytes, c.sensor.families, c.sensor.all_processes) == (
        "n1", 4 << 20, ("file",), True)


def test_every_error_is_reported_with_its_line(tmp_path):
    p = _write(tmp_path, "\n".join([
        "nodename: x",
        "sensor:",
        "  ring_bytes: lots",
        "  families: [file, disk]",
        "  poll_interval_ms: 0",
        "output:",
        "  kinds: [exec, teleport]",
    ]))
    with pytest.raises(config.ConfigError) as e:
        config.load(p)
    assert e.value.problems == [
        f"{p}:1: nodename: unknown key (known: alerts, api, context, drift, inventory, "
        "kubernetes, log_level, metrics, node_name, output, response, rules, sensor, vulndb)",
        f"{p}:4: sensor.families: unknown disk (known: process, file, net, priv)",
        f"{p}:3: sensor.ring_bytes: expected a size such as 16Mi, not 'lots'",
        f"{p}:5: sensor.poll_interval_ms: must be an integer from 1 to 1000",
        f"{p}:7: output.kinds: unknown kind 'teleport' (kinds: exec, fork, exit, mmap_exec, open, "
        "unlink, rename, chmod, connect, accept, bind, listen, ptrace, mount, umount, "
        "unshare, setns, setuid, setgid, memfd, module, io_uring, cgroup_mkdir, cgroup_rmdir, "
        "kill, mkdir, utime; "
        "families: "
        "process, file, net, priv, cgroup)",
    ]


def test_yaml_syntax_error_names_the_line(tmp_path):
    p = _write(tmp_path, "sensor:\n  ring_bytes: [1,\n")
    with pytest.raises(config.ConfigError, match=rf"{p}:3: YAML syntax"):
        config.load(p)


def test_kinds_accept_families_and_names():
    assert config.parse_kinds("exec,net") == ("exec", "connect", "accept", "bind", "listen")


def test_cli_rejects_bad_config_with_exit_2(tmp_path, capsys):
    p = _write(tmp_path, "sensor:\n  all_processes: maybe\n")
    assert main(["run", "--config", p]) == 2
    assert capsys.readouterr().err == (
        f"mamori: {p}:2: sensor.all_processes: must be true or false\n")
    assert main(["trace", "--kinds", "bogus"]) == 2
    assert "unknown kind 'bogus'" in capsys.readouterr().err
