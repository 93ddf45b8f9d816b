"""Shared set-up for the image service tests: in-process services over a temp root, and an OCI archive
written straight into the content store with its image record."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from engine.config import Config
from engine.events.journal import Journal
from engine.images.snapshots import make_backend
from engine.services import Services, all_projections
from engine.services.gc import open_content_services
from engine.services.images import Descriptor, Image, ImageService
from engine.services.namespaces import NamespaceService
from engine.services.snapshots import SnapshotService

NS, ACTOR = "moby", "test"


async def services_at(root: Path) -> Services:
    journal = Journal(str(root / "engine.db"), all_projections())
    await journal.open()
    s = Services(journal=journal, namespaces=NamespaceService(journal), daemon_uuid="t", config=Config())
    c = await open_content_services(journal, root, actor=ACTOR)
    s.content, s.leases, s.gc = c.content, c.leases, c.gc
    s.images = ImageService(journal)
    s.snapshots = SnapshotService(journal, {"overlayfs": make_backend("overlayfs", str(root))})
    return s


async def ingest(s: Services, archive: Path, *, skip_layers: bool = False) -> str:
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
