"""Fixtures for the tasks service's integration tests: real shims and containers from a busybox rootfs."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.integration.tasks.taskenv import TaskEnv
from tests.support.rootfs import build_busybox_rootfs


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/tasks" in str(item.fspath):
            item.add_marker(pytest.mark.root)


@pytest.fixture(scope="session")
def busybox_rootfs():
    d = Path(tempfile.mkdtemp(prefix="tasks-rootfs-"))
    d.chmod(0o755)
    try:
        yield build_busybox_rootfs(d / "rootfs")
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def env(busybox_rootfs):
    if os.geteuid() != 0:
        pytest.skip("needs root: real namespaces, cgroups and mounts")
    workdir = Path(tempfile.mkdtemp(prefix="tasks-test-"))
    workdir.chmod(0o755)
    e = TaskEnv(busybox_rootfs, workdir)
    try:
        await e.open()
        yield e
    finally:
        await e.cleanup()
