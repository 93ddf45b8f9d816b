"""containerd.services.diff.v1.Diff over the content service and the layer code (unpack.py, diff.py).

Apply (containerd's fs applier): the layer blob is read from the content store by the descriptor's digest
in the request's namespace and applied with ``unpack.apply_layer`` onto the given mounts, in a worker
thread. apply_layer writes straight into the directory the mounts name (a bind's source, an overlay's
upper dir, consulting its lower dirs for whiteouts), so nothing is mounted. Before a byte is written
the media type is checked against the blob's first bytes: OCI ``...layer.v1.tar`` must be a plain tar,
``+gzip`` / Docker ``...diff.tar.gzip`` gzip, ``+zstd`` zstd (INVALID_ARGUMENT otherwise); Docker's
``...rootfs.diff.tar`` may be any of them (containerd detects its compression too). A media type we do
not apply (encrypted layers and anything else) is UNIMPLEMENTED, containerd's answer. Payloads are for
stream processors, which we do not have; they are ignored. The answer is the applied, uncompressed
layer: media type ``application/vnd.oci.image.layer.v1.tar``, digest = diff id, size in bytes.

Diff (containerd's walking differ): ``images.diff.diff_mounts(left, right)`` writes the layer that turns
`left` into `right` (OCI media types only: plain, ``+gzip`` — the default —, ``+zstd``) into a content
ingest under ``ref`` (a unique one when empty) and commits it with the request's labels plus
``containerd.io/uncompressed`` = the diff id. The diff runs in a thread; its output is buffered to 1 MiB
and each chunk handed to the async content writer on the event loop. An OSError from mounting or
walking (a client's mounts that do not exist, say) is UNKNOWN with its message, as containerd answers it. Content that already exists is
not an error (the answer describes it). The ingest is protected by the request's lease
(``containerd-lease``) and aborted when the diff fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
import time
from typing import Any

from engine.api.containerd import context
from engine.api.containerd.content import LEASE_KEY
from engine.api.containerd.gen.containerd.services.diff.v1 import diff_pb2 as pb
from engine.api.containerd.gen.containerd.services.diff.v1.diff_grpc import DiffBase
from engine.api.containerd.gen.containerd.types import descriptor_pb2
from engine.api.containerd.registry import implements
from engine.api.containerd.snapshots import mount_from_pb
from engine.errors import AlreadyExists, EngineError, InvalidArgument, Unavailable, Unimplemented
from engine.images.diff import diff_mounts
from engine.images.unpack import GZIP_MAGIC, ZSTD_MAGIC, apply_layer

LAYER = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = LAYER + "+gzip"
LAYER_ZSTD = LAYER + "+zstd"
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"
CHUNK = 1 << 20

# media type -> the compression its blob must have (None: any, detected from the bytes)
APPLY_MEDIA_TYPES: dict[str, str | None] = {
    LAYER: "none",
    LAYER_GZIP: "gzip",
    LAYER_ZSTD: "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar": None,
    "application/vnd.docker.image.rootfs.foreign.diff.tar": None,
}
DIFF_MEDIA_TYPES = {LAYER: "none", LAYER_GZIP: "gzip", LAYER_ZSTD: "zstd"}


def compression_of(head: bytes) -> str:
    """The compression a blob's first bytes show: gzip, zstd or none."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


class _BlobStream(io.RawIOBase):
    """A ReaderAt read front to back (what apply_layer wants)."""

    def __init__(self, reader: Any) -> None:
        self.reader, self.offset = reader, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.reader.size - self.offset)
        if n <= 0:
            return 0
        data = self.reader.read_at(n, self.offset)
        b[:len(data)] = data
        self.offset += len(data)
        return len(data)


class _LoopWriter(io.RawIOBase):
    """A blocking file for the diff thread that hands 1 MiB chunks to an async content writer on `loop`."""

    def __init__(self, writer: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.writer, self.loop, self.buf = writer, loop, bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.buf += b
        if len(self.buf) >= CHUNK:
            self.flush_chunk()
        return len(b)

    def flush_chunk(self) -> None:
        if self.buf:
            data, self.buf = bytes(self.buf), bytearray()
            asyncio.run_coroutine_threadsafe(self.writer.write(data), self.loop).result()


def _descriptor(media_type: str, digest: str, size: int) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(media_type=media_type, digest=digest, size=size)


def _lease(stream: Any) -> str:
    value = (stream.metadata or {}).get(LEASE_KEY)
    if isinstance(value, list):
        value = value[-1] if value else None
    return str(value) if value else ""


def _ns(stream: Any) -> str:
    ns = context.namespace(stream)
    assert ns is not None
    return ns


@implements(DiffBase)
class DiffServicer(DiffBase):
    def __init__(self, services: Any) -> None:
        svc = getattr(services, "content", None)
        self._content = svc if svc is not None else getattr(services, "extra", {}).get("content")

    @property
    def content(self) -> Any:
        if self._content is None:
            raise Unavailable("the content service is not running in this daemon")
        return self._content

    async def Apply(self, stream: Any) -> None:
        req: pb.ApplyRequest = await stream.recv_message()
        ns = _ns(stream)
        desc = req.diff
        if not desc.digest:
            raise InvalidArgument("apply: the diff descriptor has no digest")
        if desc.media_type not in APPLY_MEDIA_TYPES:
            raise Unimplemented(f"apply: unsupported diff media type {desc.media_type!r}")
        mounts = [mount_from_pb(m) for m in req.mounts]
        reader = await self.content.reader_at(ns, desc.digest)
        try:
            if desc.size and desc.size != reader.size:
                raise InvalidArgument(f"apply: {desc.digest} has {reader.size} bytes, the descriptor says "
                                      f"{desc.size}")
            want = APPLY_MEDIA_TYPES[desc.media_type]
            found = compression_of(reader.read_at(4, 0))
            if want is not None and found != want:
                raise InvalidArgument(f"apply: {desc.digest} is compressed with {found}, its media type "
                                      f"{desc.media_type} says {want}")
        except BaseException:
            reader.close()
            raise
        # the thread owns the reader from here: a cancelled call must not close it under a running apply
        res = await asyncio.to_thread(self._apply, reader, mounts, req.sync_fs)
        await stream.send_message(pb.ApplyResponse(applied=_descriptor(LAYER, res.diff_id, res.size)))

    @staticmethod
    def _apply(reader: Any, mounts: list[Any], sync_fs: bool) -> Any:
        try:
            with reader:
                res = apply_layer(io.BufferedReader(_BlobStream(reader), CHUNK), mounts)  # type: ignore[arg-type]
        except OSError as err:
            raise EngineError(f"apply: {err}") from err
        if sync_fs:
            os.sync()
        return res

    async def Diff(self, stream: Any) -> None:
        req: pb.DiffRequest = await stream.recv_message()
        ns, actor = _ns(stream), context.actor(stream)
        media_type = req.media_type or LAYER_GZIP
        compression = DIFF_MEDIA_TYPES.get(media_type)
        if compression is None:
            raise Unimplemented(f"diff: unsupported diff media type {media_type!r}")
        if not req.right:
            raise InvalidArgument("diff: no mounts for the upper (right) snapshot")
        left = [mount_from_pb(m) for m in req.left]
        right = [mount_from_pb(m) for m in req.right]
        ref = req.ref or f"diff-{time.time_ns()}-{secrets.token_hex(4)}"
        w = await self.content.writer(ns, ref, lease=_lease(stream), actor=actor)
        committed = False
        try:
            out = _LoopWriter(w, asyncio.get_running_loop())

            def run() -> Any:
                try:
                    r = diff_mounts(left, right, out, compression=compression)  # type: ignore[arg-type]
                except OSError as err:
                    raise EngineError(f"diff: {err}") from err
                out.flush_chunk()
                return r

            res = await asyncio.to_thread(run)
            labels = {**dict(req.labels), UNCOMPRESSED_LABEL: res.diff_id}
            with contextlib.suppress(AlreadyExists):
                await w.commit(res.compressed_size, res.digest, labels)
            committed = True
        finally:
            await w.close()
            if not committed:
                await asyncio.shield(self._abort(ns, ref, actor))
        info = await self.content.info(ns, res.digest)
        await stream.send_message(pb.DiffResponse(diff=_descriptor(media_type, info.digest, info.size)))

    async def _abort(self, ns: str, ref: str, actor: str) -> None:
        with contextlib.suppress(Exception):  # the diff's own error is the one to report
            await self.content.abort(ns, ref, actor=actor)
