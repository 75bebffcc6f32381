"""An image's files, read the way the container would see them but never beyond its root.

    fs = ImageFS.of_layers(["/var/lib/.../l3", "/var/lib/.../l2"], Limits())   # top first
    fs = ImageFS.of_root_fd(fd, Limits())         # /proc/PID/root when not an overlay
    data = fs.read("/var/lib/dpkg/status", cap)   # bytes, at most cap; links kept inside
    for path, st, layer in fs.walk():             # the merged tree, links not followed

Everything in an image is the attacker's: names, symbolic links (absolute, or `..` chains),
FIFOs and devices at the paths a database is expected, files grown to a TiB or sparse.
Paths are resolved by agent/drift/layers.py over agent/drift/container_files.py: relative to
each layer's directory fd (openat2 RESOLVE_IN_ROOT, or a component-by-component walk),
overlay rules applied (the topmost layer wins, a 0:0 character device is a whiteout, an
opaque directory hides what is below), a link followed only inside the stack. A file is
opened O_PATH first and only reopened O_RDONLY|O_NONBLOCK once fstat says it is a regular
file, so a FIFO or device is never opened for reading. Reads stop at a size cap decided from
fstat before reading; walks stop at a file count and a depth.

Failure modes: ImageFileError (an OSError, with a reason written to be shown in an
inventory's errors) for anything refused or too large; a walk that hits a limit stops,
and `truncated` says which limit.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from ..drift import container_files as cf
from ..drift.container_files import ContainerFileError
from ..drift.layers import OPAQUE, Layers, is_whiteout


class ImageFileError(OSError):
    """A file of the image not read, and why."""

    def __init__(self, err: int, reason: str, path: str = ""):
        super().__init__(err, reason, path)

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}" if self.filename else self.strerror


@dataclass(frozen=True, slots=True)
class Limits:
    max_file_bytes: int = 64 << 20      # a package database or manifest read whole
    max_binary_bytes: int = 256 << 20   # a Go binary or jar looked into (not read whole)
    max_files: int = 500_000            # directory entries a walk looks at, in all
    max_depth: int = 48                 # directories deep


class ImageFS:
    """A read-only view of an image: a stack of layer directories (top first, overlay
    whiteouts applied) or one merged root directory fd."""

    def __init__(self, layers: Layers, limits: Limits):
        self.layers = layers
        self.limits = limits
        self.truncated = ""             # why the last walk stopped early ("" if it did not)

    @classmethod
    def of_layers(cls, dirs, limits: Limits = Limits()) -> "ImageFS":
        return cls(Layers(list(dirs), whiteouts=True), limits)

    @classmethod
    def of_root_fd(cls, fd: int, limits: Limits = Limits()) -> "ImageFS":
        return cls(Layers.of_fd(fd, whiteouts=False), limits)

    def close(self) -> None:
        self.layers.close()

    def __enter__(self) -> "ImageFS":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- single files ------------------------------------------------------------------
    def _find(self, path: str):
        try:
            found = self.layers.find(path)
        except ContainerFileError as e:
            raise ImageFileError(e.errno or errno.EIO, e.reason, path) from None
        if found.top is None:
            raise ImageFileError(errno.ENOENT, "not in the image", path)
        if not stat.S_ISREG(found.top.st.st_mode):
            raise ImageFileError(errno.EINVAL, f"not a regular file "
                                 f"({cf.file_kind(found.top.st.st_mode)})", path)
        return found

    def exists(self, path: str) -> bool:
        try:
            found = self.layers.find(path)
        except ContainerFileError:
            return False
        return found.top is not None

    def open(self, path: str, cap: int) -> tuple[int, int]:
        """(a read-only fd of the regular file at path, its size), refused past cap bytes.
        The caller closes the fd."""
        found = self._find(path)
        size = found.top.st.st_size
        if size > cap:
            raise ImageFileError(errno.EFBIG, f"{size} bytes, over the limit of {cap}", path)
        try:
            fd = self.layers.open(found.top, found.path)
        except ContainerFileError as e:
            raise ImageFileError(e.errno or errno.EIO, e.reason, path) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > cap:
            os.close(fd)
            raise ImageFileError(errno.EINVAL, "changed while it was opened", path)
        return fd, st.st_size

    def read(self, path: str, cap: int | None = None) -> bytes:
        """The whole regular file at path (at most cap bytes: larger is refused, and one
        that grows while it is read is cut at cap)."""
        cap = self.limits.max_file_bytes if cap is None else cap
        fd, size = self.open(path, cap)
        try:
            return read_fd(fd, cap)
        finally:
            os.close(fd)

    def open_entry(self, path: str, layer: int, st, cap: int) -> tuple[int, int]:
        """open() of a regular file a walk or listdir found (link-free path, its layer and
        lstat): one openat2 beneath that layer's root, checked to be the same inode."""
        if not stat.S_ISREG(st.st_mode):
            return self.open(path, cap)                # a link: resolved inside the image
        if st.st_size > cap:
            raise ImageFileError(errno.EFBIG, f"{st.st_size} bytes, over the limit of {cap}",
                                 path)
        try:
            fd = cf.open_file(self.layers._root(layer), path, st.st_ino)
        except ContainerFileError as e:
            raise ImageFileError(e.errno or errno.EIO, e.reason, path) from None
        size = os.fstat(fd).st_size
        if size > cap:
            os.close(fd)
            raise ImageFileError(errno.EFBIG, f"{size} bytes, over the limit of {cap}", path)
        return fd, size

    def read_entry(self, path: str, layer: int, st, cap: int | None = None) -> bytes:
        cap = self.limits.max_file_bytes if cap is None else cap
        fd, _ = self.open_entry(path, layer, st, cap)
        try:
            return read_fd(fd, cap)
        finally:
            os.close(fd)

    # -- walking -----------------------------------------------------------------------
    def listdir(self, path: str, visible=None):
        """{name: (layer, lstat)} of the directory at (resolved, link-free) path in the
        merged view, and which layers each subdirectory is visible in."""
        n = len(self.layers.dirs)
        visible = tuple(range(n)) if visible is None else visible
        entries: dict[str, list] = {}
        blocked: set[str] = set()
        for i in visible:
            try:
                fd = cf.open_dir(self.layers._root(i), path) if path else \
                    os.dup(self.layers._root(i))
            except ContainerFileError:
                continue
            try:
                with os.scandir(fd) as it:
                    for de in it:
                        name = de.name
                        if name in blocked:
                            continue
                        try:
                            st = de.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        have = entries.get(name)
                        if self.layers.whiteouts and is_whiteout(st):
                            blocked.add(name)         # hidden in every layer below
                            continue
                        if have is None:
                            entries[name] = [(i, st)]
                        elif stat.S_ISDIR(have[0][1].st_mode) and stat.S_ISDIR(st.st_mode):
                            have.append((i, st))      # a directory merged with the one below
                        else:
                            blocked.add(name)         # a file hides what is below it
                opaque = self.layers.whiteouts and path and \
                    any(cf.xattr(fd, x) == b"y" for x in OPAQUE)
            finally:
                os.close(fd)
            if opaque:
                break
        return entries

    def walk(self, top: str = "", skip=("proc", "sys", "dev")):
        """(path, lstat, layer) of every non-directory in the merged tree below top, directories
        first visited top-down; symbolic links are reported, never followed. Stops at
        limits.max_files entries or limits.max_depth levels (self.truncated says so)."""
        self.truncated = ""
        budget = self.limits.max_files
        stack = [(top.strip("/"), None, 0)]
        while stack:
            path, visible, depth = stack.pop()
            entries = self.listdir(path, visible)
            budget -= len(entries)
            if budget < 0:
                self.truncated = f"stopped after {self.limits.max_files} files " \
                                 f"(inventory.max_files)"
                return
            subdirs = []
            for name in sorted(entries):
                layers = entries[name]
                st = layers[0][1]
                child = f"{path}/{name}" if path else name
                if stat.S_ISDIR(st.st_mode):
                    if not path and name in skip:
                        continue
                    if depth + 1 >= self.limits.max_depth:
                        self.truncated = f"{'/' + child}: deeper than " \
                                         f"{self.limits.max_depth} directories " \
                                         f"(inventory.max_depth)"
                        continue
                    subdirs.append((child, tuple(x[0] for x in layers), depth + 1))
                else:
                    yield "/" + child, st, layers[0][0]
            stack.extend(reversed(subdirs))


def read_fd(fd: int, cap: int) -> bytes:
    """Up to cap bytes of an open regular file (a file grown since fstat is cut at cap)."""
    chunks, total = [], 0
    while total < cap:
        b = os.read(fd, min(1 << 20, cap - total))
        if not b:
            break
        chunks.append(b)
        total += len(b)
    return b"".join(chunks)
