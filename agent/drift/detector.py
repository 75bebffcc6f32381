"""Container drift: was the program (or the script it was given) part of the image?

The kernel reports, at exec, which overlay layers the program's inode is in (upper: the
writable layer has a copy; lower: it is in the image), whether it is a memfd or otherwise
detached, its filesystem and its link count. Those facts, taken at the moment of the exec,
are the source of truth; user space only adds what the kernel cannot: contents.

  detached (memfd…)                 -> fileless (deleted if not on a memory filesystem)
  no links left at exec             -> deleted
  tmpfs, ramfs, hugetlbfs           -> tmpfs
  upper only                        -> new, even if the path is gone by the time we look
  upper and lower                   -> compared with the image file it was copied from
                                       (copy_up.py): changed -> modified, same -> no drift,
                                       cannot tell -> drift.unknown_reason says why
  lower only                        -> the image's
  root not an overlay, or the program on another filesystem (a volume)
                                    -> drift.unknown_reason says why it cannot be decided

Scripts and programs run through a loader count too: for an interpreter (sh, python, …)
the script it was given — or the file a #! line was found in — and for the dynamic loader
(ld-linux*.so*, ld-musl-*.so*: `ld.so /root/x`) the program it was asked to load are looked
up in the container's layers (layers.py: links resolved inside the layers, whiteouts and
opaque directories applied) and decided the same way.

Every file is opened through container_files (never a host path joined with a container
path) and hashed through hashing.Hasher (bounded size, a deadline, off the event path);
`drift.hash_error` says why a drift has no sha256. Nothing a container does makes check()
raise: an unexpected failure comes back as a drift with unknown_reason, which alerts.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import re
import stat
from dataclasses import dataclass

from ..context.containers import ContainerInfo
from . import container_files as cf
from .container_files import ContainerFileError
from .copy_up import compare
from .hashing import Digest, Hasher
from .layers import ImageCache, Layers

__all__ = ["Drift", "DriftDetector", "Hasher", "INTERPRETERS", "LOADERS", "loader_program"]

log = logging.getLogger("mamori.drift")

INTERPRETERS = {"sh", "ash", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "python",
                "python2", "python3", "perl", "ruby", "node", "nodejs", "php", "lua",
                "tclsh", "awk", "gawk", "busybox"}
MEMORY_FS = {"tmpfs", "ramfs", "hugetlbfs"}
# A script named by one of its process's descriptors: /proc/self/fd/3, /dev/fd/3, … (and an
# interpreter's stdin, as /proc/self/fd/0). Resolved through /proc/PID/fd of that process.
STDIN = "/proc/self/fd/0"
FD_PATH = re.compile(r"/(?:proc/(self|thread-self|\d{1,9})(?:/task/\d{1,9})?|dev)/fd/(\d{1,9})")
# The dynamic loader run as a program (`ld.so /root/x`): its argument is the program.
LOADERS = ("ld-linux*.so*", "ld-musl-*.so*", "ld.so", "ld64.so*")
# glibc's and musl's ld.so options: those that take a value, and those that do not
LOADER_VALUE_OPTIONS = {"--library-path", "--inhibit-rpath", "--audit", "--preload",
                        "--argv0", "--glibc-hwcaps-prepend", "--glibc-hwcaps-mask"}
LOADER_FLAGS = {"--list", "--verify", "--inhibit-cache", "--list-tunables",
                "--list-diagnostics", "--help", "--version"}
GONE = "gone: the process has exited and its file is no longer at this path"


@dataclass(frozen=True, slots=True)
class Drift:
    kind: str | None            # new | modified | fileless | tmpfs | deleted; None: undecided
    path: str                   # the drifted file, as the container sees it (links resolved)
    script: bool = False        # the file is a script given to an interpreter
    size: int | None = None     # st_size when the agent opened it
    sha256: str | None = None   # of the whole file; None: hash_error says why
    unknown_reason: str | None = None   # why kind is None (the drift could not be decided)
    prevented: bool = False
    hash_error: str | None = None       # why there is no sha256


@dataclass(frozen=True, slots=True)
class _Target:
    path: str | None            # None: named in a way that is not a path (see _file)
    script: bool                # True: a script for an interpreter; False: a loader's program
    name: str = ""              # as given


def is_loader(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in LOADERS)


def loader_program(args) -> str | None:
    """The program ld.so was asked to run: its first argument that is not an option or an
    option's value. None for `ld.so --help` and the like."""
    it = iter(args)
    for a in it:
        if a == "--":                       # musl: end of options
            return next(it, None)
        if a in LOADER_VALUE_OPTIONS:
            next(it, None)
            continue
        if a in LOADER_FLAGS:
            continue
        return a                            # glibc takes an unknown --x as the program too
    return None


def _reason(e: OSError) -> str:
    return e.reason if isinstance(e, ContainerFileError) else (e.strerror or str(e))


def _with(d: Drift, dig: Digest | None) -> Drift:
    if dig is None:
        return d
    return Drift(d.kind, d.path, d.script, dig.size, dig.sha256, d.unknown_reason,
                 d.prevented, dig.error)


class DriftDetector:
    def __init__(self, hasher: Hasher | None = None, image_cache: ImageCache | None = None):
        self.hasher = hasher or Hasher()
        self.image_cache = image_cache if image_cache is not None else ImageCache()

    def check(self, ev, container: ContainerInfo | None, cwd: str = "") -> Drift | None:
        """Drift of an exec event, or None when the program and its script are the image's."""
        if container is None:
            return None
        prevented = bool(getattr(ev, "prevented", False))
        try:
            d = self._program(ev, container, prevented)
            if d is not None:
                return d
            target = self._target(ev, cwd)
            if target is not None and target.script and target.path and \
                    FD_PATH.fullmatch(target.path):
                target = self._through_fd(ev, target)
                if isinstance(target, Drift) or target is None:
                    return target
            if target is not None:
                return self._file(target, container, prevented)
            return None
        except Exception as e:               # never crash the pipeline, never pass silently
            log.warning("drift check of %s failed: %r", getattr(ev, "exe", "?"), e)
            return Drift(None, getattr(ev, "exe", ""), unknown_reason="the drift check "
                         f"failed: {type(e).__name__}: {str(e)[:200]}", prevented=prevented)

    # -- the program -------------------------------------------------------------------
    def _program(self, ev, c: ContainerInfo, prevented: bool) -> Drift | None:
        exe = ev.exe
        name = exe.rsplit("/", 1)[-1]
        if ev.exe_detached:
            kind = "fileless" if name.startswith("memfd:") or ev.exe_fs in MEMORY_FS \
                else "deleted"
            return _with(Drift(kind, exe, prevented=prevented), self._running(ev))
        if ev.exe_links == 0:
            return _with(Drift("deleted", exe, prevented=prevented), self._running(ev))
        if ev.exe_fs in MEMORY_FS:
            return _with(Drift("tmpfs", exe, prevented=prevented), self._running(ev))
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
        if not ev.exe_lower or not rootfs.upperdir:
            return _with(Drift("new", exe, prevented=prevented), self._new_program(ev, c))
        return self._copied_program(ev, c, prevented)

    def _exe_fd(self, ev) -> tuple[int | None, str | None]:
        """The file the process runs, if it still runs it: (fd, None) or (None, why)."""
        try:
            return cf.open_proc_exe(ev.pid, ev.exe_inode, ev.exe_dev), None
        except ContainerFileError as e:
            return None, e.reason

    def _running(self, ev) -> Digest:
        fd, why = self._exe_fd(ev)
        if fd is None:
            return Digest(None, None, f"gone: {why}")
        return self.hasher.digest(fd)

    def _new_program(self, ev, c: ContainerInfo) -> Digest:
        """Upper only at exec. Hash what runs (/proc/PID/exe), else the upper layer's file
        at the path if it is still the inode the kernel reported."""
        fd, why = self._exe_fd(ev)
        if fd is None and not c.rootfs.upperdir:
            return Digest(None, None, f"gone: {why}")
        if fd is None:
            try:
                with Layers([c.rootfs.upperdir]) as up:
                    found = up.find(ev.exe, follow=False)
                    if found.top is None:
                        return Digest(None, None, GONE)
                    if found.top.st.st_ino != ev.exe_inode:
                        return Digest(None, None, f"not the file that ran: {ev.exe} is now "
                                                  f"inode {found.top.st.st_ino}, the kernel "
                                                  f"reported {ev.exe_inode}")
                    fd = up.open(found.top, found.path)
            except OSError as e:
                return Digest(None, None, f"not hashed: {_reason(e)}")
        return self.hasher.digest(fd)

    def _copied_program(self, ev, c: ContainerInfo, prevented: bool) -> Drift | None:
        """Upper and lower at exec: a copy-up of an image file. Compare it with the file it
        was copied from."""
        exe, rootfs = ev.exe, c.rootfs
        content_fd, _ = self._exe_fd(ev)
        try:
            with Layers([rootfs.upperdir, *rootfs.lowerdirs], cache=self.image_cache,
                        immutable_from=1) as layers:
                found = layers.find(exe, follow=False)
                fd, content_fd = content_fd, None        # compare() owns it from here
                v = compare(layers, found, self.hasher, fd)
        except OSError as e:
            return Drift(None, exe, unknown_reason=f"a copy of an image file that could not "
                                                   f"be looked up: {_reason(e)}",
                         prevented=prevented)
        finally:
            if content_fd is not None:
                os.close(content_fd)
        if v.same is True:
            return None                          # copied up unchanged (chmod, touch, ln)
        if v.same is False:
            return _with(Drift("modified", exe, prevented=prevented), v.digest)
        return _with(Drift(None, exe, unknown_reason=v.reason or "a copy of an image file "
                           "that could not be compared with it", prevented=prevented),
                     v.digest)

    # -- a script, or a program given to the loader ------------------------------------
    def _file(self, t: _Target, c: ContainerInfo, prevented: bool) -> Drift | None:
        path, script = t.path, t.script
        if path is None:
            return Drift(None, t.name, script, unknown_reason=f"ld.so was asked to run "
                         f"{t.name!r} by name, not by path: glibc looks such a name up like a "
                         "library (ld.so.cache), which this check does not follow",
                         prevented=prevented)
        rootfs = c.rootfs
        if rootfs is None or not rootfs.is_overlay:
            why = "not known yet" if rootfs is None else f"{rootfs.fstype}, not overlay"
            return Drift(None, path, script, unknown_reason=f"the container's root is {why}",
                         prevented=prevented)
        has_upper = bool(rootfs.upperdir)
        dirs = ([rootfs.upperdir] if has_upper else []) + list(rootfs.lowerdirs)
        try:
            with Layers(dirs, cache=self.image_cache,
                        immutable_from=1 if has_upper else 0) as layers:
                found = layers.find(path, follow=True)
                top = found.top
                if top is None:
                    return Drift(None, found.path, script, unknown_reason="not in the "
                                 "container's layers (a volume or a tmpfs?)",
                                 prevented=prevented)
                if not has_upper or top.layer > 0:
                    return None                  # the image's own file
                if stat.S_ISDIR(top.st.st_mode) and found.below is not None:
                    return None                  # an image directory (python /app): what
                                                 # is read in it is not known (drift.md)
                if not stat.S_ISREG(top.st.st_mode):
                    kind = "modified" if found.below is not None else "new"
                    return Drift(kind, found.path, script, prevented=prevented,
                                 hash_error="not a regular file "
                                            f"({cf.file_kind(top.st.st_mode)})")
                v = compare(layers, found, self.hasher)
        except OSError as e:
            return Drift(None, path, script, unknown_reason=f"{path} could not be looked up "
                                                            f"in the container's layers: "
                                                            f"{_reason(e)}", prevented=prevented)
        if not v.copied:
            return _with(Drift("new", found.path, script, prevented=prevented), v.digest)
        if v.same is True:
            return None
        if v.same is False:
            return _with(Drift("modified", found.path, script, prevented=prevented), v.digest)
        return _with(Drift(None, found.path, script, unknown_reason=v.reason,
                           prevented=prevented), v.digest)

    @staticmethod
    def _through_fd(ev, t: _Target) -> _Target | Drift | None:
        """A script given as one of its process's descriptors (`sh /proc/self/fd/3`, a #!
        script run as /dev/fd/3, `sh < script`): the file behind that descriptor, read
        through the process's /proc entry while it runs. A pipe or socket is not a file
        (None); a deleted file or a memfd is drift; a descriptor already closed, or a
        process already gone, is reported as undecided — never passed as the image's."""
        who, n = FD_PATH.fullmatch(t.path).groups()
        prevented = bool(getattr(ev, "prevented", False))
        facts = getattr(ev, "stdin_facts", None)
        if t.name == STDIN and facts is not None:
            # the kernel said at exec what fd 0 is: no look at /proc, no race with the end
            # of a short script
            _ino, _dev, fs, links, _upper, _lower = facts
            path = ev.stdin_path
            if not path:                  # no path to a root: a memfd (or a detached tree)
                return Drift("fileless" if fs in MEMORY_FS else "deleted", STDIN, True,
                             prevented=prevented)
            if links == 0:
                return Drift("deleted", path, True, prevented=prevented)
            if fs in MEMORY_FS:
                return Drift("tmpfs", path, True, prevented=prevented)
            return _Target(path, True, t.path)
        if who not in (None, "self", "thread-self") and int(who) != ev.vpid:
            return Drift(None, t.path, True, prevented=prevented, unknown_reason=f"its "
                         f"script is another process's descriptor ({t.path})")
        fd_link = f"/proc/{int(ev.pid)}/fd/{int(n)}"
        try:
            target = os.readlink(fd_link)
            links = os.stat(fd_link).st_nlink if target.startswith("/") else 1
        except OSError:
            if t.name == STDIN:
                return None               # `sh < file` that already ended: not judged
            return Drift(None, t.path, True, prevented=prevented, unknown_reason=f"its "
                         f"script came through {t.path}, closed (or its process gone) before "
                         "the agent could see which file it was")
        if not target.startswith("/"):
            return None                   # pipe:[…], socket:[…]: a stream, not a file
        if links == 0:                    # the file's own count, not the link's text (a
            # file may be named "x (deleted)"); the text only names the kind
            if target.startswith("/memfd:"):
                return Drift("fileless", target, True, prevented=prevented)
            return Drift("deleted", target.removesuffix(" (deleted)"), True,
                         prevented=prevented)
        return _Target(target, True, t.path)

    # -- what the program was asked to run ---------------------------------------------
    @staticmethod
    def _target(ev, cwd: str) -> _Target | None:
        """The script an interpreter was asked to run — a #! file (exec.filename is the
        script, the program its interpreter), or the first non-option argument — or the
        program the dynamic loader was asked to load."""
        exe_name = ev.exe.rsplit("/", 1)[-1]
        if is_loader(exe_name):
            path, script = loader_program(ev.args[1:]), False
            if path and "/" not in path and not exe_name.startswith("ld-musl-"):
                return _Target(None, False, path)  # glibc: looked up like a library
        else:
            path, script = DriftDetector._script_path(ev, exe_name), True
        if not path:
            return None
        if not path.startswith("/"):
            if not cwd:
                return None
            path = cwd.rstrip("/") + "/" + path      # '..' is applied in the layers
        return _Target(path, script, path)

    @staticmethod
    def _script_path(ev, exe_name: str) -> str | None:
        argv0 = ev.args[0].rsplit("/", 1)[-1] if ev.args else ""
        if exe_name not in INTERPRETERS and argv0 not in INTERPRETERS:
            return None
        if exe_name == "busybox" and argv0 not in INTERPRETERS - {"busybox"}:
            return None                          # a busybox applet, not its shell
        fn = ev.filename
        if fn and fn != "/proc/self/exe" and fn.rsplit("/", 1)[-1] not in INTERPRETERS and \
                not fn.endswith(exe_name):
            return fn                            # #! script executed directly
        for a in ev.args[1:]:
            if a in ("-c", "-e", "-m", "-E", "--eval", "--command"):
                return None                      # inline code, no file
            if a.startswith("-"):
                continue
            return a
        if getattr(ev, "stdin", None) == "file":
            return STDIN                         # `sh < script`: its script is its stdin
        return None
