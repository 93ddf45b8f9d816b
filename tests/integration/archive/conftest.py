"""In-process services over a temp root for the archive tests (the daemon's config root is the temp root, so
load/import scratch directories live under it and go with it)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.config import Config
from engine.services import Services
from engine.services.image_archive import ImageArchiveService
from engine.services.images import ImageSource
from tests.integration.images.helpers import services_at


@pytest.fixture
async def env() -> AsyncIterator[tuple[Services, ImageArchiveService, Path]]:
    root = Path(tempfile.mkdtemp(prefix="img-archive-"))
    (root / "state").mkdir()
    s = await services_at(root / "state")
    s.config = Config(root=str(root / "state"))
    assert s.gc is not None
    s.gc.add_source(ImageSource())  # as the daemon does: image targets are gc roots
    try:
        yield s, ImageArchiveService(s), root
    finally:
        await s.journal.close()
        subprocess.run(["umount", "-R", "-l", str(root)], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
