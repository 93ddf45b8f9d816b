"""image_unpack: an image record in a namespace resolves to its manifest and config (through an index,
for the host's platform) and unpacks into a ChainID-named snapshot chain, labelled for gc; a second unpack
changes nothing; a missing layer blob is NotFound and leaves no snapshot."""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest

from engine.config import Config
from engine.errors import NotFound
from engine.events.journal import Journal
from engine.images.snapshots import make_backend
from engine.services import Services, all_projections
from engine.services.gc import open_content_services
from engine.services.image_unpack import LABEL_SNAPSHOT_REF, LABEL_UNCOMPRESSED, resolve, unpack
from engine.services.images import Descriptor, Image, ImageService
from engine.services.namespaces import NamespaceService
from engine.services.snapshots import SnapshotService
from tests.support.images import busybox_oci_archive, image_id

NS, ACTOR = "moby", "test"


async def _services(root: Path) -> Services:
    journal = Journal(str(root / "engine.db"), all_projections())
    await journal.open()
    s = Services(journal=journal, namespaces=NamespaceService(journal), daemon_uuid="t", config=Config())
    c = await open_content_services(journal, root, actor=ACTOR)
    s.content, s.leases, s.gc = c.content, c.leases, c.gc
    s.images = ImageService(journal)
    s.snapshots = SnapshotService(journal, {"overlayfs": make_backend("overlayfs", str(root))})
    return s


async def _ingest(s: Services, archive: Path, *, skip_layers: bool = False) -> str:
    """Write the archive's blobs into the content store and create the image its index names."""
    assert s.content is not None and s.images is not None
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest_desc = index["manifests"][0]
        manifest = json.load(tar.extractfile("blobs/sha256/" + manifest_desc["digest"].split(":")[1]))  # type: ignore[arg-type]
        layers = {d["digest"] for d in manifest["layers"]}
        for m in tar.getmembers():
            if not m.name.startswith("blobs/sha256/"):
                continue
            digest = "sha256:" + m.name.rsplit("/", 1)[1]
            if skip_layers and digest in layers:
                continue
            data = tar.extractfile(m).read()  # type: ignore[union-attr]
            w = await s.content.writer(NS, f"t-{digest}", total=len(data), expected=digest, actor=ACTOR)
            await w.write(data)
            await w.commit(len(data), digest)
    name = manifest_desc["annotations"]["io.containerd.image.name"]
    await s.images.create(NS, Image(name=name, target=Descriptor(
        media_type=manifest_desc["mediaType"], digest=manifest_desc["digest"], size=manifest_desc["size"])),
        actor=ACTOR)
    return name


async def test_resolve_and_unpack_is_idempotent_and_labelled() -> None:
    root = Path(tempfile.mkdtemp(prefix="img-unpack-"))
    s = await _services(root)
    try:
        name = await _ingest(s, busybox_oci_archive(root, "busybox:latest"))
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
    s = await _services(root)
    try:
        name = await _ingest(s, busybox_oci_archive(root, "busybox:nolayer"), skip_layers=True)
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
