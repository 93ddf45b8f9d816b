"""``docker commit``: a new image from a container's changes — its image's layers plus one layer of what
the container wrote, with the container's configuration (and ``--change`` instructions) as the new config.

Steps: pause a running container (unless ``pause=false``) so the layer is a consistent cut; take the layer
from the overlay upper directory (engine/images/diff.py: a view over the image's top snapshot is the
lower side, so the upper directory is read directly, whiteouts and opaque directories included); write
layer, config and manifest into the content store under a lease (the image service's ingest, with gc
labels); point the name at it (or keep it dangling) and unpack; resume the container. The new image's
manifest family follows the base image's (Docker schema2 or OCI). Journaled: the image events of the
image service, and ``docker_container.committed`` (Docker's container ``commit`` event).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import hashlib
import json
import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from engine.errors import EngineError, InvalidArgument
from engine.events.types import Event
from engine.images import formats, reference
from engine.images.archive import layout
from engine.images.archive.changes import apply_changes
from engine.images.diff import diff_mounts
from engine.services import image_unpack
from engine.services.image_archive import ImageArchiveService, dangling_events, point_events
from engine.services.images import Descriptor

if TYPE_CHECKING:
    from engine.services import Services

NAMESPACE = "moby"
# the fields of a container's Config that an image config carries
IMAGE_CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
                     "StopSignal", "Healthcheck", "OnBuild", "Shell", "ArgsEscaped")


class DockerContainerCommitted(Event, frozen=True):
    """A container's changes became an image (Docker's container ``commit``)."""

    TYPE: ClassVar[str] = "docker_container.committed"
    SUBJECT: ClassVar[str] = "id"
    id: str
    image_id: str
    ref: str = ""
    comment: str = ""
    author: str = ""


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_config(base: dict[str, Any], container_config: dict[str, Any], *, diff_id: str, cid: str, cmd: list[str],
               comment: str, author: str, changes: list[str], override: dict[str, Any] | None) -> dict[str, Any]:
    """The committed image's config: the base's, with the container's settings, the overrides from the
    request body, the ``--change`` instructions, a new diff id and a history entry."""
    out = copy.deepcopy(base)
    cfg = {k: copy.deepcopy(container_config[k]) for k in IMAGE_CONFIG_KEYS if container_config.get(k) is not None}
    for k, v in (override or {}).items():
        if k in IMAGE_CONFIG_KEYS and v is not None:
            cfg[k] = v
    cfg = apply_changes(cfg, changes)
    now = _now()
    out["config"] = cfg
    out["created"] = now
    out["container"] = cid
    if author:
        out["author"] = author
    out.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    out["rootfs"]["diff_ids"] = [*out["rootfs"].get("diff_ids", []), diff_id]
    entry: dict[str, Any] = {"created": now, "created_by": " ".join(cmd)}
    if author:
        entry["author"] = author
    if comment:
        entry["comment"] = comment
    out["history"] = [*out.get("history", []), entry]
    return out


async def commit(services: Services, container: str, *, repo: str = "", tag: str = "", comment: str = "",
                 author: str = "", changes: list[str] | None = None, pause: bool = True,
                 config: dict[str, Any] | None = None, actor: str) -> str:
    """Commit `container` (name or id); returns the new image ID (its config digest)."""
    assert services.snapshots is not None and services.tasks is not None
    docker = services.docker  # type: ignore[attr-defined]
    c = await docker.resolve(container)
    name = ""
    if repo:
        ref = reference.parse(repo, default_tag="")
        if ref.digest:
            raise InvalidArgument("invalid reference format: a commit cannot name a digest")
        name = str(ref.with_tag(tag or ref.tag or "latest"))
    elif tag:
        raise InvalidArgument("tag is specified without a repository")
    apply_changes({}, list(changes or []))  # refuse bad --change before anything happens
    base = await image_unpack.resolve(services, NAMESPACE, c.image_ref) if c.image_ref else None
    archive = services.extra.get("image_archive")
    if archive is None:
        archive = services.extra["image_archive"] = ImageArchiveService(services)
    work = Path(services.config.root) / "tmp" / f"commit-{uuid.uuid4().hex[:12]}"
    work.mkdir(parents=True)
    view = f"commit-{uuid.uuid4().hex[:12]}"
    paused = False
    try:
        t = None
        with contextlib.suppress(EngineError):
            t = await services.tasks.get(NAMESPACE, c.id)
        if pause and t is not None and t.status == "running":
            await services.tasks.pause(NAMESPACE, c.id, actor=actor)
            paused = True
        upper = await services.snapshots.mounts(c.snapshotter, c.id, namespace=NAMESPACE)
        lower = []
        if base is not None and base.chain_id:
            lower = await services.snapshots.view(c.snapshotter, view, base.chain_id, namespace=NAMESPACE,
                                                  actor=actor)
        layer_path = work / "layer.tar.gz"

        def make_layer() -> Any:
            with open(layer_path, "wb") as f:
                return diff_mounts(lower, upper, f, compression="gzip")

        res = await asyncio.to_thread(make_layer)
    finally:
        if paused:
            with contextlib.suppress(EngineError):
                await services.tasks.resume(NAMESPACE, c.id, actor=actor)
        with contextlib.suppress(EngineError):
            if base is not None and base.chain_id:
                await services.snapshots.remove(c.snapshotter, view, namespace=NAMESPACE, actor=actor)
    try:
        docker_family = base is not None and base.manifest.media_type == formats.DOCKER_MANIFEST
        base_cfg = json.loads(base.config_raw) if base is not None else {
            "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        cfg = new_config(base_cfg, c.config, diff_id=res.diff_id, cid=c.id, cmd=[c.path, *c.args], comment=comment,
                         author=author, changes=list(changes or []), override=config)
        raw = json.dumps(cfg, separators=(",", ":")).encode()
        formats.parse_config(raw)
        cdigest = "sha256:" + hashlib.sha256(raw).hexdigest()
        layer_type = formats.DOCKER_LAYER_GZIP if docker_family else formats.OCI_LAYER_GZIP
        layers = [{"mediaType": d.media_type, "digest": d.digest, "size": d.size}
                  for d in (base.manifest.layers if base is not None else [])]
        layers.append({"mediaType": layer_type, "digest": res.digest, "size": res.compressed_size})
        man_type = formats.DOCKER_MANIFEST if docker_family else formats.OCI_MANIFEST
        manifest = json.dumps({"schemaVersion": 2, "mediaType": man_type, "config": {
            "mediaType": formats.DOCKER_CONFIG if docker_family else formats.OCI_CONFIG, "digest": cdigest,
            "size": len(raw)}, "layers": layers}, separators=(",", ":")).encode()
        mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        arc = layout.Archive()
        arc.blobs[res.digest] = layout.Blob(res.digest, res.compressed_size, layer_type, path=layer_path)
        arc.blobs[cdigest] = layout.Blob(cdigest, len(raw), formats.OCI_CONFIG, data=raw)
        labels = {layout.LABEL_GC + "config": cdigest}
        labels.update({layout.LABEL_GC + f"l.{i}": x["digest"] for i, x in enumerate(layers)})
        arc.blobs[mdigest] = layout.Blob(mdigest, len(manifest), man_type, data=manifest, labels=labels)
        target = formats.Descriptor(media_type=man_type, digest=mdigest, size=len(manifest))
        arc.images.append(layout.ArchiveImage(target, [name] if name else [], cdigest))
        lease = await archive._lease(NAMESPACE, actor)
        try:
            await archive._store(NAMESPACE, arc, lease, actor)
            d = Descriptor(media_type=man_type, digest=mdigest, size=len(manifest))

            def decide(tx: sqlite3.Cursor) -> list[Event]:
                events = point_events(tx, NAMESPACE, name, d, cdigest) if name else dangling_events(tx, NAMESPACE, d)
                return [*events, DockerContainerCommitted(id=c.id, image_id=cdigest, ref=name, comment=comment,
                                                          author=author)]

            await services.journal.append(decide, namespace=NAMESPACE, actor=actor)
        finally:
            await asyncio.shield(archive._drop_lease(NAMESPACE, lease, actor))
        return cdigest
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)

