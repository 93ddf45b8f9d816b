"""File descriptors that become readable when a cgroup hits OOM, for the shim to poll.

v1: an eventfd registered through ``cgroup.event_control`` against
``memory.oom_control``; the kernel signals it on every OOM in the cgroup. v2 has no
such registration; ``memory.events`` is a file whose modification the kernel reports
through inotify/fsnotify, so we return an inotify fd watching it for IN_MODIFY. The
caller reads the fd when it polls readable (8 bytes for the eventfd, inotify records
for inotify) and then compares ``oom_kill_count()`` with its last value, because
memory.events also changes on "high"/"max" events that killed nothing, and the v1
eventfd is also signalled once when the cgroup is removed.

Python has os.eventfd but no inotify, so inotify goes through ctypes, imported only
when a v2 manager asks for it (keeps the runtime CLI's import path small).
"""

from __future__ import annotations

import os

from engine.errors import EngineError

from . import fs

IN_MODIFY = 0x00000002
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC


def oom_eventfd_v1(memory_dir: str) -> int:
    """An eventfd signalled on OOM in the v1 memory cgroup at ``memory_dir``."""
    efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    try:
        cfd = os.open(os.path.join(memory_dir, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        os.close(efd)
        raise EngineError(
            f"open {memory_dir}/memory.oom_control: {os.strerror(err.errno or 0).lower()}"
        ) from err
    try:
        # the kernel takes its own references during registration; our cfd can go
        fs.write(memory_dir, "cgroup.event_control", f"{efd} {cfd}")
    except EngineError:
        os.close(efd)
        raise
    finally:
        os.close(cfd)
    return efd


def inotify_fd(path: str, mask: int = IN_MODIFY) -> int:
    """An inotify fd (non-blocking, close-on-exec) watching ``path``."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        e = ctypes.get_errno()
        raise EngineError(f"inotify_init1: {os.strerror(e).lower()}")
    wd = libc.inotify_add_watch(fd, os.fsencode(path), ctypes.c_uint32(mask))
    if wd < 0:
        e = ctypes.get_errno()
        os.close(fd)
        raise EngineError(f"inotify_add_watch {path}: {os.strerror(e).lower()}")
    return fd
