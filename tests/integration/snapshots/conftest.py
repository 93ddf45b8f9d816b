"""Fixtures of the snapshotter conformance suite: every test runs once per backend (overlayfs, native)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.integration.snapshots.helpers import mounts_under, open_service

BACKENDS = ["overlayfs", "native"]


def pytest_collection_modifyitems(items):  # type: ignore[no-untyped-def]
    for item in items:
        if "tests/integration/snapshots" in str(item.fspath):
            item.add_marker(pytest.mark.root)


@pytest.fixture(params=BACKENDS)
async def svc(request):  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("needs root: the suite mounts what the snapshotter returns")
    root = Path(tempfile.mkdtemp(prefix="snap-root-"))
    try:
        async with open_service(root, request.param) as service:
            service.name = request.param  # type: ignore[attr-defined]
            yield service
        assert mounts_under(str(root)) == [], "a test left mounts under the snapshotter root"
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
