"""Snapshotter backends (containerd's overlayfs and native), without any metadata or journal knowledge.

The service (engine/services/snapshots.py) keeps keys, names, parents, labels and namespaces in the
journal and calls a backend with backing ids. ``mount_all``/``unmount_all`` perform returned mounts for
callers that need a snapshot's tree (unpack, diff, tests); the snapshotter itself never mounts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from engine.images.snapshots.base import Backend, Info, Kind, Mount, Usage, disk_usage
from engine.images.snapshots.native import NativeBackend
from engine.images.snapshots.overlay import OverlayBackend

__all__ = ["Backend", "Info", "Kind", "Mount", "NativeBackend", "OverlayBackend", "Usage", "disk_usage",
           "make_backend", "mount_all", "unmount_all"]

MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000


def make_backend(name: str, state_root: str) -> Backend:
    """The backend called `name`, rooted at ``<state_root>/snapshots/<name>``."""
    root = os.path.join(state_root, "snapshots", name)
    if name == "overlayfs":
        return OverlayBackend(root)
    if name == "native":
        return NativeBackend(root)
    from engine.errors import InvalidArgument
    raise InvalidArgument(f"unknown snapshotter {name!r} (known: overlayfs, native)")


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    """Mount the specs on `target` in order (needs CAP_SYS_ADMIN); read-only binds are remounted ro."""
    from engine import native

    for m in mounts:
        opts = list(m.options)
        if m.type == "bind":
            flags = MS_BIND | (MS_REC if "rbind" in opts else 0)
            native.mount(m.source, target, None, flags, None)
            if "ro" in opts:
                native.mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
        else:
            flags = MS_RDONLY if "ro" in opts else 0
            data = ",".join(o for o in opts if o not in ("ro", "rw"))
            native.mount(m.source, target, m.type, flags, data)


def unmount_all(target: str) -> None:
    """Unmount everything stacked on `target` (no error when nothing is mounted there)."""
    from engine import native

    while True:
        try:
            native.umount2(target, 0)
        except OSError as err:
            if err.errno == 22:  # EINVAL: not a mount point
                return
            raise
