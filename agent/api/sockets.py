"""Unix sockets for the gRPC API, never more open than meant: the socket 0600 (0660 and
the group's with api.socket_group), bound in a private 0700 directory, given its mode and
only then renamed into place; its directory made 0700 (0750) when the agent creates it, and
refused when it is someone else's or writable by others (they could swap the socket)."""
from __future__ import annotations

import grp
import logging
import os
import shutil
import stat
import tempfile

import grpc

from . import ApiError

log = logging.getLogger("mamori.api")


def resolve_group(group) -> int | None:
    """api.socket_group (a name or a gid) -> gid; None for no group."""
    if group in (None, ""):
        return None
    if isinstance(group, int) or str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise ApiError(f"api.socket_group: no group {group!r} on this host") from None


def socket_dir(d: str, gid: int | None, tighten: bool = True) -> None:
    """The directory of a unix socket: made 0700 (0750, the group's) if missing; if it
    exists it must be this agent's and not writable by anyone else, and a directory that
    holds nothing but sockets is given that mode too."""
    want = 0o700 if gid is None else 0o750
    if not os.path.lexists(d):
        os.makedirs(d, mode=want)
        if gid is not None:
            os.chown(d, -1, gid)
        os.chmod(d, want)
        return
    st = os.stat(d)
    if not stat.S_ISDIR(st.st_mode):
        raise ApiError(f"{d}: the socket's directory is not a directory")
    if st.st_uid != os.geteuid():
        raise ApiError(f"{d}: the socket's directory belongs to uid {st.st_uid}, not to this "
                       f"agent (uid {os.geteuid()}): its owner could replace the socket")
    if st.st_mode & 0o022:
        raise ApiError(f"{d}: the socket's directory is writable by others (mode "
                       f"{stat.S_IMODE(st.st_mode):o}); give the socket a directory of its "
                       f"own, such as /run/mamori")
    if not tighten or (stat.S_IMODE(st.st_mode) == want and (gid is None or st.st_gid == gid)):
        return
    entries = [os.path.join(d, e) for e in os.listdir(d)]
    if all(stat.S_ISSOCK(os.lstat(e).st_mode) for e in entries):
        if gid is not None:
            os.chown(d, -1, gid)
        os.chmod(d, want)
    else:
        log.info("socket directory %s left as it is (mode %o; it holds other files): the "
                 "socket's own mode decides who connects", d, stat.S_IMODE(st.st_mode))


def bind_unix(server: grpc.Server, path: str, gid: int | None,
              tighten_dir: bool = True) -> tuple[int, int]:
    """Bind a unix socket that is never, even for an instant, more open than 0600 (0660 for
    the group): bound in a private directory, given its mode, renamed into place (which
    also replaces a stale socket atomically). Returns (grpc port, inode)."""
    d = os.path.dirname(path) or "."
    socket_dir(d, gid, tighten_dir)
    if os.path.lexists(path) and not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise ApiError(f"{path} exists and is not a socket")
    tmp = tempfile.mkdtemp(prefix=".mamori-", dir=d)            # 0700
    try:
        tmp_sock = os.path.join(tmp, "s")
        port = server.add_insecure_port(f"unix://{tmp_sock}")
        if gid is None:
            os.chmod(tmp_sock, 0o600)
        else:
            os.chown(tmp_sock, -1, gid)
            os.chmod(tmp_sock, 0o660)
        os.rename(tmp_sock, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return port, os.lstat(path).st_ino
