"""Fixtures for the shim's integration tests: real shims, real containers from a busybox rootfs.

``shims`` gives a ``ShimEnv``: a private work dir (bundles, state dirs, sockets, logs), a unique
cgroup parent, and ``await env.new(...)`` which writes a bundle, starts a shim (a fresh
``engine-shim`` process, or forked by a fork server when the test asks) and connects a client.
Whatever a test leaves (shims, containers, cgroups, files) is removed afterwards even when it
fails; what had to be removed by hand after a clean end is reported as a failure by the tests
that check for leftovers themselves.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.integration.shim.shimenv import ShimEnv
from tests.support.rootfs import build_busybox_rootfs


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/shim" in str(item.fspath):
            item.add_marker(pytest.mark.root)


@pytest.fixture(scope="session")
def busybox_rootfs():
    d = Path(tempfile.mkdtemp(prefix="shim-rootfs-"))
    d.chmod(0o755)
    try:
        yield build_busybox_rootfs(d / "rootfs")
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def shims(busybox_rootfs):
    if os.geteuid() != 0:
        pytest.skip("needs root: real namespaces, cgroups and mounts")
    workdir = Path(tempfile.mkdtemp(prefix="shim-test-"))
    workdir.chmod(0o755)
    env = ShimEnv(busybox_rootfs, workdir)
    try:
        yield env
    finally:
        await env.cleanup()
