"""Container drift: was the program (or the script it was given) part of the image?

The kernel reports, at exec, which overlay layers the program is in (upper: created or
changed since the container started; lower: in the image), whether it is a memfd or
otherwise detached, its filesystem and its link count. Here that is confirmed against the
image's layers on disk:

  upper only                   -> new        (absent from every lower layer)
  upper and lower, contents !=  -> modified
  upper and lower, contents ==  -> no drift   (copied up unchanged: a chmod or touch)
  memfd / detached             -> fileless
  tmpfs, ramfs, hugetlbfs      -> tmpfs
  no links left                -> deleted
  root not an overlay, or the program on another filesystem (a volume)
                               -> drift.unknown_reason says why it cannot be decided

Scripts count too: for an interpreter (sh, python, …) the script file it was given — or
the file a #! line was found in — is checked against the layers the same way.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from ..context.containers import ContainerInfo

INTERPRETERS = {"sh", "ash", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "python",
                "python2", "python3", "perl", "ruby", "node", "nodejs", "php", "lua",
                "tclsh", "awk", "gawk", "busybox"}
MEMORY_FS = {"tmpfs", "ramfs", "hugetlbfs"}


@dataclass(frozen=True, slots=True)
class Drift:
    kind: str | None            # new | modified | fileless | tmpfs | deleted; None: undecided
    path: str                   # the drifted file, as the container sees it
    script: bool = False        # the file is a script given to an interpreter
    size: int | None = None
    sha256: str | None = None
    unknown_reason: str | None = None
    prevented: bool = False


class Hasher:
    """sha256 of files, size-capped, cached by (device, inode, size, mtime)."""

    def __init__(self, max_bytes: int = 64 << 20, cache_size: int = 4096):
        self.max_bytes = max_bytes
        self.cache_size = cache_size
        self._cache: dict[tuple, tuple[int, str | None]] = {}

    def digest(self, path: str) -> tuple[int, str | None] | None:
        """(size, sha256 or None if larger than the cap), or None if unreadable."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if st.st_size > self.max_bytes:
            out = (st.st_size, None)
        else:
            h = hashlib.sha256()
            try:
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            except OSError:
                return None
            out = (st.st_size, h.hexdigest())
        if len(self._cache) >= self.cache_size:
            self._cache.clear()
        self._cache[key] = out
        return out


def _in(layer_root: str, path: str) -> str:
    return os.path.join(layer_root, path.lstrip("/"))


def _whiteout(layer_root: str, path: str) -> bool:
    """overlayfs marks a deleted lower file with a 0:0 character device in the upper."""
    try:
        st = os.lstat(_in(layer_root, path))
    except OSError:
        return False
    import stat as st_
    return st_.S_ISCHR(st.st_mode) and st.st_rdev == 0


class DriftDetector:
    def __init__(self, hasher: Hasher | None = None):
        self.hasher = hasher or Hasher()

    def check(self, ev, container: ContainerInfo | None, cwd: str = "") -> Drift | None:
        """Drift of an exec event, or None when the program and its script are the image's."""
        if container is None:
            return None
        prevented = bool(getattr(ev, "prevented", False))
        d = self._program(ev, container, prevented)
        if d is not None:
            return d
        script = self._script_path(ev, cwd)
        if script:
            return self._file(script, container, script=True, prevented=prevented)
        return None

    # -- the program -------------------------------------------------------------------
    def _program(self, ev, c: ContainerInfo, prevented: bool) -> Drift | None:
        exe = ev.exe
        name = exe.rsplit("/", 1)[-1]
        if ev.exe_detached:
            kind = "fileless" if name.startswith("memfd:") or ev.exe_fs in MEMORY_FS \
                else "deleted"
            return self._with_digest(Drift(kind, exe, prevented=prevented),
                                     f"/proc/{ev.pid}/exe")
        if ev.exe_links == 0:
            return self._with_digest(Drift("deleted", exe, prevented=prevented),
                                     f"/proc/{ev.pid}/exe")
        if ev.exe_fs in MEMORY_FS:
            return self._with_digest(Drift("tmpfs", exe, prevented=prevented),
                                     f"/proc/{ev.pid}/exe")
        rootfs = c.rootfs
        if rootfs is None:
            return Drift(None, exe, unknown_reason="the container's root filesystem is not "
                                                   "known yet", prevented=prevented)
        if not rootfs.is_overlay:
            return Drift(None, exe, unknown_reason=f"the container's root is {rootfs.fstype}, "
                                                   "not overlay: it cannot be compared with "
                                                   "the image", prevented=prevented)
        if ev.exe_fs != "overlay":
            return Drift(None, exe, unknown_reason=f"run from a volume ({ev.exe_fs}), not "
                                                   "from the image", prevented=prevented)
        if not ev.exe_upper:
            return None                          # only in the image's layers
        return self._file(exe, c, script=False, prevented=prevented, kernel_lower=ev.exe_lower)

    # -- a file against the layers -----------------------------------------------------
    def _file(self, path: str, c: ContainerInfo, script: bool, prevented: bool,
              kernel_lower: bool | None = None) -> Drift | None:
        rootfs = c.rootfs
        if rootfs is None or not rootfs.is_overlay:
            why = "not known yet" if rootfs is None else f"{rootfs.fstype}, not overlay"
            return Drift(None, path, script, unknown_reason=f"the container's root is {why}",
                         prevented=prevented)
        upper = _in(rootfs.upperdir, path) if rootfs.upperdir else None
        in_upper = upper is not None and os.path.isfile(upper)
        lower = None
        for layer in rootfs.lowerdirs:
            if _whiteout(layer, path):
                break
            if os.path.isfile(_in(layer, path)):
                lower = _in(layer, path)
                break
        if not in_upper:
            if lower is not None:
                return None                      # the image's own file
            return Drift(None, path, script, unknown_reason="not in the container's layers "
                                                            "(a volume or a tmpfs?)",
                         prevented=prevented)
        up = self.hasher.digest(upper)
        size, sha = (up if up else (None, None))
        if lower is None:
            return Drift("new", path, script, size, sha, prevented=prevented)
        low = self.hasher.digest(lower)
        if up is not None and low is not None and up == low and sha is not None:
            return None                          # copied up unchanged
        return Drift("modified", path, script, size, sha, prevented=prevented)

    def _with_digest(self, d: Drift, path: str) -> Drift:
        dig = self.hasher.digest(path)
        if dig is None:
            return d
        return Drift(d.kind, d.path, d.script, dig[0], dig[1], d.unknown_reason, d.prevented)

    # -- scripts -----------------------------------------------------------------------
    @staticmethod
    def _script_path(ev, cwd: str) -> str | None:
        """The script an interpreter was asked to run: a #! file (exec.filename is the
        script, the program its interpreter), or the first non-option argument."""
        exe_name = ev.exe.rsplit("/", 1)[-1]
        argv0 = ev.args[0].rsplit("/", 1)[-1] if ev.args else ""
        if exe_name not in INTERPRETERS and argv0 not in INTERPRETERS:
            return None
        if exe_name == "busybox" and argv0 not in INTERPRETERS - {"busybox"}:
            return None                          # a busybox applet, not its shell
        fn = ev.filename
        if fn and fn != "/proc/self/exe" and fn.rsplit("/", 1)[-1] not in INTERPRETERS and \
                not fn.endswith(exe_name):
            path = fn                            # #! script executed directly
        else:
            path = None
            args = ev.args[1:]
            for i, a in enumerate(args):
                if a in ("-c", "-e", "-m", "-E", "--eval", "--command"):
                    return None                  # inline code, no file
                if a.startswith("-"):
                    continue
                path = a
                break
        if not path:
            return None
        if not path.startswith("/"):
            if not cwd:
                return None
            path = os.path.normpath(os.path.join(cwd, path))
        return path
