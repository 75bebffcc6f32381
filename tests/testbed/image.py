"""A tiny container image folder: busybox-static and its applet links, plus whatever static
test helpers later tests add. Built once per test session."""
from __future__ import annotations

import os
import shutil
import subprocess

BUSYBOX = "/bin/busybox"


def build_image(root: str, helpers: dict[str, str] | None = None) -> str:
    """Make an image root filesystem under `root` and return its path. `helpers` maps a
    path inside the image to a static binary to copy there."""
    rootfs = os.path.join(root, "rootfs")
    if os.path.exists(os.path.join(rootfs, "bin", "busybox")):
        return rootfs
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp",
              "root", "var/log", "var/spool/cron/crontabs", "home/app"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(rootfs, "bin", "busybox"))
    applets = subprocess.check_output([BUSYBOX, "--list-full"]).decode().split()
    for applet in applets:
        link = os.path.join(rootfs, applet)
        if applet == "bin/busybox" or os.path.lexists(link):
            continue
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink("/bin/busybox", link)
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")
    with open(os.path.join(rootfs, "etc", "group"), "w") as f:
        f.write("root:x:0:\napp:x:1000:\n")
    with open(os.path.join(rootfs, "etc", "shadow"), "w") as f:
        f.write("root:*:19000:0:99999:7:::\napp:!:19000:0:99999:7:::\n")
    os.chmod(os.path.join(rootfs, "etc", "shadow"), 0o640)
    with open(os.path.join(rootfs, "etc", "hostname"), "w") as f:
        f.write("sandbox\n")
    for dest, src in (helpers or {}).items():
        target = os.path.join(rootfs, dest.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(src, target)
    return rootfs


PROBE_SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "helpers", "probe.c")


def build_image_with_programs(root: str, programs: dict[str, str]) -> str:
    """The test image (busybox, and probe at /usr/local/bin/probe) plus programs of its own:
    {path in the image: C source}, each built static with gcc — programs of the image, so
    that drift prevention lets them run."""
    helpers = {}
    for dest, source in {"/usr/local/bin/probe": None, **programs}.items():
        out = os.path.join(root, os.path.basename(dest))
        src = PROBE_SOURCE
        if source is not None:
            src = out + ".c"
            with open(src, "w") as f:
                f.write(source)
        subprocess.run(["gcc", "-static", "-O2", "-o", out, src], check=True)
        helpers[dest] = out
    return build_image(root, helpers=helpers)
