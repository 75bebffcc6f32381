"""A container's overlay layers, looked up the way overlayfs merges them.

    with Layers([upperdir, *lowerdirs]) as layers:       # top first; host paths, trusted
        found = layers.find("/tmp/s")                      # links resolved inside the stack
        found.path, found.top, found.below                 # '/etc/motd', Entry(0, st), None
        fd = layers.open(found.top, found.path)            # a checked read-only fd

`find` walks every layer with container_files (relative to each layer's directory fd, never
through a host path) and applies overlayfs's rules: the topmost entry wins; a whiteout (a
0:0 character device) hides the name in every layer below; an opaque directory
(trusted.overlay.opaque = y) hides the directories below it; a directory hides a
non-directory below it and the other way round. A symbolic link met on the way is followed
the way the container would follow it — an absolute target starts again at the root of
the stack, `..` stops at it — at most 40 times, and only inside the layers: nothing outside
them is ever looked at. `found.path` is the path with every link resolved.

`origin(fd)` finds the image file an upper copy was made from through the file handle
overlayfs recorded at copy-up (trusted.overlay.origin, written by the kernel; a container
cannot set trusted.overlay.* xattrs), opened with open_by_handle_at and accepted only if it
lies inside one of the lower layers.

Image layers do not change while a container runs, so what `find` learns about them (which
layers a directory is visible in, what a name is in each) can be kept in an ImageCache shared
across lookups (`Layers(dirs, cache=…, immutable_from=1)`); the writable layer is always
looked at afresh. A layer's directory is opened only when it is needed.

Not modelled (documented in docs/drift.md): redirect_dir renames of directories, metacopy
upper files are only recognised, not followed, and "xwhiteouts" (Linux 6.7) in lower
layers. Failure modes: ContainerFileError from container_files for anything refused; a
name that is simply not there is a Found with top None.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from . import container_files as cf
from .container_files import ContainerFileError

MAX_LINKS = 40
MAX_STEPS = 1024        # components looked up for one path, links included
MAX_DEPTH = 128         # directories deep at once (one fd per layer each)
OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")
ORIGIN = ("trusted.overlay.origin", "user.overlay.origin")
METACOPY = ("trusted.overlay.metacopy", "user.overlay.metacopy")
_FH_MAGIC, _FH_FLAG_PATH_UPPER, _FH_FID_OFFSET = 0xFB, 4, 21


@dataclass(frozen=True, slots=True)
class Entry:
    layer: int                  # index in the stack, 0 = topmost (the upper layer if any)
    st: os.stat_result          # lstat of the name in that layer


@dataclass(frozen=True, slots=True)
class Found:
    path: str                   # the path looked up, with symbolic links resolved
    top: Entry | None           # what the container sees there; None: nothing
    below: Entry | None = None  # for a non-directory: the entry it hides in a lower layer


@dataclass(frozen=True, slots=True)
class Origin:
    layer: int                  # the lower layer the image file is in
    path: str                   # its path in that layer (as the container saw it)


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


@dataclass(slots=True)
class _Level:
    """One directory of a walk: where it is visible, and the fds of the layers that are
    looked at afresh (the caller's fds and the writable layer's)."""
    name: str
    path: str                   # below the root, no leading '/'
    visible: tuple              # layer indices, top first
    fds: dict                   # layer -> directory fd (not image layers behind a cache)
    opened: list                # fds this level opened (closed when the walk leaves it)


class ImageCache:
    """What image layers hold, by (the stack's image layers, path): bounded, oldest out
    first. Used from one thread (the event path)."""

    def __init__(self, max_entries: int = 8192):
        self.max_entries = max_entries
        self._d: dict[tuple, object] = {}

    def get(self, key: tuple):
        return self._d.get(key)

    def put(self, key: tuple, value):
        if len(self._d) >= self.max_entries:
            self._d.pop(next(iter(self._d)))
        self._d[key] = value
        return value

    def __len__(self) -> int:
        return len(self._d)


class Layers:
    """A stack of layers (top first): host paths (trusted) or directory fds the caller
    keeps. Layers from `immutable_from` on are image layers whose lookups go through
    `cache`. `whiteouts=False` for a merged view (a container's root, one 'layer'), where
    overlayfs has already applied them. close() or the with-block closes what it opened."""

    def __init__(self, dirs, whiteouts: bool = True, cache: ImageCache | None = None,
                 immutable_from: int | None = None):
        self.dirs = tuple(dirs)
        self.whiteouts = whiteouts
        n = len(self.dirs)
        self.cache = cache
        self._frozen = n if cache is None or immutable_from is None else immutable_from
        self._key = (self.dirs[self._frozen:], self._frozen, whiteouts)
        self._fds: list[int | None] = [d if isinstance(d, int) else None for d in self.dirs]

    @classmethod
    def of_fd(cls, fd: int, whiteouts: bool = False) -> "Layers":
        """A one-layer view of a directory fd the caller keeps (and closes)."""
        return cls([fd], whiteouts)

    def _root(self, i: int) -> int:
        fd = self._fds[i]
        if fd is None:
            fd = self._fds[i] = cf.open_layer(self.dirs[i])
        return fd

    def close(self) -> None:
        for d, fd in zip(self.dirs, self._fds):
            if fd is not None and not isinstance(d, int):
                os.close(fd)
        self._fds = [d if isinstance(d, int) else None for d in self.dirs]

    def __enter__(self) -> "Layers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- lookup --------------------------------------------------------------------------
    def find(self, path: str, follow: bool = True) -> Found:
        """What the container sees at `path` (see the module docstring). With follow=False
        a symbolic link is not followed: in a directory position it raises ELOOP, as the
        last component it is returned as the entry it is. Bounded: at most MAX_STEPS
        components (links included) and MAX_DEPTH directories deep, else ENAMETOOLONG."""
        cf.parts(path)                                 # validates (raises on bad input)
        todo = _split(path)[::-1]                      # a stack; '..' applied on the way
        stack: list[_Level] = []
        links = steps = 0
        try:
            while todo:
                steps += 1
                if steps > MAX_STEPS or len(stack) > MAX_DEPTH:
                    raise ContainerFileError(errno.ENAMETOOLONG, "too long a path to follow",
                                             path[:200])
                name = todo.pop()
                if name == "..":                       # physically, as the kernel does
                    if stack:
                        _close_all(stack.pop().opened)
                    continue
                here = stack[-1] if stack else self._top_level()
                entries = self._entries(here, name)
                done = [lv.name for lv in stack]
                if not entries:
                    rest = "/".join(done + [name] + todo[::-1])
                    return Found("/" + "/".join(cf.parts(rest)), None)
                top = entries[0]
                if stat.S_ISLNK(top.st.st_mode) and (follow or todo):
                    if not follow:
                        raise ContainerFileError(errno.ELOOP, "a symbolic link on the way "
                                                 "(not followed)", path)
                    links += 1
                    if links > MAX_LINKS:
                        raise ContainerFileError(errno.ELOOP, "too many symbolic links",
                                                 path)
                    target = self._readlink(here, top.layer, name)
                    todo.extend(_split(target)[::-1])
                    if target.startswith("/"):
                        while stack:
                            _close_all(stack.pop().opened)
                    continue
                if not todo:
                    below = entries[1] if len(entries) > 1 else None
                    return Found("/" + "/".join(done + [name]), top, below)
                if not stat.S_ISDIR(top.st.st_mode):
                    raise ContainerFileError(errno.ENOTDIR, "a component is not a directory",
                                             path)
                stack.append(self._descend(here, entries, name))
            here = stack[-1] if stack else self._top_level()   # the path named a directory
            i = here.visible[0]
            st = os.fstat(here.fds[i]) if i in here.fds else cf.lstat(self._root(i), here.path)
            return Found("/" + here.path if here.path else "/", Entry(i, st))
        finally:
            for lv in stack:
                _close_all(lv.opened)

    def _top_level(self) -> "_Level":
        n = len(self.dirs)
        return _Level("", "", tuple(range(n)),
                      {i: self._root(i) for i in range(min(self._frozen, n))}, [])

    def _add(self, out: list[Entry], e: Entry) -> bool:
        """overlayfs's rule for one more layer's entry; False: nothing below shows."""
        if self.whiteouts and is_whiteout(e.st):
            return False                               # hidden in every layer below
        if out and stat.S_ISDIR(out[0].st.st_mode) != stat.S_ISDIR(e.st.st_mode):
            return False                               # a dir hides a file, and vice versa
        out.append(e)
        return stat.S_ISDIR(e.st.st_mode) or len(out) < 2   # the top file and what it hides

    def _entries(self, here: "_Level", name: str) -> list[Entry]:
        out: list[Entry] = []
        for i in here.visible:
            if i >= self._frozen:
                break
            try:
                st = os.stat(name, dir_fd=here.fds[i], follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                raise cf._err(e, name) from None
            if not self._add(out, Entry(i, st)):
                return out
        frozen = tuple(i for i in here.visible if i >= self._frozen)
        if frozen:
            for e in self._image_entries(frozen, here.path, name):
                if not self._add(out, e):
                    break
        return out

    def _image_entries(self, layers: tuple, dirpath: str, name: str) -> tuple:
        key = ("entries", self._key, layers, dirpath, name)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        out: list[Entry] = []
        for i in layers:
            st = cf.lstat(self._root(i), f"{dirpath}/{name}")
            if st is not None and not self._add(out, Entry(i, st)):
                break
        return self.cache.put(key, tuple(out))

    def _descend(self, here: "_Level", entries: list[Entry], name: str) -> "_Level":
        path = f"{here.path}/{name}" if here.path else name
        visible: list[int] = []
        fds: dict[int, int] = {}
        opened: list[int] = []
        try:
            for e in entries:
                if e.layer >= self._frozen:
                    visible += self._image_dirs(tuple(x.layer for x in entries
                                                      if x.layer >= self._frozen), path)
                    break
                fd = cf.open_dir(here.fds[e.layer], name)
                opened.append(fd)
                fds[e.layer] = fd
                visible.append(e.layer)
                if self._opaque(fd):
                    break                              # opaque: nothing below shows
        except BaseException:
            _close_all(opened)
            raise
        return _Level(name, path, tuple(visible), fds, opened)

    def _image_dirs(self, layers: tuple, path: str) -> tuple:
        """Of image layers that have `path` as a directory, those it is visible in."""
        key = ("dirs", self._key, layers, path)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        out = []
        for i in layers:
            out.append(i)
            fd = cf.open_dir(self._root(i), path)
            try:
                if self._opaque(fd):
                    break
            finally:
                os.close(fd)
        return self.cache.put(key, tuple(out))

    def _opaque(self, fd: int) -> bool:
        return self.whiteouts and any(cf.xattr(fd, x) == b"y" for x in OPAQUE)

    def _readlink(self, here: "_Level", layer: int, name: str) -> str:
        if layer in here.fds:
            return cf.readlink(here.fds[layer], name)
        key = ("link", self._key, layer, here.path, name)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        fd = cf.open_dir(self._root(layer), here.path) if here.path else None
        try:
            target = cf.readlink(self._root(layer) if fd is None else fd, name)
        finally:
            if fd is not None:
                os.close(fd)
        return self.cache.put(key, target)

    # -- opening -------------------------------------------------------------------------
    def open(self, entry: Entry, path: str) -> int:
        """A read-only fd of the regular file `entry` describes at (resolved) `path`:
        opened strictly in that entry's layer and checked to be the same inode."""
        fd = cf.open_file(self._root(entry.layer), path, entry.st.st_ino)
        if os.fstat(fd).st_dev != entry.st.st_dev:
            os.close(fd)
            raise ContainerFileError(errno.ESTALE, "changed since it was looked up", path)
        return fd

    def lower_path(self, fd: int) -> Origin | None:
        """Which lower layer (index > 0) an open file lies in, from the kernel's name for it."""
        try:
            where = cf.fd_path(fd)
        except OSError:
            return None
        for i in range(1, len(self.dirs)):
            try:
                root = cf.fd_path(self._root(i)).rstrip("/")
            except OSError:
                continue
            if where.startswith(root + "/"):
                return Origin(i, where[len(root):])
        return None

    def origin(self, upper_fd: int) -> tuple[int, Origin] | None:
        """The image file an upper copy was copied up from: (read-only fd, Origin), from
        the origin file handle overlayfs wrote; None when there is none or it does not lead
        into a lower layer. The caller closes the fd."""
        raw = next((v for v in (cf.xattr(upper_fd, x) for x in ORIGIN) if v), None)
        if raw is None or len(raw) <= _FH_FID_OFFSET or raw[1] != _FH_MAGIC or \
                raw[2] != len(raw) or raw[3] & _FH_FLAG_PATH_UPPER:
            return None
        handle, htype = raw[_FH_FID_OFFSET:], raw[4]
        tried: set[int] = set()
        for i in range(1, len(self.dirs)):
            try:
                dev = os.fstat(self._root(i)).st_dev
            except OSError:
                continue
            if dev in tried:
                continue
            tried.add(dev)
            try:
                fd = cf.open_by_handle(self._root(i), htype, handle)
            except ContainerFileError:
                continue
            where = self.lower_path(fd)
            if where is not None:
                return fd, where
            os.close(fd)
        return None

    @staticmethod
    def has_origin(upper_fd: int) -> bool:
        """overlayfs recorded that this upper file was copied up from a lower one."""
        return any(cf.xattr(upper_fd, x) is not None for x in ORIGIN)

    @staticmethod
    def is_metacopy(upper_fd: int) -> bool:
        """An upper file that holds only metadata: its data is still the lower file's."""
        return any(cf.xattr(upper_fd, x) is not None for x in METACOPY)


def _split(target: str) -> list[str]:
    """A link target's components, '..' kept (they apply to where the link is)."""
    if "\0" in target:
        raise ContainerFileError(errno.EINVAL, "not a usable link target")
    return [c for c in target.split("/") if c not in ("", ".")]


def _close_all(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
