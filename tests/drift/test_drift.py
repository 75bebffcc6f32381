"""Drift on real runc containers over overlayfs: detection with the right kind, path and
sha256, and prevention in the kernel."""
import hashlib
import os
import time
from dataclasses import replace

import pytest

from agent import config
from agent.pipeline import Pipeline
from agent.rules.ruleset import load as load_rules
from agent.config import DEFAULT_RULES
from testbed import runc


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Feed:
    def __init__(self, pipe):
        self.pipe, self.items = pipe, []

    def exec_of(self, c, args, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.items += self.pipe.step()
            for i in self.items:
                if i.kind == "exec" and i.container is not None and i.container.id == c.id \
                        and i.event.args == tuple(args):
                    return i
            time.sleep(0.02)
        raise AssertionError(f"no exec of {args} in {c.id}")

    def exit_of(self, pid, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.items += self.pipe.step()
            for i in self.items:
                if i.kind == "exit" and i.event.pid == pid:
                    return i
            time.sleep(0.02)
        raise AssertionError(f"no exit of {pid}")


def _pipe(**drift):
    cfg = config.load(None, {"kubernetes.mode": "off", **runc.agent_overrides()})
    cfg = replace(cfg, drift=replace(cfg.drift, **drift))
    p = Pipeline(cfg)
    p.start()
    return p


@pytest.fixture(scope="module")
def detect():
    p = _pipe()
    yield Feed(p)
    p.close()


@pytest.fixture(scope="module")
def prevent():
    p = _pipe(prevent_all=True)
    yield Feed(p)
    p.close()


def test_image_program_is_not_drift(detect, containers):
    c = containers()
    c.exec("/bin/true", "image")
    item = detect.exec_of(c, ["/bin/true", "image"])
    assert item.drift is None
    assert (item.event.exe_upper, item.event.exe_lower) == (False, True)


def test_copied_program_is_new_drift_with_its_sha256(detect, containers, image):
    c = containers()
    c.sh("cp /bin/busybox /tmp/x && chmod +x /tmp/x")
    c.exec("/tmp/x", "true", check=False)        # busybox as "x": no such applet, still runs
    d = detect.exec_of(c, ["/tmp/x", "true"]).drift
    assert (d.kind, d.path, d.script, d.prevented) == ("new", "/tmp/x", False, False)
    assert (d.size, d.sha256) == (os.path.getsize(image + "/bin/busybox"),
                                  _sha(image + "/bin/busybox"))
    assert d.unknown_reason is None


def test_image_program_overwritten_in_place_is_modified(detect, containers):
    c = containers()
    c.sh("cp /bin/busybox /usr/local/bin/probe")
    c.exec("/usr/local/bin/probe", "true", check=False)
    item = detect.exec_of(c, ["/usr/local/bin/probe", "true"])
    assert (item.event.exe_upper, item.event.exe_lower) == (True, True)
    d = item.drift
    assert (d.kind, d.path) == ("modified", "/usr/local/bin/probe")
    assert d.sha256 == _sha(os.path.join(c.upper, "usr/local/bin/probe"))


def test_copy_up_without_change_is_not_drift(detect, containers):
    c = containers()
    c.sh("/bin/touch /usr/local/bin/probe && chmod 755 /usr/local/bin/probe")
    assert os.path.exists(os.path.join(c.upper, "usr/local/bin/probe"))  # copied up
    c.exec("/usr/local/bin/probe", "traceme")
    item = detect.exec_of(c, ["/usr/local/bin/probe", "traceme"])
    assert item.event.exe_upper and item.event.exe_lower
    assert item.drift is None


def test_script_written_at_runtime_is_drift(detect, containers):
    c = containers()
    c.sh("printf 'echo hi\\n' > /tmp/s.sh")
    c.exec("/bin/sh", "/tmp/s.sh")
    d = detect.exec_of(c, ["/bin/sh", "/tmp/s.sh"]).drift
    assert (d.kind, d.path, d.script) == ("new", "/tmp/s.sh", True)
    assert d.sha256 == hashlib.sha256(b"echo hi\n").hexdigest()
    c.exec("/bin/sh", "-c", "echo inline")
    assert detect.exec_of(c, ["/bin/sh", "-c", "echo inline"]).drift is None


def test_program_run_from_memory_is_fileless(detect, containers, image):
    c = containers()
    proc = c.popen("/usr/local/bin/probe", "memfd-exec", "sleep", "3")
    item = detect.exec_of(c, ["sleep", "3"])      # hashed while it runs
    proc.wait()
    assert item.event.exe_detached is True
    d = item.drift
    assert (d.kind, d.path) == ("fileless", "/memfd:payload")
    assert d.sha256 == _sha(image + "/bin/busybox")


def test_allow_listed_image_and_path_raise_no_alert(detect, containers, tmp_path):
    c = containers()
    c.sh("cp /bin/busybox /tmp/allowed && cp /bin/busybox /tmp/other")
    c.exec("/tmp/allowed", "true", check=False)
    c.exec("/tmp/other", "true", check=False)
    allowed = detect.exec_of(c, ["/tmp/allowed", "true"])
    other = detect.exec_of(c, ["/tmp/other", "true"])
    user = tmp_path / "tuning.yaml"
    user.write_text(
        "- rule: Drift - new program run in a container\n"
        "  exceptions:\n"
        "    - name: our_tools\n"
        "      fields: [container.id, drift.path]\n"
        "      comps: [glob, '=']\n"
        f"      values: [['{c.id[:8]}*', /tmp/allowed]]\n"
        "  override: {exceptions: append}\n")
    rs, problems = load_rules([DEFAULT_RULES, str(user)])
    assert rs is not None, [str(p) for p in problems]
    names = lambda item: {r.name for r in rs.evaluate(item)}  # noqa: E731
    assert "Drift - new program run in a container" not in names(allowed)
    assert "Drift - new program run in a container" in names(other)


def test_prevention_kills_drift_before_its_first_action(prevent, containers):
    c = containers()
    assert _wait_enforced(prevent, c)
    c.sh("cp /usr/local/bin/probe /tmp/p && chmod +x /tmp/p")
    r = c.exec("/tmp/p", "touch", "/tmp/marker", check=False)
    assert r.returncode != 0
    item = prevent.exec_of(c, ["/tmp/p", "touch", "/tmp/marker"])
    assert item.event.prevented is True
    assert (item.drift.kind, item.drift.prevented) == ("new", True)
    assert not os.path.exists(os.path.join(c.upper, "tmp/marker"))
    ex = prevent.exit_of(item.event.pid)
    assert (ex.event.signal, ex.event.code) == (9, None)


def test_prevention_lets_unchanged_copy_ups_run(prevent, containers):
    c = containers()
    assert _wait_enforced(prevent, c)
    # chmod / touch: copied up without any open for writing -> allowed by the kernel alone
    c.sh("chmod 755 /usr/local/bin/probe")
    r = c.exec("/usr/local/bin/probe", "touch", "/tmp/after-chmod")
    assert r.returncode == 0 and os.path.exists(os.path.join(c.upper, "tmp/after-chmod"))
    # opened for writing but not changed: allowed once user space compared it with the image
    c.sh("cp /bin/busybox /tmp/keep && : >> /usr/local/bin/probe")
    assert _wait(lambda: prevent.pipe.prevention.verified >= 1, prevent)
    r = c.exec("/usr/local/bin/probe", "touch", "/tmp/after-open")
    assert r.returncode == 0 and os.path.exists(os.path.join(c.upper, "tmp/after-open"))
    item = prevent.exec_of(c, ["/usr/local/bin/probe", "touch", "/tmp/after-open"])
    assert item.event.prevented is False and item.drift is None
    # and once it has really been changed, it is stopped again
    c.sh("echo >> /usr/local/bin/probe")
    r = c.exec("/usr/local/bin/probe", "touch", "/tmp/after-change", check=False)
    assert r.returncode != 0
    assert not os.path.exists(os.path.join(c.upper, "tmp/after-change"))


def test_without_prevention_drift_runs_and_is_reported(detect, containers):
    c = containers()
    c.sh("cp /usr/local/bin/probe /tmp/p")
    c.exec("/tmp/p", "touch", "/tmp/marker")
    assert os.path.exists(os.path.join(c.upper, "tmp/marker"))
    item = detect.exec_of(c, ["/tmp/p", "touch", "/tmp/marker"])
    assert (item.event.prevented, item.drift.kind, item.drift.prevented) == (False, "new", False)


def _wait(pred, feed, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        feed.items += feed.pipe.step()
        if pred():
            return True
        time.sleep(0.02)
    return False


def _wait_enforced(feed, c):
    return _wait(lambda: c.cgroup_id in feed.pipe.prevention.enforced, feed)


# -- issue 20: the kernel's layer facts decide; files are read safely and boundedly --------
def test_hard_link_of_an_image_program_is_the_image_and_a_changed_one_modified(detect,
                                                                              containers):
    c = containers()
    c.sh("ln /bin/busybox /root/bb")
    c.exec("/root/bb", "true", check=False)       # "bb: applet not found", but it ran
    item = detect.exec_of(c, ["/root/bb", "true"])
    assert (item.event.exe_upper, item.event.exe_lower) == (True, True)
    assert item.drift is None                      # compared with its origin: unchanged
    c.sh("ln /usr/local/bin/probe /root/p && echo >> /root/p")
    c.exec("/root/p", "traceme", check=False)
    d = detect.exec_of(c, ["/root/p", "traceme"]).drift
    assert (d.kind, d.path, d.unknown_reason, d.hash_error) == ("modified", "/root/p", None,
                                                                 None)
    assert d.sha256 == _sha(os.path.join(c.upper, "root/p"))


def test_a_program_that_deletes_itself_is_new_drift_from_the_kernel_facts(detect, containers,
                                                                          image):
    c = containers()
    c.sh("cp /bin/busybox /tmp/sh")
    p = c.popen("/tmp/sh", "-c", "rm /tmp/sh; sleep 5")
    try:
        d = detect.exec_of(c, ["/tmp/sh", "-c", "rm /tmp/sh; sleep 5"]).drift
        assert (d.kind, d.path, d.script, d.unknown_reason) == ("new", "/tmp/sh", False, None)
        assert (d.size, d.sha256, d.hash_error) == (
            os.path.getsize(image + "/bin/busybox"), _sha(image + "/bin/busybox"), None)
    finally:
        p.kill()


def test_an_oversized_or_fifo_script_is_reported_without_reading_it(detect, containers):
    c = containers()
    c.sh("printf 'sleep 5\\n' > /tmp/big.sh && truncate -s 1099511627776 /tmp/big.sh && "
         "mkfifo /tmp/f.sh")
    p = c.popen("/bin/sh", "/tmp/big.sh")
    q = c.popen("/bin/sh", "/tmp/f.sh")
    try:
        d = detect.exec_of(c, ["/bin/sh", "/tmp/big.sh"]).drift
        assert (d.kind, d.path, d.script, d.size, d.sha256, d.hash_error) == (
            "new", "/tmp/big.sh", True, 1 << 40, None,
            "larger than 64 MiB (drift.hash_max_bytes), not hashed")
        d = detect.exec_of(c, ["/bin/sh", "/tmp/f.sh"]).drift
        assert (d.kind, d.path, d.size, d.sha256, d.hash_error) == (
            "new", "/tmp/f.sh", None, None, "not a regular file (fifo)")
    finally:
        p.kill()
        q.kill()
