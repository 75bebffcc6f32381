"""Is an upper-layer copy of an image file still the image's file?

    v = compare(layers, found, hasher, content_fd=None)
    v.copied   there is an image file it was copied from (origin handle or same path below)
    v.same     True: the image's contents (a chmod or touch copy-up, or a metacopy)
               False: changed; None: could not tell (v.reason says why)
    v.digest   of the upper copy — what the container runs — when it was hashed
    v.origin   the image file it was compared with (its path in its lower layer)

The origin is the file overlayfs copied up from: first the origin file handle overlayfs
recorded at copy-up (layers.Layers.origin), so that a hard link or a rename of an image
file is compared with the file it came from and not with whatever has its new name; else
the file the copy hides at the same path in a lower layer. Contents are compared by size,
then by sha256 (hashing.Hasher: bounded, with a deadline). Anything short of two complete,
equal digests is not "same": the answer fails towards drift, never towards the image.

`content_fd`, when given, is what the container actually ran (/proc/PID/exe) and is hashed
instead of the upper layer's file. compare() takes ownership of it.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from .container_files import ContainerFileError
from .hashing import Digest, Hasher
from .layers import Found, Layers


@dataclass(frozen=True, slots=True)
class CopyUp:
    copied: bool                # there is (or overlayfs recorded) an image file behind it
    same: bool | None           # see the module docstring
    digest: Digest | None       # of the upper copy
    origin: str | None = None   # the image file compared with
    reason: str | None = None   # why `same` is None


def compare(layers: Layers, found: Found, hasher: Hasher,
            content_fd: int | None = None) -> CopyUp:
    upper_fd = origin_fd = None
    origin, origin_xattr = None, False
    try:
        top = found.top
        if top is not None and top.layer == 0 and stat.S_ISREG(top.st.st_mode):
            try:
                upper_fd = layers.open(top, found.path)
            except ContainerFileError:
                upper_fd = None
        if upper_fd is not None:
            if Layers.is_metacopy(upper_fd):
                return CopyUp(True, True, None, found.path)   # its data is the lower file's
            o = layers.origin(upper_fd)
            origin_xattr = o is not None or layers.has_origin(upper_fd)
            if o is not None:
                origin_fd, origin = o[0], o[1].path
        below = found.below
        if origin_fd is None and below is not None and below.layer > 0 and \
                stat.S_ISREG(below.st.st_mode):
            try:
                origin_fd, origin = layers.open(below, found.path), found.path
            except ContainerFileError:
                origin_fd = None
        copied = origin_xattr or below is not None
        if content_fd is None and upper_fd is not None:
            content_fd = os.dup(upper_fd)
        if content_fd is None:
            why = f"its copy is gone from {found.path}"
            return CopyUp(copied, None, None, origin, why)
        if origin_fd is None:
            d = hasher.digest(content_fd)
            content_fd = None
            return CopyUp(copied, None, d, None,
                          "the image file it was copied from was not found (neither the "
                          "origin overlayfs recorded nor the same path in a lower layer)"
                          if copied else None)
        if os.fstat(content_fd).st_size != os.fstat(origin_fd).st_size:
            d = hasher.digest(content_fd)
            content_fd = None
            return CopyUp(True, False, d, origin)
        da, db = hasher.wait(hasher.submit(content_fd), hasher.submit(origin_fd))
        content_fd = origin_fd = None
        if da.sha256 is not None and db.sha256 is not None:
            return CopyUp(True, da.sha256 == db.sha256, da, origin)
        return CopyUp(True, None, da, origin, f"a copy of the image's {origin}, not compared "
                                              f"with it: {da.error or db.error}")
    finally:
        _close(upper_fd)
        _close(origin_fd)
        _close(content_fd)


def _close(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass
