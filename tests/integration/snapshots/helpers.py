"""Test helpers shared by the snapshot and unpack suites: a real journal with the snapshots projection, a
service over one backend, and mounting returned mounts for real with guaranteed cleanup."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

from engine import store
from engine.events.journal import Journal
from engine.events.projection import Projections
from engine.images.snapshots import Mount, make_backend, mount_all, unmount_all
from engine.services import all_projections, snapshots
from engine.services.snapshots import SnapshotService

NS = "testns"
ACTOR = "uid=0"


def projections() -> Projections:
    projs = list(all_projections().all)
    if not any(p.name == "snapshots" for p in projs):
        projs.append(snapshots.PROJECTION)
    return Projections(projs)


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


def patch_pending_migration() -> None:
    """Until migration 0002 lands, number 0003_snapshots as the next migration for test databases."""
    files = store.migration_files()
    if any(name == "snapshots" for _, name, _ in files):
        return
    pending = Path(__file__).resolve().parents[3] / "migrations" / "0003_snapshots.sql.pending"
    extra = (len(files) + 1, "snapshots", pending.read_text())
    import engine.store.db as db

    orig = db.migration_files
    db.migration_files = lambda: orig() + [extra]  # type: ignore[assignment]
