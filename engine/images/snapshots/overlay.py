"""The ``overlayfs`` backend (the default): each snapshot is an upper dir, parents are lower dirs.

Layout, as containerd's overlay plugin: ``<root>/snapshots/<id>/fs`` (the snapshot's own files) and
``<root>/snapshots/<id>/work`` (overlayfs's work dir, active snapshots only). Committing changes nothing
on disk: a committed snapshot is its ``fs`` used as a lower dir by its children.

Mounts (nearest parent first in ``lowerdir``, as overlayfs wants it):

* no parent: a bind mount of ``fs`` (``rw`` for active, ``ro`` for a view);
* a view over exactly one parent: a read-only bind of the parent's ``fs`` (no overlay needed);
* an active snapshot over parents: ``overlay`` with ``upperdir``/``workdir``/``lowerdir``;
* a view over two or more parents: ``overlay`` with ``lowerdir`` only, which the kernel makes read-only.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from engine.images.snapshots.base import Kind, Mount, Usage, disk_usage


class OverlayBackend:
    name = "overlayfs"

    def __init__(self, root: str) -> None:
        self.root = root
        self.dir = os.path.join(root, "snapshots")
        self.staging = os.path.join(root, "staging")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        os.makedirs(self.staging, mode=0o700, exist_ok=True)

    def _path(self, sid: str, *parts: str) -> str:
        return os.path.join(self.dir, sid, *parts)

    def create(self, sid: str, kind: Kind, parent_ids: Sequence[str]) -> None:
        path = self._path(sid)
        os.mkdir(path, 0o700)
        os.mkdir(self._path(sid, "fs"), 0o755)
        if kind is Kind.ACTIVE:
            os.mkdir(self._path(sid, "work"), 0o711)
        if parent_ids and kind is Kind.ACTIVE:
            # the upper dir starts with its nearest parent's root mode/owner, so the merged root looks the same
            st = os.stat(self._path(parent_ids[0], "fs"))
            os.chmod(self._path(sid, "fs"), st.st_mode & 0o7777)
            os.chown(self._path(sid, "fs"), st.st_uid, st.st_gid)

    def mounts(self, sid: str, kind: Kind, parent_ids: Sequence[str]) -> list[Mount]:
        ro = kind is not Kind.ACTIVE
        if not parent_ids:
            return [Mount("bind", self._path(sid, "fs"), ("rbind", "ro" if ro else "rw"))]
        if ro and len(parent_ids) == 1:
            return [Mount("bind", self._path(parent_ids[0], "fs"), ("rbind", "ro"))]
        lower = "lowerdir=" + ":".join(self._path(p, "fs") for p in parent_ids)
        if ro:
            return [Mount("overlay", "overlay", (lower,))]
        return [Mount("overlay", "overlay", (f"workdir={self._path(sid, 'work')}",
                                             f"upperdir={self._path(sid, 'fs')}", lower))]

    def usage(self, sid: str) -> Usage:
        return disk_usage(self._path(sid, "fs"))

    def remove(self, sid: str) -> None:
        shutil.rmtree(self._path(sid), ignore_errors=False, onerror=_ignore_missing)

    def exists(self, sid: str) -> bool:
        return os.path.isdir(self._path(sid, "fs"))

    def ids_on_disk(self) -> list[str]:
        return sorted(os.listdir(self.dir))

    def upper_dir(self, sid: str) -> str:
        return self._path(sid, "fs")

    def staging_dir(self) -> str | None:
        """Where a layer is extracted on its own before it becomes a snapshot's upper dir, on the same file
        system so that a rename moves it there (engine/images/unpacker.py); emptied by recovery."""
        return self.staging

    def lower_dirs(self, parent_ids: Sequence[str]) -> list[str]:
        return [self._path(p, "fs") for p in parent_ids]


def _ignore_missing(fn: object, path: str, exc: tuple[type[BaseException], BaseException, object]) -> None:
    if not isinstance(exc[1], FileNotFoundError):
        raise exc[1]
