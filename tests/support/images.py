"""Test images built offline from Debian's busybox-static: a one-layer busybox image as an OCI archive or a
`docker save` archive, and a way to put it into a test daemon (``ctr images import``, which unpacks).

The archives are written here in Python (the formats are small and documented: OCI image-layout and the
docker-archive manifest.json), so tests need no network and no skopeo; tests that check we read what
skopeo writes use skopeo themselves. The config carries what a Docker image has (Cmd ["sh"], a PATH Env),
so `docker run busybox` behaves as with the real image. The layer tar is built once per process.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from engine.images.reference import parse as parse_ref
from tests.support.rootfs import build_busybox_rootfs

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ENV_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@functools.cache
def _layer_bytes() -> bytes:
    """A deterministic tar of the busybox rootfs (sorted, fixed mtimes and owners)."""
    tmp = Path(tempfile.mkdtemp(prefix="bb-layer-"))
    try:
        root = tmp / "rootfs"
        build_busybox_rootfs(root)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(dirnames + filenames):
                    full = Path(dirpath) / name
                    info = tar.gettarinfo(str(full), arcname=str(full.relative_to(root)))
                    info.mtime, info.uname, info.gname = 1_700_000_000, "", ""
                    if info.isfile():
                        with open(full, "rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
        return buf.getvalue()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def busybox_layer_tar(dest_dir: str | Path) -> Path:
    """The uncompressed busybox layer, written to `dest_dir`/busybox-layer.tar."""
    p = Path(dest_dir) / "busybox-layer.tar"
    p.write_bytes(_layer_bytes())
    return p


def image_config(diff_ids: list[str], *, cmd: list[str] | None = None, entrypoint: list[str] | None = None,
                 env: list[str] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"Env": env or [ENV_PATH], "Cmd": ["sh"] if cmd is None else cmd}
    if entrypoint:
        cfg["Entrypoint"] = entrypoint
    cfg.update(extra or {})
    return {
        "architecture": _ARCH.get(os.uname().machine, os.uname().machine),
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "busybox-static from Debian (test image)"}],
    }


def _blobs(layers: list[bytes], gz: bool, config_extra: dict[str, Any] | None) -> tuple[list[tuple[str, bytes, str]], bytes, bytes]:
    """([(digest, blob, media type)] for the layers, config bytes, manifest bytes)."""
    out = []
    for raw in layers:
        blob = gzip.compress(raw, 1, mtime=0) if gz else raw
        out.append((sha256(blob), blob, OCI_LAYER_GZIP if gz else OCI_LAYER))
    config = json.dumps(image_config([sha256(raw) for raw in layers], extra=config_extra),
                        sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": mt, "digest": d, "size": len(b)} for d, b, mt in out],
    }, sort_keys=True).encode()
    return out, config, manifest


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
    tar.addfile(info, io.BytesIO(data))


def busybox_oci_archive(dest_dir: str | Path, ref: str = "busybox:latest", *, gz: bool = False,
                        config_extra: dict[str, Any] | None = None) -> Path:
    """An OCI image-layout tar whose index names the image (``io.containerd.image.name`` = the full
    normalised reference, ``org.opencontainers.image.ref.name`` = the tag), as ``ctr images export`` writes."""
    full = parse_ref(ref)
    layers, config, manifest = _blobs([_layer_bytes()], gz, config_extra)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest),
        "annotations": {"io.containerd.image.name": str(full), "org.opencontainers.image.ref.name": full.tag},
    }]}).encode()
    path = Path(dest_dir) / f"{full.path.replace('/', '_')}-{full.tag or 'digest'}-oci.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tar, "index.json", index)
        for digest, blob in [(d, b) for d, b, _ in layers] + [(sha256(config), config), (sha256(manifest), manifest)]:
            _add(tar, f"blobs/sha256/{digest.split(':')[1]}", blob)
    return path


def busybox_docker_archive(dest_dir: str | Path, ref: str = "busybox:latest", *,
                           config_extra: dict[str, Any] | None = None) -> Path:
    """A `docker save`-style tar (manifest.json, repositories, <id>.json, <layer>/layer.tar)."""
    full = parse_ref(ref)
    layers, config, _ = _blobs([_layer_bytes()], False, config_extra)
    cid = sha256(config).split(":")[1]
    layer_dirs = [d.split(":")[1] for d, _, _ in layers]
    repo, tag = full.familiar().rsplit(":", 1) if full.tag else (full.familiar(), "latest")
    manifest = json.dumps([{"Config": f"{cid}.json", "RepoTags": [f"{repo}:{tag}"],
                            "Layers": [f"{h}/layer.tar" for h in layer_dirs]}]).encode()
    path = Path(dest_dir) / f"{full.path.replace('/', '_')}-{full.tag or 'digest'}-docker.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "manifest.json", manifest)
        _add(tar, "repositories", json.dumps({repo: {tag: layer_dirs[-1]}}).encode())
        _add(tar, f"{cid}.json", config)
        for h, (_, blob, _) in zip(layer_dirs, layers, strict=True):
            _add(tar, f"{h}/layer.tar", blob)
    return path


def image_id(config_extra: dict[str, Any] | None = None) -> str:
    """The Docker image ID (config digest) the busybox archives above carry."""
    return sha256(_blobs([_layer_bytes()], False, config_extra)[1])


def ctr_import(daemon: Any, archive: str | Path, namespace: str = "moby") -> None:
    """Import (and unpack into overlayfs) an archive into a running test daemon (tests.harness.EngineDaemon)."""
    daemon.ctr("-n", namespace, "images", "import", str(archive))


def import_busybox(daemon: Any, ref: str = "busybox:latest", namespace: str = "moby") -> str:
    """Build the busybox OCI archive, import it into `daemon` as `ref` (normalised); returns the image ID."""
    tmp = Path(tempfile.mkdtemp(prefix="bb-img-"))
    try:
        ctr_import(daemon, busybox_oci_archive(tmp, ref), namespace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return image_id()
