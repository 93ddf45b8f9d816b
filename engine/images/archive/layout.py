"""Reading image archives from an extracted directory: ``docker save`` tars and OCI image layouts.

Both end in one shape, ``Archive``: the blobs to ingest (by digest: a file of the archive, or a document
we wrote ourselves) with the containerd gc labels each needs, and the images (target descriptor + names).

* **OCI layout** (``oci-layout`` + ``index.json`` + ``blobs/<alg>/<hex>``; Docker ≥ 25 writes it next to
  manifest.json in every save): each ``index.json`` entry is an image whose target is that descriptor;
  its names come from the ``io.containerd.image.name`` annotation, else from
  ``org.opencontainers.image.ref.name`` when that is a whole reference, else from manifest.json's
  RepoTags for the same config. An index's children that are not in the archive are skipped (a save of
  one platform of a multi-platform image), but at least one manifest must be.
* **docker-archive** (manifest.json + ``<id>.json`` + layer tars, as older Docker and skopeo write it):
  each entry becomes a Docker schema2 manifest that we write (config media type Docker's, layer media
  type from the layer's magic bytes), so the image ID — the config digest — is the archive's.
  An uncompressed layer's digest must equal the config's diff ID for it; compressed layers are checked
  by the unpack, which hashes what it decompresses.

Blob digests of OCI layouts are verified when the content store commits them (expected digest), so a
blob whose bytes do not match its name never enters the store.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InvalidArgument
from engine.images import formats, reference
from engine.images.content import digests

LABEL_GC = "containerd.io/gc.ref.content."
ANN_NAME = "io.containerd.image.name"
ANN_REF = "org.opencontainers.image.ref.name"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass
class Blob:
    digest: str
    size: int
    media_type: str
    path: Path | None = None  # a file of the archive, or
    data: bytes | None = None  # a document written here (docker-archive manifests)
    labels: dict[str, str] = field(default_factory=dict)  # gc labels to what it references


@dataclass
class ArchiveImage:
    target: formats.Descriptor
    names: list[str]  # full normalised references ("docker.io/library/busybox:latest")
    config_digest: str = ""


@dataclass
class Archive:
    blobs: dict[str, Blob] = field(default_factory=dict)  # in ingest order: children before parents
    images: list[ArchiveImage] = field(default_factory=list)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head == ZSTD_MAGIC:
        return "zstd"
    return "none"


def _file(root: Path, rel: str, what: str) -> Path:
    p = (root / rel).resolve()
    try:
        p.relative_to(root.resolve())
    except ValueError:
        raise InvalidArgument(f"invalid archive: {what} {rel!r} is outside the archive") from None
    if not p.is_file():
        raise InvalidArgument(f"invalid archive: {what} {rel!r} is missing")
    return p


def _name(value: str) -> str | None:
    try:
        return str(reference.parse(value))
    except InvalidArgument:
        return None


def read(root: Path, known: dict[str, str] | None = None) -> Archive:
    """Read the archive extracted at `root` (OCI layout preferred when both are present); `known` gives
    digests already computed (``tarstream.extract``'s), by path relative to `root`."""
    if (root / "index.json").is_file():
        return read_oci(root)
    if (root / "manifest.json").is_file():
        return read_docker(root, known or {})
    raise InvalidArgument("invalid archive: neither manifest.json nor index.json found")


def _repo_tags(root: Path) -> dict[str, list[str]]:
    """manifest.json's RepoTags by config digest (names for OCI entries without annotations)."""
    try:
        entries = json.loads((root / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return {}
    out: dict[str, list[str]] = {}
    for e in entries if isinstance(entries, list) else []:
        cfg = str(e.get("Config") or "")
        hexpart = Path(cfg).name.removesuffix(".json")
        names = [n for t in e.get("RepoTags") or [] if (n := _name(str(t)))]
        out.setdefault("sha256:" + hexpart, []).extend(names)
    return out


def read_oci(root: Path) -> Archive:
    try:
        index = formats.parse_index((root / "index.json").read_bytes())
    except OSError as err:
        raise InvalidArgument(f"invalid archive: index.json: {err}") from err
    arc = Archive()
    tags = _repo_tags(root) if (root / "manifest.json").is_file() else {}

    def blob_path(d: formats.Descriptor) -> Path:
        alg, hexpart = digests.parse(d.digest)
        return _file(root, f"blobs/{alg}/{hexpart}", f"blob {d.digest} ({d.media_type})")

    def add(d: formats.Descriptor, path: Path, labels: dict[str, str] | None = None) -> None:
        if d.digest not in arc.blobs:
            arc.blobs[d.digest] = Blob(d.digest, d.size, d.media_type, path=path, labels=labels or {})

    def walk(d: formats.Descriptor, depth: int = 0) -> str:
        """Add `d` and what it references; the config digest of the first manifest reached."""
        if depth > 4:
            raise InvalidArgument("invalid archive: indexes nested too deep")
        path = blob_path(d)
        if path.stat().st_size != d.size:
            raise InvalidArgument(f"invalid archive: blob {d.digest} is {path.stat().st_size} bytes, "
                                  f"its descriptor says {d.size}")
        doc = formats.parse(path.read_bytes(), d.media_type)
        if isinstance(doc, formats.Manifest):
            for child in (doc.config, *doc.layers):
                add(child, blob_path(child))
            labels = {LABEL_GC + "config": doc.config.digest}
            labels.update({f"{LABEL_GC}l.{i}": x.digest for i, x in enumerate(doc.layers)})
            add(d, path, labels)
            return doc.config.digest
        first = ""
        present = []
        for child in doc.manifests:
            alg, hexpart = digests.parse(child.digest)
            if not (root / "blobs" / alg / hexpart).is_file():
                continue
            present.append(child)
            cfg = walk(child, depth + 1)
            first = first or cfg
        if not present:
            raise InvalidArgument(f"invalid archive: index {d.digest} has none of its manifests in the archive")
        add(d, path, {f"{LABEL_GC}m.{i}": m.digest for i, m in enumerate(doc.manifests)})
        return first

    by_target: dict[str, ArchiveImage] = {}
    for d in index.manifests:
        cfg = walk(d)
        ann = d.annotations
        name = _name(ann[ANN_NAME]) if ANN_NAME in ann else None
        if name is None and ANN_REF in ann and ("/" in ann[ANN_REF] or ":" in ann[ANN_REF]):
            name = _name(ann[ANN_REF])
        img = by_target.get(d.digest)
        if img is None:
            target = formats.Descriptor(media_type=d.media_type, digest=d.digest, size=d.size)
            img = by_target[d.digest] = ArchiveImage(target, [], cfg)
            arc.images.append(img)
        if name and name not in img.names:
            img.names.append(name)
    for img in arc.images:
        if not img.names:
            img.names = list(dict.fromkeys(tags.get(img.config_digest, [])))
    return arc


def _layer_type(path: Path) -> str:
    return {"gzip": formats.DOCKER_LAYER_GZIP, "zstd": formats.DOCKER_LAYER_ZSTD}.get(sniff(path),
                                                                                     formats.DOCKER_LAYER)


def read_docker(root: Path, known: dict[str, str] | None = None) -> Archive:
    try:
        entries = json.loads((root / "manifest.json").read_bytes())
    except ValueError as err:
        raise InvalidArgument(f"invalid archive: manifest.json: {err}") from err
    if not isinstance(entries, list):
        raise InvalidArgument("invalid archive: manifest.json is not a list")
    arc = Archive()
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("Config"), str) or not isinstance(e.get("Layers"), list):
            raise InvalidArgument("invalid archive: manifest.json entry without Config and Layers")
        cpath = _file(root, e["Config"], "config")
        raw = cpath.read_bytes()
        cfg = formats.parse_config(raw)
        cdigest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if len(cfg.rootfs.diff_ids) != len(e["Layers"]):
            raise InvalidArgument(f"invalid archive: {len(e['Layers'])} layers for {len(cfg.rootfs.diff_ids)} "
                                  f"diff ids in config {cdigest}")
        layers: list[dict[str, object]] = []
        for rel, diff_id in zip(e["Layers"], cfg.rootfs.diff_ids, strict=True):
            lpath = _file(root, str(rel), "layer")
            mt = _layer_type(lpath)
            rel_norm = str(lpath.relative_to(root.resolve()))
            dgst = (known or {}).get(rel_norm) or sha256_file(lpath)
            if mt == formats.DOCKER_LAYER and dgst != diff_id:
                raise InvalidArgument(f"invalid archive: layer {rel} has digest {dgst}, the config's diff id "
                                      f"is {diff_id}")
            size = lpath.stat().st_size
            arc.blobs.setdefault(dgst, Blob(dgst, size, mt, path=lpath))
            layers.append({"mediaType": mt, "size": size, "digest": dgst})
        arc.blobs.setdefault(cdigest, Blob(cdigest, len(raw), formats.DOCKER_CONFIG, path=cpath))
        manifest = json.dumps({"schemaVersion": 2, "mediaType": formats.DOCKER_MANIFEST,
                               "config": {"mediaType": formats.DOCKER_CONFIG, "size": len(raw), "digest": cdigest},
                               "layers": layers}, indent=3).encode()
        mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        labels = {LABEL_GC + "config": cdigest}
        labels.update({f"{LABEL_GC}l.{i}": str(x["digest"]) for i, x in enumerate(layers)})
        arc.blobs.setdefault(mdigest, Blob(mdigest, len(manifest), formats.DOCKER_MANIFEST, data=manifest,
                                           labels=labels))
        names = [n for t in e.get("RepoTags") or [] if (n := _name(str(t)))]
        target = formats.Descriptor(media_type=formats.DOCKER_MANIFEST, digest=mdigest, size=len(manifest))
        arc.images.append(ArchiveImage(target, list(dict.fromkeys(names)), cdigest))
    return arc
