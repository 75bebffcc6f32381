"""A real Debian 12 (bookworm) image for the tests, built from Debian packages with
mmdebstrap, the way users' images are: bash, python3, curl, wget, nginx, logrotate, cron,
sudo, procps… with dpkg's database kept, an unprivileged user `app` (uid 1000) and the test
helper `probe` at /usr/local/bin/probe, like the busybox image (testbed/image.py).

Built once per machine and cached under CACHE_ROOT, keyed by what goes into it. Several
pytest processes run at once (scripts/pytest_parallel.py): the first to ask builds, under a
lock, into a temporary directory renamed into place when complete; the others wait for it.
A build that cannot run (not root, mmdebstrap missing, no mirror, no network) raises
ImageBuildError saying what is missing: tests never skip for it."""
from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from testbed.image import PROBE_SOURCE

SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = ("bash", "python3", "curl", "wget", "nginx-light", "logrotate",
            "cron", "sudo", "procps", "util-linux", "findutils", "gawk", "less", "perl",
            "gzip", "ca-certificates", "gettext-base", "passwd")
APP_USER = ("app", 1000, "/home/app")
# Bump when the build below changes what it makes: the cache key includes it.
SCRIPT_VERSION = 1
CACHE_ROOT = "/var/cache/mamori-tests"
BUILD_TIMEOUT = 900           # seconds for mmdebstrap; a cold build takes well under one
LOCK_TIMEOUT = BUILD_TIMEOUT + 120   # waiting for another process's build

APT_SOURCES_DIR = "/etc/apt/sources.list.d"
APT_SOURCES_LIST = "/etc/apt/sources.list"


class ImageBuildError(RuntimeError):
    """The Debian image cannot be built here; the message says what is missing."""


# -- the machine's own mirrors -----------------------------------------------------------
def apt_mirrors(sources_dir: str = APT_SOURCES_DIR,
                sources_list: str = APT_SOURCES_LIST) -> list[str]:
    """One-line `deb URI SUITE COMPONENTS` entries for every bookworm suite this machine's
    apt sources name (deb822 *.sources files and the classic sources.list), in their order:
    the build fetches from where this machine's own apt does, and nowhere else."""
    entries = []
    for path in sorted(glob.glob(os.path.join(sources_dir, "*.sources"))):
        with open(path) as f:
            entries += _deb822_entries(f.read())
    paths = [sources_list] + sorted(glob.glob(os.path.join(sources_dir, "*.list")))
    for path in paths:
        try:
            with open(path) as f:
                entries += _one_line_entries(f.read())
        except FileNotFoundError:
            pass
    lines = []
    for uri, suite, components in entries:
        line = f"deb {uri} {suite} {' '.join(components)}"
        if (suite == SUITE or suite.startswith(SUITE + "-")) and line not in lines:
            lines.append(line)
    return lines


def _deb822_entries(text: str) -> list[tuple[str, str, list[str]]]:
    """(URI, suite, components) of each enabled `Types: deb` stanza of a .sources file."""
    out = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0].isspace() and key:            # a continuation line
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                out.append((uri, suite, fields.get("components", "main").split()))
    return out


def _one_line_entries(text: str) -> list[tuple[str, str, list[str]]]:
    """(URI, suite, components) of each `deb [options] URI SUITE COMPONENTS…` line."""
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):         # [signed-by=… arch=…]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            out.append((words[0], words[1], words[2:] or ["main"]))
    return out


# -- paths inside an image ---------------------------------------------------------------
def inside(root: str, path: str) -> str:
    """The host path of `path` as the image at `root` sees it: every symlink on the way is
    followed inside the image (an absolute target starts again at `root`, `..` stops at
    it). Write into an image only there: root + path may go through a link such as
    `var/run -> /run` and land on the host."""
    todo = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        host = os.path.join(root, *done, part)
        if os.path.islink(host):
            links += 1
            if links > 40:
                raise OSError(errno.ELOOP, "too many symbolic links in the image", path)
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        done.append(part)
    return os.path.join(root, *done)


def write_inside(root: str, path: str, text: str, mode: int = 0o644) -> str:
    """Write a file into the image at `root` (paths resolved by inside()); its host path."""
    target = inside(root, path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w") as f:
        f.write(text)
    os.chmod(target, mode)
    return target


# -- the cache ---------------------------------------------------------------------------
def cache_key() -> str:
    """A short hash of everything that decides the image's content."""
    with open(PROBE_SOURCE, "rb") as f:
        probe = hashlib.sha256(f.read()).hexdigest()
    spec = {"suite": SUITE, "variant": VARIANT, "packages": sorted(PACKAGES),
            "user": APP_USER, "script": SCRIPT_VERSION, "probe": probe}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def build_debian_image(cache_root: str = CACHE_ROOT) -> str:
    """The cached image's root filesystem, built first if it is not there yet."""
    if os.geteuid() != 0:
        raise ImageBuildError("building the Debian test image needs root "
                              "(mmdebstrap --mode=root): run the tests with sudo")
    name = f"debian12-{cache_key()}"
    final = os.path.join(cache_root, name)
    rootfs = os.path.join(final, "rootfs")
    if os.path.isdir(rootfs):
        return rootfs
    os.makedirs(cache_root, exist_ok=True)
    with _locked(os.path.join(cache_root, name + ".lock")):
        if os.path.isdir(rootfs):                  # another process built it meanwhile
            return rootfs
        for stale in glob.glob(os.path.join(cache_root, name + ".build-*")):
            _remove_build_dir(stale)               # a build that was killed
        build = tempfile.mkdtemp(prefix=name + ".build-", dir=cache_root)
        os.chmod(build, 0o755)
        try:
            _build(os.path.join(build, "rootfs"), build)
            os.rename(build, final)
        finally:
            if os.path.exists(build):
                _remove_build_dir(build)
    return rootfs


class _locked:
    """An exclusive flock on `path`, waited for at most LOCK_TIMEOUT seconds."""

    def __init__(self, path: str):
        self.path = path
        self.fd = -1

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise ImageBuildError(f"waited {LOCK_TIMEOUT} s for another process's "
                                          f"build of the Debian image ({self.path})")
                time.sleep(0.5)

    def __exit__(self, *exc):
        os.close(self.fd)                          # releases the lock


def _remove_build_dir(path: str) -> None:
    """Remove a build directory — after unmounting what a killed mmdebstrap may have left
    mounted below it (its /proc, /sys, /dev binds): removing through those would delete the
    host's files."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    below = sorted((p for p in points if p == real or p.startswith(real + "/")),
                   key=len, reverse=True)
    for p in below:
        subprocess.run(["umount", "-l", p], capture_output=True)
    with open("/proc/self/mountinfo") as f:
        if any(line.split()[4].startswith(real + "/") for line in f):
            raise ImageBuildError(f"cannot unmount everything below {real}: remove it by hand")
    shutil.rmtree(real, ignore_errors=True)


# -- the build ---------------------------------------------------------------------------
def _build(rootfs: str, scratch: str) -> None:
    """mmdebstrap the image into `rootfs`, then finish it as an image is finished."""
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError("mmdebstrap is not installed: apt-get install mmdebstrap "
                              "(scripts/setup.sh installs it)")
    if shutil.which("gcc") is None:
        raise ImageBuildError("gcc is not installed (needed for the probe helper): "
                              "apt-get install gcc libc6-dev")
    mirrors = apt_mirrors()
    if not mirrors:
        raise ImageBuildError(f"no {SUITE} mirror in this machine's apt sources "
                              f"({APT_SOURCES_DIR}/*.sources, {APT_SOURCES_LIST})")
    probe = os.path.join(scratch, "probe")
    r = subprocess.run(["gcc", "-static", "-O2", "-o", probe, PROBE_SOURCE],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise ImageBuildError(f"gcc could not build {PROBE_SOURCE} static (libc6-dev "
                              f"installed?):\n{r.stderr[-2000:]}")
    _mmdebstrap(rootfs, mirrors)
    _finish(rootfs, probe)


def _mmdebstrap(rootfs: str, mirrors: list[str]) -> None:
    """Run mmdebstrap, bounded; on a timeout it is sent SIGTERM first, so that it unmounts
    what it mounted in the target."""
    cmd = ["mmdebstrap", "--mode=root", f"--variant={VARIANT}", "--quiet",
           "--include=" + ",".join(PACKAGES), SUITE, rootfs, *mirrors]
    log = os.path.join(os.path.dirname(rootfs), "mmdebstrap.log")
    with open(log, "wb") as out:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        try:
            rc = p.wait(timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            raise ImageBuildError(f"mmdebstrap took more than {BUILD_TIMEOUT} s") from None
    if rc != 0:
        with open(log, errors="replace") as f:
            tail = "".join(f.readlines()[-25:])
        uris = sorted({m.split()[1] for m in mirrors})
        raise ImageBuildError(f"mmdebstrap failed (exit {rc}; can this machine reach "
                              f"{', '.join(uris)}?):\n{' '.join(cmd)}\n{tail}")


def _finish(rootfs: str, probe: str) -> None:
    """What a real image has beyond the packages: the runtime-neutral /etc files, the
    application user, and the test helper."""
    # the runtime provides resolv.conf; mmdebstrap copied the host's in
    resolv = os.path.join(inside(rootfs, "/etc"), "resolv.conf")
    if os.path.lexists(resolv):
        os.remove(resolv)
    write_inside(rootfs, "/etc/hostname", "sandbox\n")
    write_inside(rootfs, "/etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"
                                       "127.0.1.1\tsandbox\n")
    user, uid, home = APP_USER
    subprocess.run(["chroot", rootfs, "useradd", "--create-home", "--home-dir", home,
                    "--uid", str(uid), "--user-group", "--shell", "/bin/bash", user],
                   check=True, capture_output=True)
    target = inside(rootfs, "/usr/local/bin/probe")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy2(probe, target)
    _check(rootfs)


def _check(rootfs: str) -> None:
    """The image has what the tests rely on, or the build failed."""
    with open(inside(rootfs, "/etc/passwd")) as f:
        users = {line.split(":")[0] for line in f}
    missing = {"root", "www-data", APP_USER[0]} - users
    if missing:
        raise ImageBuildError(f"the built image's /etc/passwd lacks {sorted(missing)}")
    for program in ("/bin/bash", "/usr/bin/python3", "/usr/bin/curl", "/usr/sbin/nginx",
                    "/usr/local/bin/probe", "/var/lib/dpkg/status"):
        if not os.path.exists(inside(rootfs, program)):
            raise ImageBuildError(f"the built image has no {program}")
