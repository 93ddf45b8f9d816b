"""Network namespaces kept as files: create, enter, remove.

A container's network namespace is made before its process exists (Docker's "sandbox"), so its
interfaces can be set up first and the OCI spec can point at the file. We make it without a process:
a short-lived thread calls ``unshare(CLONE_NEWNET)`` (which changes only that thread's namespace) and
bind-mounts ``/proc/self/task/<tid>/ns/net`` onto ``<exec-root>/netns/<id>``. The bind mount keeps the
namespace alive after the thread ends and after the daemon exits, so a restarted daemon finds it again.

``in_netns(path, fn)`` runs ``fn`` in a thread that has joined the namespace (setns affects the
calling thread only), which is how sockets are opened inside a container's namespace (embedded DNS)
and how loopback is brought up there.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from engine import native

T = TypeVar("T")
MS_BIND = 4096


def _in_thread(fn: Callable[[], T]) -> T:
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as err:  # handed back to the caller's thread
            box["error"] = err

    t = threading.Thread(target=run, name="netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def create(path: str | Path) -> str:
    """Make a new network namespace held by a bind mount at `path`; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.exists() and is_netns(p):
        raise FileExistsError(f"network namespace {p} already exists")
    p.touch(exist_ok=True)

    def make() -> None:
        native.unshare(native.CLONE_NEWNET)
        native.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", str(p), None, MS_BIND)

    try:
        _in_thread(make)
    except BaseException:
        p.unlink(missing_ok=True)
        raise
    return str(p)


def is_netns(path: str | Path) -> bool:
    """True when `path` is a mount of a network namespace (nsfs), not a plain file."""
    try:
        return os.stat(path).st_dev != os.stat(Path(path).parent).st_dev
    except OSError:
        return False


def remove(path: str | Path) -> None:
    """Unmount and delete a namespace file; missing is fine."""
    p = Path(path)
    if is_netns(p):
        with contextlib.suppress(OSError):
            native.umount2(str(p), native.MNT_DETACH)
    p.unlink(missing_ok=True)


def in_netns(path: str | Path, fn: Callable[[], T]) -> T:
    """Run fn() in a fresh thread that joined the network namespace at `path`."""

    def run() -> T:
        fd = os.open(str(path), os.O_RDONLY | os.O_CLOEXEC)
        try:
            native.setns(fd, native.CLONE_NEWNET)
        finally:
            os.close(fd)
        return fn()

    return _in_thread(run)
