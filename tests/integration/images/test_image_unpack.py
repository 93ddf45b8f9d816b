"""image_unpack: an image record in a namespace resolves to its manifest and config (through an index,
for the host's platform) and unpacks into a ChainID-named snapshot chain, labelled for gc; a second unpack
changes nothing; a missing layer blob is NotFound and leaves no snapshot."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from engine.errors import NotFound
from engine.services.image_unpack import LABEL_SNAPSHOT_REF, LABEL_UNCOMPRESSED, resolve, unpack
from tests.integration.images.helpers import ACTOR, NS, ingest, services_at
from tests.support.images import busybox_oci_archive, image_id


async def test_resolve_and_unpack_is_idempotent_and_labelled() -> None:
    root = Path(tempfile.mkdtemp(prefix="img-unpack-"))
    s = await services_at(root)
    try:
        name = await ingest(s, busybox_oci_archive(root, "busybox:latest"))
        r = await resolve(s, NS, name)
        assert r.config_digest == image_id() and len(r.diff_ids) == 1 and r.chain_id == r.diff_ids[0]
        assert r.config.config.cmd == ["sh"]
        await unpack(s, NS, name, actor=ACTOR)
        assert s.snapshots is not None and s.content is not None
        info = await s.snapshots.stat("overlayfs", r.chain_id, namespace=NS)
        assert info.name == r.chain_id
        cfg = await s.content.info(NS, r.config_digest)
        assert cfg.labels[LABEL_SNAPSHOT_REF + "overlayfs"] == r.chain_id
        layer = await s.content.info(NS, r.manifest.layers[0].digest)
        assert layer.labels[LABEL_UNCOMPRESSED] == r.diff_ids[0]
        before = s.journal.last_seq
        await unpack(s, NS, name, actor=ACTOR)
        assert s.journal.last_seq == before  # nothing to do, nothing journaled
        mounts = await s.snapshots.view("overlayfs", "v1", r.chain_id, namespace=NS, actor=ACTOR)
        assert mounts
    finally:
        await s.journal.close()
        _unmount_and_remove(root)


async def test_missing_layer_is_not_found_and_leaves_no_snapshot() -> None:
    root = Path(tempfile.mkdtemp(prefix="img-unpack-"))
    s = await services_at(root)
    try:
        name = await ingest(s, busybox_oci_archive(root, "busybox:nolayer"), skip_layers=True)
        with pytest.raises(NotFound):
            await unpack(s, NS, name, actor=ACTOR)
        assert s.snapshots is not None
        assert await s.snapshots.walk("overlayfs", namespace=NS) == []
        with pytest.raises(NotFound):
            await resolve(s, NS, "docker.io/library/nope:latest")
    finally:
        await s.journal.close()
        _unmount_and_remove(root)


def _unmount_and_remove(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
