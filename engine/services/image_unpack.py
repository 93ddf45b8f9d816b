"""From an image record to what a container needs: its manifest and config resolved, its layers unpacked.

``resolve`` follows an image's target through an index (choosing the platform, the host's by default)
to a manifest and its config, from the namespace's content store. ``unpack`` makes the committed
snapshot chain of the layers (engine/images/unpack.py ``unpack_layers``: each snapshot named by its
ChainID, shared layers unpacked once) and then labels the config, as containerd's unpacker does, so
that the garbage collector keeps the chain while the image exists:
``containerd.io/gc.ref.snapshot.<snapshotter> = <top chain id>`` on the config, and
``containerd.io/uncompressed = <diff id>`` on each layer blob. A container's rootfs is then a snapshot
prepared on ``Resolved.chain_id``.

Design choices: the layers are read straight from the blob files (no copy through the service); a
resolve reads three small documents through the content service so a missing or foreign-namespace blob
is a clean NotFound; unpacking twice is a no-op (the top snapshot exists → only the labels are checked).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from engine.errors import InvalidArgument, NotFound
from engine.images import formats
from engine.images.platforms import Platform
from engine.images.unpacker import Layer, chain_id, unpack_layers

if TYPE_CHECKING:
    from engine.services import Services

LABEL_UNCOMPRESSED = "containerd.io/uncompressed"
LABEL_SNAPSHOT_REF = "containerd.io/gc.ref.snapshot."
_MAX_DEPTH = 4  # an index of indexes of… is allowed, but not without end


@dataclass
class Resolved:
    name: str
    target: formats.Descriptor  # the image record's target (index or manifest)
    manifest_desc: formats.Descriptor
    manifest: formats.Manifest
    config_digest: str  # the Docker image ID
    config: formats.ImageConfig
    config_raw: bytes
    diff_ids: list[str] = field(default_factory=list)
    chain_ids: list[str] = field(default_factory=list)

    @property
    def chain_id(self) -> str:
        """The top layer's ChainID ("" for an image without layers)."""
        return self.chain_ids[-1] if self.chain_ids else ""

    @property
    def size(self) -> int:
        """The compressed size of the layers (what Docker's image list shows as the size)."""
        return sum(d.size for d in self.manifest.layers)


async def resolve_target(services: Services, namespace: str, name: str, target: formats.Descriptor,
                         platform: Platform | None = None) -> Resolved:
    """Resolve a target descriptor (index or manifest) in `namespace`'s content to manifest and config."""
    assert services.content is not None
    desc = target
    for _ in range(_MAX_DEPTH):
        data = await services.content.read(namespace, desc.digest)
        doc = formats.parse(data, desc.media_type)
        if isinstance(doc, formats.Index):
            desc = formats.choose(doc, platform)
            continue
        manifest = doc
        break
    else:
        raise InvalidArgument(f"image {name}: indexes nested deeper than {_MAX_DEPTH}")
    raw = await services.content.read(namespace, manifest.config.digest)
    config = formats.parse_config(raw)
    diff_ids = list(config.rootfs.diff_ids)
    layers = [d for d in manifest.layers if formats.is_layer(d.media_type)]
    if len(diff_ids) != len(layers):
        raise InvalidArgument(f"image {name}: {len(layers)} layers in the manifest but {len(diff_ids)} diff ids "
                              "in the config")
    chains: list[str] = []
    for d in diff_ids:
        chains.append(chain_id(chains[-1] if chains else "", d))
    return Resolved(name=name, target=target, manifest_desc=desc, manifest=manifest,
                    config_digest=manifest.config.digest, config=config, config_raw=raw, diff_ids=diff_ids,
                    chain_ids=chains)


async def resolve(services: Services, namespace: str, image_name: str,
                  platform: Platform | None = None) -> Resolved:
    """Resolve the image record `image_name` of `namespace`; NotFound if there is none."""
    assert services.images is not None
    img = await services.images.get(namespace, image_name)
    t = img.target
    target = formats.Descriptor(media_type=t.media_type, digest=t.digest, size=t.size,
                                annotations=dict(t.annotations))
    return await resolve_target(services, namespace, image_name, target, platform)


async def unpack_resolved(services: Services, namespace: str, r: Resolved, snapshotter: str = "overlayfs", *,
                          actor: str) -> Resolved:
    """Unpack an already resolved image (see ``unpack``)."""
    assert services.snapshots is not None and services.content is not None
    content = services.content
    layers_desc = [d for d in r.manifest.layers if formats.is_layer(d.media_type)]
    top_exists = False
    if r.chain_id:
        try:
            await services.snapshots.stat(snapshotter, r.chain_id, namespace=namespace)
            top_exists = True
        except NotFound:
            pass
    if not top_exists and layers_desc:
        for d in layers_desc:  # every blob must be here before a snapshot is made
            await content.info(namespace, d.digest)
        store = content.store

        def opener(path: Path) -> Callable[[], BinaryIO]:
            return lambda: open(path, "rb")

        layers = [Layer(diff_id, opener(store.blob_path(d.digest)))
                  for d, diff_id in zip(layers_desc, r.diff_ids, strict=True)]
        await unpack_layers(services.snapshots, snapshotter, layers, namespace=namespace, actor=actor)
    for d, diff_id in zip(layers_desc, r.diff_ids, strict=True):
        info = await content.info(namespace, d.digest)
        if info.labels.get(LABEL_UNCOMPRESSED) != diff_id:
            await content.update(namespace, d.digest, {LABEL_UNCOMPRESSED: diff_id},
                                 paths=[f"labels.{LABEL_UNCOMPRESSED}"], actor=actor)
    if r.chain_id:
        key = LABEL_SNAPSHOT_REF + snapshotter
        info = await content.info(namespace, r.config_digest)
        if info.labels.get(key) != r.chain_id:
            await content.update(namespace, r.config_digest, {key: r.chain_id}, paths=[f"labels.{key}"],
                                 actor=actor)
    return r


async def unpack(services: Services, namespace: str, image_name: str, snapshotter: str = "overlayfs",
                 platform: Platform | None = None, *, actor: str) -> Resolved:
    """Resolve `image_name` and make sure its layers are unpacked in `snapshotter`; idempotent."""
    r = await resolve(services, namespace, image_name, platform)
    return await unpack_resolved(services, namespace, r, snapshotter, actor=actor)
