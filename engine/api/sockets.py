"""Unix sockets the daemon listens on: a stale socket from a crashed daemon is replaced (any other file
in the way is an error), the socket is created under umask 0117 so there is no moment in which it is
world-accessible, then set to mode 0660 and, when the group exists, given to it (as dockerd does with
`docker`)."""

from __future__ import annotations

import contextlib
import grp
import os
import stat
from collections.abc import Iterator

from engine.errors import FailedPrecondition


def clear_stale(path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FailedPrecondition(f"socket path {path} exists and is not a socket")
    os.unlink(path)


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    old = os.umask(0o117)
    try:
        yield
    finally:
        os.umask(old)


def secure(path: str, group: str) -> None:
    os.chmod(path, 0o660)
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return
    os.chown(path, -1, gid)
