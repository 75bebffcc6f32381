"""Drift decisions that need no kernel: roots that are not overlays, volumes, scripts."""
from agent.context.containers import ContainerInfo, RootFS
from agent.drift.detector import DriftDetector
from agent.sensor.events import ExecEvent


def _exec(exe, args, fs="overlay", upper=False, lower=True, filename=None):
    hdr = ("exec", 1, 100, 100, 99, 7, 0, 0, "x", 5, 1, 1)
    return tuple.__new__(ExecEvent, hdr + (exe, 1, 1, fs, 1, False, False, upper, lower,
                                           False, filename or exe, tuple(args), False,
                                           "pipe", "pipe", "pipe"))


def _container(rootfs):
    return ContainerInfo("c1", "containerd", "/k/c1", rootfs=rootfs)


def test_a_root_that_is_not_an_overlay_is_reported_not_passed():
    d = DriftDetector().check(_exec("/bin/app", ["app"], fs="xfs"),
                              _container(RootFS("xfs")))
    assert (d.kind, d.path) == (None, "/bin/app")
    assert d.unknown_reason == ("the container's root is xfs, not overlay: it cannot be "
                                "compared with the image")


def test_a_program_on_a_volume_is_reported(tmp_path):
    root = RootFS("overlay", (str(tmp_path / "lower"),), str(tmp_path / "upper"))
    d = DriftDetector().check(_exec("/data/tool", ["tool"], fs="ext4"), _container(root))
    assert (d.kind, d.unknown_reason) == (None, "run from a volume (ext4), not from the image")


def test_scripts_against_the_layers(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "app").mkdir(parents=True)
    (upper / "tmp").mkdir(parents=True)
    (lower / "app" / "run.sh").write_text("echo image\n")
    (upper / "tmp" / "new.sh").write_text("echo new\n")
    c = _container(RootFS("overlay", (str(lower),), str(upper)))
    det = DriftDetector()
    assert det.check(_exec("/bin/busybox", ["sh", "/app/run.sh"]), c) is None
    d = det.check(_exec("/bin/busybox", ["sh", "/tmp/new.sh"]), c)
    assert (d.kind, d.path, d.script, d.size) == ("new", "/tmp/new.sh", True, 9)
    # a #! script run directly: exec.filename is the script, the program its interpreter
    d = det.check(_exec("/bin/busybox", ["/bin/sh", "/tmp/new.sh"], filename="/tmp/new.sh"),
                  c)
    assert (d.kind, d.path) == ("new", "/tmp/new.sh")
    (upper / "app").mkdir()
    (upper / "app" / "run.sh").write_text("echo changed\n")
    d = det.check(_exec("/bin/busybox", ["sh", "/app/run.sh"]), c)
    assert (d.kind, d.path) == ("modified", "/app/run.sh")
    assert det.check(_exec("/bin/busybox", ["sh", "-c", "echo inline"]), c) is None
    assert det.check(_exec("/bin/busybox", ["ls", "/tmp/new.sh"]), c) is None   # an applet
