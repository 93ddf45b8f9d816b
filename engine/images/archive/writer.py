"""The tar ``docker save`` writes since Docker 25: both formats in one archive, every blob stored once.

* OCI layout: ``oci-layout``, ``index.json`` (one entry per image name, annotated with
  ``io.containerd.image.name`` = the full reference and ``org.opencontainers.image.ref.name`` = its tag, as
  containerd's exporter does; an untagged image gets one entry without names) and ``blobs/sha256/<hex>``.
* docker-archive: ``manifest.json`` (``Config`` and ``Layers`` are paths into ``blobs/sha256``, RepoTags in
  Docker's familiar form) and ``repositories`` (repo → tag → top layer).

So the same tar loads with ``docker load`` (either format), ``skopeo copy docker-archive:`` and
``skopeo copy oci-archive:``. An image record's whole target is exported (an index with all of its
manifests that are present); manifest.json names the manifest chosen for the host platform.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.images import formats, reference
from engine.images.archive.tarstream import Entry, bytes_entry, file_entry, tar_stream
from engine.images.content import digests

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


@dataclass
class SaveImage:
    target: formats.Descriptor  # the record's target (index or manifest)
    manifest: formats.Manifest  # the host platform's manifest
    blobs: list[str]  # every digest of the target's tree that is present (target included)
    names: list[str] = field(default_factory=list)  # full references ("docker.io/library/busybox:latest")


def blob_name(digest: str) -> str:
    alg, hexpart = digests.parse(digest)
    return f"blobs/{alg}/{hexpart}"


def documents(images: list[SaveImage]) -> dict[str, bytes]:
    """index.json, manifest.json, repositories and oci-layout of an archive of `images`."""
    index: list[dict[str, object]] = []
    manifest: list[dict[str, object]] = []
    repos: dict[str, dict[str, str]] = {}
    for img in images:
        desc = {"mediaType": img.target.media_type, "digest": img.target.digest, "size": img.target.size}
        tags: list[str] = []
        for name in img.names:
            ref = reference.parse(name, default_tag="")
            ann = {"io.containerd.image.name": str(ref)}
            if ref.tag:
                ann["org.opencontainers.image.ref.name"] = ref.tag
                tags.append(ref.familiar())
                top = img.manifest.layers[-1].digest.split(":", 1)[1] if img.manifest.layers else ""
                repos.setdefault(reference.familiar_repository(ref.repository), {})[ref.tag] = top
            index.append({**desc, "annotations": ann})
        if not img.names:
            index.append(desc)
        manifest.append({"Config": blob_name(img.manifest.config.digest), "RepoTags": tags or None,
                         "Layers": [blob_name(d.digest) for d in img.manifest.layers
                                    if formats.is_layer(d.media_type)]})
    return {
        "index.json": json.dumps({"schemaVersion": 2, "mediaType": formats.OCI_INDEX, "manifests": index}).encode(),
        "manifest.json": json.dumps(manifest).encode(),
        "oci-layout": OCI_LAYOUT,
        "repositories": json.dumps(repos).encode(),
    }


def save_stream(images: list[SaveImage], blob_path: Callable[[str], Path]) -> Iterator[bytes]:
    """The archive's bytes, in chunks; `blob_path(digest)` is where each blob is on disk."""
    seen: dict[str, None] = {}
    for img in images:
        for d in img.blobs:
            seen.setdefault(d, None)
    entries: list[Entry] = [Entry("blobs"), Entry("blobs/sha256")]
    entries += [file_entry(blob_name(d), blob_path(d)) for d in seen]
    entries += [bytes_entry(name, data) for name, data in documents(images).items()]
    return tar_stream(entries)


def write_dir(images: list[SaveImage], blob_path: Callable[[str], Path], dest: Path) -> None:
    """The same archive as a directory (an OCI image layout that also holds manifest.json)."""
    import shutil

    (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    for img in images:
        for d in img.blobs:
            out = dest / blob_name(d)
            if not out.exists():
                shutil.copyfile(blob_path(d), out)
    for name, data in documents(images).items():
        (dest / name).write_bytes(data)
