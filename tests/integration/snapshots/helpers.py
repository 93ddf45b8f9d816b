"""Test helpers shared by the snapshot and unpack suites: a real journal with the snapshots projection, a
service over one backend, and mounting returned mounts for real with guaranteed cleanup."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

from engine.events.journal import Journal
from engine.events.projection import Projections
from engine.images.snapshots import Mount, make_backend, mount_all, unmount_all
from engine.services import all_projections
from engine.services.snapshots import SnapshotService

NS = "testns"
ACTOR = "uid=0"


def projections() -> Projections:
    return all_projections()


@contextlib.asynccontextmanager
async def open_service(root: Path, backend: str) -> AsyncIterator[SnapshotService]:
    journal = Journal(root / "engine.db", projections())
    await journal.open()
    try:
        yield SnapshotService(journal, {backend: make_backend(backend, str(root))})
    finally:
        await journal.close()


@contextlib.contextmanager
def mounted(mounts: Sequence[Mount]) -> Iterator[str]:
    """Mount the specs on a fresh temp dir; unmount and remove it whatever happens."""
    target = tempfile.mkdtemp(prefix="snap-mnt-")
    try:
        mount_all(mounts, target)
        yield target
    finally:
        unmount_all(target)
        os.rmdir(target)


def mounts_under(prefix: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]
