"""Crash during a side effect: a process SIGKILLed while the native snapshotter copies a parent leaves an
intent without an outcome and a half-made directory; recovery in the next process cleans up both, and a
crash between a removal's intent and its outcome is finished the same way."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from tests.integration.snapshots.helpers import ACTOR, NS, open_service

CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from tests.integration.snapshots.helpers import open_service

    async def main():
        async with open_service(Path({root!r}), "native") as svc:
            print("ready", flush=True)
            await svc.prepare("native", "slow", "big", namespace="testns", actor="uid=0")
            print("finished", flush=True)

    asyncio.run(main())
""")


@pytest.fixture
def root():  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("the suite runs as root")
    path = Path(tempfile.mkdtemp(prefix="snap-crash-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_sigkill_during_prepare_then_recover(root: Path) -> None:
    async with open_service(root, "native") as svc:
        mounts = await svc.prepare("native", "big-k", namespace=NS, actor=ACTOR)
        src = Path(mounts[0].source)
        for i in range(3000):  # enough files that cp -a takes a while
            (src / f"f{i}").write_bytes(os.urandom(16384))
        await svc.commit("native", "big", "big-k", namespace=NS, actor=ACTOR)
    repo = str(Path(__file__).resolve().parents[3])
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(repo=repo, root=str(root))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        snaps = root / "snapshots/native/snapshots"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait for the copy to be under way, then kill
            if any((snaps / d / "fs").exists() for d in os.listdir(snaps) if d != "1"):
                break
            await asyncio.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
    async with open_service(root, "native") as svc:
        state = await svc.journal.run_read(lambda c: c.execute(
            "SELECT state FROM snapshots WHERE key = 'slow'").fetchone())
        assert state == ("preparing",), "the crash left the intent without an outcome"
        assert len(svc.backends["native"].ids_on_disk()) == 2
        rep = await svc.recover(actor="engine")
        assert rep.prepares_undone == [f"{NS}/native/slow"]
        assert svc.backends["native"].ids_on_disk() == ["1"]
        assert [i.name for i in await svc.walk("native", namespace=NS)] == ["big"]
        await svc.prepare("native", "slow", "big", namespace=NS, actor=ACTOR)  # the key is free again


async def test_recover_removes_only_the_unpackers_lost_extractions(root: Path) -> None:
    """An unpack that died with the daemon leaves an active ``extract-<id> <chain>`` snapshot (labelled with
    the chain it was to become) and maybe a staged layer: recovery removes both, journaled, and keeps every
    other active snapshot — a container's rootfs, and an ``extract-`` key a client made without the label."""
    async with open_service(root, "overlayfs") as svc:
        await svc.prepare("overlayfs", "base-k", namespace=NS, actor=ACTOR)
        await svc.commit("overlayfs", "base", "base-k", namespace=NS, actor=ACTOR)
        lost = "extract-0123456789ab sha256:" + "1" * 64
        mounts = await svc.prepare("overlayfs", lost, "base", labels={"containerd.io/snapshot.ref": "sha256:" + "1" * 64},
                                   namespace=NS, actor=ACTOR)
        await svc.prepare("overlayfs", "container-rootfs", "base", namespace=NS, actor=ACTOR)
        await svc.prepare("overlayfs", "extract-by-hand", "base", namespace=NS, actor=ACTOR)
        upper = [o.split("=", 1)[1] for o in mounts[0].options if o.startswith("upperdir=")][0]
        Path(upper, "half-written").write_bytes(b"x" * 1000)
        staging = svc.staging_dir("overlayfs")
        assert staging is not None
        Path(staging, "layer-abc/etc").mkdir(parents=True)
        Path(staging, "layer-abc/etc/passwd").write_text("root:x:0:0\n")
    async with open_service(root, "overlayfs") as svc:
        rep = await svc.recover(actor="engine")
        assert rep.extractions_removed == [f"{NS}/overlayfs/{lost}"]
        assert rep.staged_removed == ["overlayfs/layer-abc"] and os.listdir(staging) == []
        assert sorted(i.name for i in await svc.walk("overlayfs", namespace=NS)) == [
            "base", "container-rootfs", "extract-by-hand"]
        assert not Path(upper).exists()
        removed = await svc.journal.read(after_seq=0, where="type = ? AND subject = ?",
                                         params=("snapshot.removed", lost))
        assert [e.cause for e in removed] == ["recover"]
        again = await svc.recover(actor="engine")
        assert again.extractions_removed == [] and again.staged_removed == []
