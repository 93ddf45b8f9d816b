"""The garbage collector removes committed snapshots nothing references any more — after the image that
labelled them is deleted — leaves first, and keeps those a container or another image still uses, and
young ones (an unpack in progress). The scheduler runs a collection soon after a deletion."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from engine.services.containers import OCI_SPEC_TYPE_URL, AnyBlob, Container, ContainerService, Runtime
from engine.services.image_unpack import unpack
from tests.integration.images.helpers import ACTOR, NS, ingest, services_at
from tests.support.images import busybox_oci_archive


async def _keys(s) -> set[str]:  # type: ignore[no-untyped-def]
    return {i.name for i in await s.snapshots.walk("overlayfs", namespace=NS)}


async def test_snapshots_of_a_deleted_image_are_collected_and_used_ones_kept() -> None:
    root = Path(tempfile.mkdtemp(prefix="gc-snap-"))
    s = await services_at(root)
    s.gc.snapshots = s.snapshots
    try:
        name = await ingest(s, busybox_oci_archive(root, "busybox:gc"))
        r = await unpack(s, NS, name, actor=ACTOR)
        s.gc.snapshot_grace_ns = 10**18  # young: kept even when unreferenced
        await s.images.delete(NS, name, actor=ACTOR)
        report = await s.gc.collect()
        assert report.snapshots == [] and r.chain_id in await _keys(s)

        s.gc.snapshot_grace_ns = 0
        await s.snapshots.prepare("overlayfs", "ctr-rootfs", r.chain_id, namespace=NS, actor=ACTOR)
        containers = ContainerService(s.journal)
        spec = AnyBlob(OCI_SPEC_TYPE_URL, b'{"process": {"args": ["sh"]}}')
        await containers.create(NS, Container(id="c1", runtime=Runtime("io.containerd.runc.v2"), spec=spec,
                                              snapshotter="overlayfs", snapshot_key="ctr-rootfs"), actor=ACTOR)
        report = await s.gc.collect()
        assert report.snapshots == [], "a container's snapshot and its parent are in use"
        assert await _keys(s) == {r.chain_id, "ctr-rootfs"}

        await containers.delete(NS, "c1", actor=ACTOR)
        await s.snapshots.remove("overlayfs", "ctr-rootfs", namespace=NS, actor=ACTOR)
        report = await s.gc.collect()
        assert report.snapshots == [(NS, "overlayfs", r.chain_id)]
        assert await _keys(s) == set()
        removed = [e for e in await s.journal.read(limit=100_000) if e.type == "snapshot.removed" and e.cause == "gc"]
        assert [e.subject for e in removed] == [r.chain_id]
    finally:
        await s.journal.close()
        shutil.rmtree(root, ignore_errors=True)


async def test_scheduler_collects_after_a_deletion() -> None:
    root = Path(tempfile.mkdtemp(prefix="gc-sched-"))
    s = await services_at(root)
    s.gc.snapshots = s.snapshots
    s.gc.snapshot_grace_ns = 0
    task = asyncio.create_task(s.gc.run_scheduler(debounce_s=0.05, period_s=3600))
    try:
        name = await ingest(s, busybox_oci_archive(root, "busybox:sched"))
        await unpack(s, NS, name, actor=ACTOR)
        assert s.journal.subscriber_count == 0  # the scheduler is the daemon's own, not a client listener
        await s.images.delete(NS, name, actor=ACTOR)
        for _ in range(200):
            if not await _keys(s) and not await s.content.list(NS):
                break
            await asyncio.sleep(0.02)
        assert await _keys(s) == set() and await s.content.list(NS) == []
        # and again: the scheduler keeps running after its first collection
        name = await ingest(s, busybox_oci_archive(root, "busybox:sched2"))
        await unpack(s, NS, name, actor=ACTOR)
        await s.images.delete(NS, name, actor=ACTOR)
        for _ in range(200):
            if not await _keys(s) and not await s.content.list(NS):
                break
            await asyncio.sleep(0.02)
        assert await _keys(s) == set() and await s.content.list(NS) == []
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await s.journal.close()
        shutil.rmtree(root, ignore_errors=True)
