"""Image formats: OCI and Docker schema2 documents as msgspec Structs, parsing, choosing and defaults.

Both families are read into one set of Structs (their JSON shapes agree; only the media types differ):
``Index`` (OCI image index, Docker manifest list), ``Manifest`` (OCI image manifest, Docker schema2
manifest), ``ImageConfig`` (the config blob: platform, ``config``, rootfs diff ids, history). Parsing is
strict where a wrong document would do harm — a bad JSON, a wrong schema version, a media type that
contradicts the one the descriptor announced, a malformed digest or a negative size are InvalidArgument
with the reason — and lenient elsewhere (unknown fields are kept out, not refused).

``choose`` picks a manifest from an index for a platform (the best-ranked, see engine/images/platforms);
``container_defaults`` turns an image config into what a container starts with. Layer media types
(plain, gzip, zstd, for both families and the non-distributable ones) map to a compression by
``layer_compression``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from engine.errors import InvalidArgument, NotFound
from engine.images.content import digests
from engine.images.platforms import Platform, host, rank

# OCI (image-spec v1)
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
# Docker (distribution schema2)
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

Compression = Literal["none", "gzip", "zstd"]
_LAYERS: dict[str, Compression] = {
    OCI_LAYER: "none", OCI_LAYER_ND: "none", DOCKER_LAYER: "none",
    OCI_LAYER_GZIP: "gzip", OCI_LAYER_ND_GZIP: "gzip", DOCKER_LAYER_GZIP: "gzip", DOCKER_FOREIGN_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd", OCI_LAYER_ND_ZSTD: "zstd", DOCKER_LAYER_ZSTD: "zstd",
}


def layer_compression(media_type: str) -> Compression:
    """The compression of a layer blob by its media type; InvalidArgument if it is not a layer type."""
    try:
        return _LAYERS[media_type]
    except KeyError:
        raise InvalidArgument(f"{media_type!r} is not a layer media type") from None


def is_layer(media_type: str) -> bool:
    return media_type in _LAYERS


class Descriptor(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    media_type: str
    digest: str
    size: int
    urls: list[str] = []
    annotations: dict[str, str] = {}
    platform: Platform | None = None
    artifact_type: str = ""


class Index(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    schema_version: int
    media_type: str = ""
    manifests: list[Descriptor] = []
    annotations: dict[str, str] = {}
    artifact_type: str = ""
    subject: Descriptor | None = None


class Manifest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    schema_version: int
    config: Descriptor
    media_type: str = ""
    layers: list[Descriptor] = []
    annotations: dict[str, str] = {}
    artifact_type: str = ""
    subject: Descriptor | None = None


class Healthcheck(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="pascal"):
    """Docker's healthcheck in an image config (durations in nanoseconds)."""

    test: list[str] = []
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


class ContainerConfig(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="pascal"):
    """The ``config`` section of an image config (OCI fields plus Docker's Healthcheck)."""

    user: str = ""
    exposed_ports: dict[str, dict[str, object]] | None = None
    env: list[str] | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    volumes: dict[str, dict[str, object]] | None = None
    working_dir: str = ""
    labels: dict[str, str] | None = None
    stop_signal: str = ""
    args_escaped: bool = False
    healthcheck: Healthcheck | None = None
    shell: list[str] | None = None
    on_build: list[str] | None = None


class RootFS(msgspec.Struct, frozen=True, kw_only=True, rename={"diff_ids": "diff_ids"}):
    type: str
    diff_ids: list[str] = []


class History(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False


class ImageConfig(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename={
        "os_version": "os.version", "os_features": "os.features"}):
    architecture: str
    os: str
    rootfs: RootFS
    created: str = ""
    author: str = ""
    os_version: str = ""
    os_features: list[str] = []
    variant: str = ""
    config: ContainerConfig = ContainerConfig()
    history: list[History] = []

    @property
    def platform(self) -> Platform:
        return Platform(os=self.os, architecture=self.architecture, variant=self.variant,
                        os_version=self.os_version, os_features=list(self.os_features))


def _decode(data: bytes, cls: Any, what: str) -> Any:
    try:
        return msgspec.json.decode(data, type=cls)
    except msgspec.ValidationError as err:
        raise InvalidArgument(f"invalid {what}: {err}") from None
    except msgspec.DecodeError as err:
        raise InvalidArgument(f"invalid {what}: not JSON: {err}") from None


def _check_descriptor(d: Descriptor, what: str) -> None:
    try:
        digests.validate(d.digest)
    except InvalidArgument as err:
        raise InvalidArgument(f"invalid {what}: descriptor digest: {err}") from None
    if d.size < 0:
        raise InvalidArgument(f"invalid {what}: descriptor {d.digest} has a negative size")
    if not d.media_type:
        raise InvalidArgument(f"invalid {what}: descriptor {d.digest} has no media type")


def _check_type(declared: str, expected: str, allowed: frozenset[str], what: str) -> None:
    if declared and declared not in allowed:
        raise InvalidArgument(f"invalid {what}: mediaType {declared!r} is not one of {sorted(allowed)}")
    if declared and expected and declared != expected:
        raise InvalidArgument(f"invalid {what}: mediaType {declared!r} but the descriptor says {expected!r}")


def parse_index(data: bytes, media_type: str = "") -> Index:
    idx: Index = _decode(data, Index, "image index")
    if idx.schema_version != 2:
        raise InvalidArgument(f"invalid image index: schemaVersion {idx.schema_version}, want 2")
    _check_type(idx.media_type, media_type, INDEX_TYPES, "image index")
    for d in idx.manifests:
        _check_descriptor(d, "image index")
    return idx


def parse_manifest(data: bytes, media_type: str = "") -> Manifest:
    m: Manifest = _decode(data, Manifest, "image manifest")
    if m.schema_version != 2:
        raise InvalidArgument(f"invalid image manifest: schemaVersion {m.schema_version}, want 2")
    _check_type(m.media_type, media_type, MANIFEST_TYPES, "image manifest")
    docker = DOCKER_MANIFEST in (media_type, m.media_type)
    if docker and m.config.media_type != DOCKER_CONFIG:
            raise InvalidArgument(f"invalid image manifest: docker config media type {m.config.media_type!r}")
    for d in (m.config, *m.layers):
        _check_descriptor(d, "image manifest")
    return m


def parse(data: bytes, media_type: str = "") -> Index | Manifest:
    """An index or a manifest, by the given media type, else by the document's own (or its shape)."""
    if media_type in INDEX_TYPES:
        return parse_index(data, media_type)
    if media_type in MANIFEST_TYPES:
        return parse_manifest(data, media_type)
    if media_type:
        raise InvalidArgument(f"unsupported manifest media type {media_type!r}")
    probe: dict[str, Any] = _decode(data, dict[str, Any], "image document")
    declared = probe.get("mediaType", "")
    if declared in INDEX_TYPES or (not declared and "manifests" in probe):
        return parse_index(data)
    if declared in MANIFEST_TYPES or (not declared and "config" in probe):
        return parse_manifest(data)
    raise InvalidArgument(f"unsupported image document (mediaType {declared!r})")


def parse_config(data: bytes) -> ImageConfig:
    cfg: ImageConfig = _decode(data, ImageConfig, "image config")
    for d in cfg.rootfs.diff_ids:
        try:
            digests.validate(d)
        except InvalidArgument as err:
            raise InvalidArgument(f"invalid image config: diff id: {err}") from None
    if cfg.rootfs.type != "layers":
        raise InvalidArgument(f"invalid image config: rootfs type {cfg.rootfs.type!r}, want 'layers'")
    return cfg


def choose(index: Index, want: Platform | None = None) -> Descriptor:
    """The manifest of `index` that best serves `want` (default: this host); NotFound if none does."""
    want = want or host()
    best: tuple[int, int, Descriptor] | None = None
    for pos, d in enumerate(index.manifests):
        if d.media_type not in MANIFEST_TYPES and d.media_type not in INDEX_TYPES:
            continue
        if d.platform is None:
            continue
        r = rank(want, d.platform)
        if r is not None and (best is None or (r, pos) < best[:2]):
            best = (r, pos, d)
    if best is None:
        raise NotFound(f"no match for platform {want} in manifest list")
    return best[2]


class ContainerDefaults(msgspec.Struct, frozen=True, kw_only=True):
    """What a container starts with from its image."""

    entrypoint: list[str] = []
    cmd: list[str] = []
    env: list[str] = []
    working_dir: str = ""
    user: str = ""
    exposed_ports: list[str] = []
    volumes: list[str] = []
    labels: dict[str, str] = {}
    stop_signal: str = ""
    healthcheck: Healthcheck | None = None


def _port(spec: str) -> str:
    return spec if "/" in spec else f"{spec}/tcp"


def container_defaults(cfg: ImageConfig) -> ContainerDefaults:
    c = cfg.config
    return ContainerDefaults(entrypoint=list(c.entrypoint or []), cmd=list(c.cmd or []), env=list(c.env or []),
                             working_dir=c.working_dir, user=c.user,
                             exposed_ports=sorted(_port(p) for p in (c.exposed_ports or {})),
                             volumes=sorted(c.volumes or {}), labels=dict(c.labels or {}),
                             stop_signal=c.stop_signal, healthcheck=c.healthcheck)
