"""Fixtures for the registry tests: one real registry per module (Debian's docker-registry) filled by skopeo,
and in-process services over a temp root with a PullService (``pulling``)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.services import Services
from engine.services.pull import PullService
from tests.integration.images.helpers import services_at
from tests.support import images
from tests.support.registry import TestRegistry, multiarch_oci_layout, random_oci_layout


def pytest_collection_modifyitems(items):  # type: ignore[no-untyped-def]
    for item in items:
        if "tests/integration/registry" in str(item.fspath):
            item.add_marker(pytest.mark.root)


@dataclass
class Filled:
    reg: TestRegistry
    digests: dict[str, str] = field(default_factory=dict)


def fill(reg: TestRegistry, work: Path) -> dict[str, str]:
    """bb:1 (busybox, gzip), multi:1 (two-platform index), a:1 and b:1 (sharing busybox and a random layer)."""
    out: dict[str, str] = {}
    reg.skopeo_copy(f"oci-archive:{images.busybox_oci_archive(work, 'bb:1', gz=True)}", "bb:1")
    layout, multi = multiarch_oci_layout(work / "multi")
    reg.skopeo_copy(f"oci:{layout}", "multi:1", all_images=True)
    out.update({f"multi/{k}": v for k, v in multi.items()})
    a, out["a"] = random_oci_layout(work / "a", [1 << 20], seed=1)
    reg.skopeo_copy(f"oci:{a}", "a:1")
    b, out["b"] = random_oci_layout(work / "b", [1 << 20, 600_000], seed=1)  # shares a's layers
    reg.skopeo_copy(f"oci:{b}", "b:1")
    return out


@pytest.fixture(scope="module")
def filled() -> Iterator[Filled]:
    reg = TestRegistry().start()
    work = Path(tempfile.mkdtemp(prefix="reg-work-"))
    try:
        yield Filled(reg, fill(reg, work))
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def auth_registry() -> Iterator[TestRegistry]:
    reg = TestRegistry({"alice": "s3cret"}).start()
    work = Path(tempfile.mkdtemp(prefix="reg-work-"))
    try:
        reg.skopeo_copy(f"oci-archive:{images.busybox_oci_archive(work, 'bb:1', gz=True)}", "bb:1")
        yield reg
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


def remove_root(root: Path) -> None:
    subprocess.run(["umount", "-R", "-l", str(root)], capture_output=True)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(str(root))]
    for m in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@contextlib.asynccontextmanager
async def pulling(root: Path | None = None) -> AsyncIterator[tuple[Services, PullService, Path]]:
    """Services over a temp root (or `root`, kept) and a PullService; closed and removed after."""
    own = root is None
    root = root or Path(tempfile.mkdtemp(prefix="reg-pull-"))
    s = await services_at(root)
    p = PullService(s)
    s.pull = p
    try:
        yield s, p, root
    finally:
        await p.close()
        await s.journal.close()
        if own:
            remove_root(root)
