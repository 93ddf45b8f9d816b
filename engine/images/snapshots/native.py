"""The ``native`` backend: every snapshot is a full copy of its parent, presented by a bind mount.

For filesystems without overlayfs (or where overlay cannot be stacked). ``<root>/snapshots/<id>/fs`` holds
the whole tree; Prepare and View copy the parent's tree with ``cp -a`` (hard links, xattrs, devices,
ownership and times kept — GNU cp does this faster than a Python walk and reflinks where it can; it
runs under ``setpriv --pdeathsig KILL`` so it never outlives the daemon). Usage is
the whole tree, since nothing is shared with the parent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from engine.errors import EngineError
from engine.images.snapshots.base import Kind, Mount, Usage, disk_usage
from engine.images.snapshots.overlay import _ignore_missing


class NativeBackend:
    name = "native"

    def __init__(self, root: str) -> None:
        self.root = root
        self.dir = os.path.join(root, "snapshots")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)

    def staging_dir(self) -> str | None:
        """None: a layer is applied onto a copy of its parent, so layers cannot be extracted on their own."""
        return None

    def _path(self, sid: str, *parts: str) -> str:
        return os.path.join(self.dir, sid, *parts)

    def create(self, sid: str, kind: Kind, parent_ids: Sequence[str]) -> None:
        os.mkdir(self._path(sid), 0o700)
        fs = self._path(sid, "fs")
        if not parent_ids:
            os.mkdir(fs, 0o755)
            return
        # setpriv --pdeathsig: the copy dies with the thread that started it, so a daemon killed mid-copy
        # leaves no cp still writing into a directory that recovery is about to delete
        proc = subprocess.run(["setpriv", "--pdeathsig", "KILL", "cp", "-a", "--reflink=auto", "--",
                               self._path(parent_ids[0], "fs"), fs],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise EngineError(f"copy snapshot {parent_ids[0]} to {sid}: {proc.stderr.strip()}")

    def mounts(self, sid: str, kind: Kind, parent_ids: Sequence[str]) -> list[Mount]:
        return [Mount("bind", self._path(sid, "fs"), ("rbind", "rw" if kind is Kind.ACTIVE else "ro"))]

    def usage(self, sid: str) -> Usage:
        return disk_usage(self._path(sid, "fs"))

    def remove(self, sid: str) -> None:
        shutil.rmtree(self._path(sid), onerror=_ignore_missing)

    def exists(self, sid: str) -> bool:
        return os.path.isdir(self._path(sid, "fs"))

    def ids_on_disk(self) -> list[str]:
        return sorted(os.listdir(self.dir))

    def upper_dir(self, sid: str) -> str:
        return self._path(sid, "fs")
