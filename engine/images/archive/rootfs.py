"""``docker import``: a rootfs tarball (plain, gzip or zstd) → one layer blob, an image config, a manifest.

The tarball is kept as it came (its compression decides the layer media type), after checking it is a
tar: it is decompressed once (engine/images/unpack.py's ``open_decompressed``: magic bytes, ISA-L gzip,
zstandard), every member header read, and the uncompressed bytes hashed into the diff ID. The config
gets ``--change`` instructions (``changes.py``), the platform asked for (default the host's), the
creation time and one history entry whose comment is the message (Docker's default ``Imported from -``).
The manifest is OCI, as dockerd's containerd image store writes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from engine.errors import InvalidArgument
from engine.images import formats
from engine.images.archive.changes import apply_changes
from engine.images.platforms import Platform
from engine.images.unpack import open_decompressed

_MEDIA = {"none": formats.OCI_LAYER, "gzip": formats.OCI_LAYER_GZIP, "zstd": formats.OCI_LAYER_ZSTD}


@dataclass
class Layer:
    digest: str  # of the blob as stored
    size: int
    diff_id: str  # of the uncompressed tar
    media_type: str


class _Hashing:
    def __init__(self, inner: BinaryIO) -> None:
        self.inner, self.h = inner, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        b = self.inner.read(n)
        self.h.update(b)
        return b


def write_layer(stream: BinaryIO, path: Path) -> Layer:
    """Copy `stream` to `path` and check it is a tar; the layer's digests and media type."""
    h = hashlib.sha256()
    size = 0
    with open(path, "wb") as out:
        while chunk := stream.read(1 << 20):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
    if size == 0:
        raise InvalidArgument("the rootfs archive is empty")
    with open(path, "rb") as raw:
        plain, compression = open_decompressed(raw)
        hashing = _Hashing(plain)  # type: ignore[arg-type]
        try:
            with tarfile.open(fileobj=hashing, mode="r|") as tar:  # type: ignore[call-overload]
                for _ in tar:
                    pass
            while hashing.read(1 << 20):
                pass
        except (tarfile.TarError, EOFError, OSError, ValueError) as err:
            raise InvalidArgument(f"the rootfs archive is not a valid tar: {err or 'unexpected EOF'}") from err
        finally:
            close = getattr(plain, "close", None)
            if close:
                close()
    return Layer("sha256:" + h.hexdigest(), size, "sha256:" + hashing.h.hexdigest(), _MEDIA[compression])


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build(layer: Layer, *, changes: list[str], message: str, platform: Platform,
          created: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """(config bytes, manifest bytes) of the imported image."""
    created_s = rfc3339(created or dt.datetime.now(dt.UTC))
    cfg: dict[str, Any] = apply_changes({}, changes)
    config: dict[str, Any] = {"architecture": platform.architecture, "os": platform.os}
    if platform.variant:
        config["variant"] = platform.variant
    config.update({"config": cfg, "created": created_s,
                   "history": [{"created": created_s, "comment": message or "Imported from -"}],
                   "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}})
    raw = json.dumps(config, separators=(",", ":")).encode()
    formats.parse_config(raw)  # what we write must be what we read
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": formats.OCI_MANIFEST,
        "config": {"mediaType": formats.OCI_CONFIG, "digest": "sha256:" + hashlib.sha256(raw).hexdigest(),
                   "size": len(raw)},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}],
    }, separators=(",", ":")).encode()
    return raw, manifest


def copy_file(src: BinaryIO, dst: Path) -> None:
    with open(dst, "wb") as f:
        shutil.copyfileobj(src, f, 1 << 20)
