"""Snapshotter vocabulary shared by the backends and the service (containerd's core/snapshots).

A snapshot is a directory tree identified by a *key* while it is active or a view and by a *name* once
committed; its *parent* is the name of a committed snapshot. Kinds:

* ``active``    — writable, made by Prepare; may be committed (becomes a committed snapshot named `name`).
* ``view``      — read-only, made by View; can never be committed.
* ``committed`` — immutable, may be the parent of others; removing one that has children is refused.

A backend only knows *backing ids* (a number per snapshot, ``<root>/snapshots/<id>``) and the chain of
its ancestors' ids; keys, names, labels and namespaces are the metadata's business (the service's,
engine/services/snapshots.py). Mounts are returned as specs (``Mount``) and mounted by whoever uses them,
never by the snapshotter.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from typing import Protocol

import msgspec


class Kind(enum.StrEnum):
    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


class Mount(msgspec.Struct, frozen=True):
    """One mount(2) to perform: containerd's mount.Mount (type, source, options)."""

    type: str
    source: str
    options: tuple[str, ...] = ()


class Usage(msgspec.Struct, frozen=True):
    size: int = 0  # bytes of disk used by the snapshot's own data (not its parents')
    inodes: int = 0


class Info(msgspec.Struct, frozen=True):
    """containerd's snapshots.Info: what Stat and Walk return."""

    kind: Kind
    name: str  # the key for active/view snapshots, the name for committed ones
    parent: str = ""
    labels: dict[str, str] = {}
    created_ns: int = 0
    updated_ns: int = 0


class Backend(Protocol):
    """What a storage backend does on disk; every method takes backing ids, never keys."""

    name: str
    root: str

    def create(self, sid: str, kind: Kind, parent_ids: Sequence[str]) -> None:
        """Make the directories of a new active snapshot or view over `parent_ids` (nearest first)."""

    def mounts(self, sid: str, kind: Kind, parent_ids: Sequence[str]) -> list[Mount]:
        """The mounts that present the snapshot (`kind` active or view)."""

    def usage(self, sid: str) -> Usage:
        """Disk used by the snapshot's own writable layer."""

    def remove(self, sid: str) -> None:
        """Delete the snapshot's directories; no error when they are already gone."""

    def exists(self, sid: str) -> bool: ...

    def ids_on_disk(self) -> list[str]: ...

    def staging_dir(self) -> str | None:
        """A directory for extracting layers independently of their parents, or None if the backend's layers
        depend on their parents' files (engine/images/unpacker.py)."""

    def upper_dir(self, sid: str) -> str:
        """The directory a layer is applied to (for overlay, the upper dir; for native, the tree itself)."""


def disk_usage(path: str) -> Usage:
    """Blocks and inodes under `path`, each hard-linked inode counted once (as containerd's fs.DiskUsage)."""
    seen: set[tuple[int, int]] = set()
    size = 0

    def visit(st: os.stat_result) -> None:
        nonlocal size
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            size += st.st_blocks * 512

    if not os.path.lexists(path):
        return Usage()
    visit(os.lstat(path))
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            visit(os.lstat(os.path.join(dirpath, n)))
    return Usage(size=size, inodes=len(seen))
