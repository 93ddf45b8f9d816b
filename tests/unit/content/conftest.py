"""Fixtures: a real Journal on a temp path with the content, leases and gc services over a LocalStore."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.events.journal import Journal
from engine.images.content import LocalStore
from engine.services import all_projections
from engine.services.content import ContentService
from engine.services.gc import GarbageCollector
from engine.services.leases import LeaseService


@dataclass
class Env:
    root: Path
    journal: Journal
    store: LocalStore
    content: ContentService
    leases: LeaseService
    gc: GarbageCollector


async def open_env(root: Path) -> Env:
    journal = Journal(root / "engine.db", all_projections())
    await journal.open()
    store = LocalStore(root / "content")
    content = ContentService(journal, store)
    gc = GarbageCollector(journal, content)
    leases = LeaseService(journal, collect=gc.collect)
    return Env(root, journal, store, content, leases, gc)


@pytest.fixture
async def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    e = await open_env(tmp_path)
    try:
        yield e
    finally:
        await e.journal.close()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "content")
