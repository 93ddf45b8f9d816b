"""Pulling images from a registry into the content store, then the image record and its snapshots.

``PullService.pull`` resolves a reference on its registry (engine/images/registry), fetches the index (if
any), the manifest for the wanted platform (the host's by default), the config and the layers into the
namespace's content store, creates or updates the image record (name = the full reference, or
``repo@sha256:…`` for a pull by digest; target = what the reference resolved to), unpacks it
(engine/services/image_unpack.py) and journals ``image.pulled``. ``push`` lives in engine/services/push.py.

Design choices:

* **Lease.** Everything fetched is protected by a lease (``containerd.io/gc.expire`` a day ahead, as
  containerd's pull lease) that is deleted at the end; a crash leaves the lease to protect the ingests
  until then, and no image record exists before every blob is committed, so a crash never leaves a record
  that points at missing content.
* **Resume.** A blob is ingested under the ref ``pull-<digest>``; a later pull (after an interrupted one or a
  daemon crash) opens the same ingest and asks the registry for the rest with ``Range``. A connection that
  breaks mid-blob is resumed the same way, up to ``RETRIES`` times.
* **Verification.** The content writer checks size and digest before the rename; a mismatch aborts the
  ingest, so nothing half-stored stays behind, and the pull fails with the digests named.
* **Single flight.** Concurrent pulls that need the same blob in one namespace share one download (a
  future per (namespace, digest)); the others wait, then add the blob to their own lease.
* **Unpack while downloading.** Each layer is extracted (engine/images/unpacker.py ``unpack_layers``) as
  soon as its own blob is committed, in parallel with the other layers' downloads and extractions, and
  becomes its snapshot once the layers below it have; the final ``image_unpack.unpack`` then only checks
  the chain and writes the gc labels. Up to ``DOWNLOADS`` layers download at once; the config does not
  take one of those slots. bench/pull.py measures the result against containerd.
* **GC labels** as containerd writes them: ``containerd.io/gc.ref.content.m.<i>`` on an index,
  ``…config`` and ``…l.<i>`` on a manifest; and ``containerd.io/distribution.source.<host>=<repo>`` on every
  blob, which push uses for cross-repository mounts.
* **Progress** goes to a callback as Docker's JSON-stream messages (``Pulling fs layer`` … ``Status:``);
  it is not journaled. ``ENGINE_FAULT_PULL=<point>`` (``layer:partial``, ``layer:staged``,
  ``layers:done``) SIGKILLs the daemon there, for the crash tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from engine.errors import AlreadyExists, DataLoss, EngineError, FailedPrecondition, NotFound, Unavailable
from engine.events.projection import Projection
from engine.events.types import Envelope, Event
from engine.images import formats, reference
from engine.images.platforms import Platform
from engine.images.registry import Credentials, HttpClient, Registry, Repository, from_docker_config
from engine.images.unpacker import Layer, unpack_layers
from engine.services import image_unpack
from engine.services.content import backend_ref
from engine.services.images import Descriptor as ImageDescriptor
from engine.services.images import Image
from engine.services.leases import LABEL_EXPIRE, Resource

if TYPE_CHECKING:
    from engine.images.registry.http import Response
    from engine.services import Services

log = logging.getLogger(__name__)

FAULT_ENV = "ENGINE_FAULT_PULL"
_FAULT = os.environ.get(FAULT_ENV, "")
DOWNLOADS = 3  # concurrent layer downloads per pull, as dockerd's default
RETRIES = 3
WRITE_SIZE = 1 << 20
FLUSH_EVERY = int(os.environ.get("ENGINE_PULL_FLUSH_MB", "16")) << 20  # 0: leave write-back to the commit
LEASE_TTL = dt.timedelta(hours=24)
LABEL_SOURCE = "containerd.io/distribution.source."
LABEL_GC_CONTENT = "containerd.io/gc.ref.content."
SNAPSHOTTER = "overlayfs"

Progress = Callable[[dict[str, Any]], None]


class ImagePulled(Event, frozen=True):
    TYPE: ClassVar[str] = "image.pulled"
    SUBJECT: ClassVar[str] = "name"
    name: str
    digest: str  # the record's target: the index or manifest the reference resolved to
    registry: str
    size: int = 0  # compressed size of the platform's layers
    config: str = ""  # the Docker image ID


class ImagePushed(Event, frozen=True):
    TYPE: ClassVar[str] = "image.pushed"
    SUBJECT: ClassVar[str] = "name"
    name: str
    digest: str
    registry: str
    size: int = 0


def _apply(env: Envelope, tx: sqlite3.Cursor) -> None:
    """Pulls and pushes are history only: the image record and content events carry the state."""


# no tables: registered so every process that reads the journal (replay, verify) knows these types
PROJECTION = Projection(name="registry", tables=(), events=(ImagePulled, ImagePushed), apply=_apply)


def fault(point: str) -> None:
    if _FAULT and point == _FAULT:
        os.kill(os.getpid(), signal.SIGKILL)


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def human(n: float) -> str:
    """go-units' HumanSizeWithPrecision(n, 4): decimal units, 4 significant digits."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.4g}{units[i]}"


def progress_bar(current: int, total: int) -> str:
    width = 50
    if total <= 0:
        return human(current)
    n = min(int(width * current / total), width)
    bar = "=" * n + (">" if n < width else "") + " " * max(width - n - 1, 0)
    return f"[{bar}] {human(current):>8}/{human(total)}"


def message(status: str, id_: str = "", current: int | None = None, total: int | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"status": status}
    if id_ or current is not None:
        detail: dict[str, int] = {}
        if current is not None:
            detail["current"] = current
            if total:
                detail["total"] = total
        msg["progressDetail"] = detail
    if current is not None and total:
        msg["progress"] = progress_bar(current, total)
    if id_:
        msg["id"] = id_
    return msg


def manifest_not_found(ref: reference.Reference, err: Exception) -> NotFound:
    text = str(err).split(": ", 1)[-1]
    return NotFound(f"manifest for {ref.familiar()} not found: {text}")


def image_name(ref: reference.Reference) -> str:
    """The record name: ``repo:tag``, or ``repo@digest`` for a pull by digest."""
    return str(ref)


class PullService:
    """Pull (and, with engine/services/push.py, push) images between registries and a namespace."""

    def __init__(self, services: Services, http: HttpClient | None = None) -> None:
        self.services = services
        self.http = http or HttpClient()
        self.http.local_only = bool(getattr(services.config, "offline", False))
        self._inflight: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._doc_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.last_timings: dict[str, float] = {}

    def registry(self, domain: str, auth: Credentials | None = None) -> Registry:
        creds = auth or from_docker_config(domain)
        return Registry(domain, self.http, creds, insecure=list(self.services.config.insecure_registries))

    async def login(self, domain: str, auth: Credentials) -> None:
        await self.registry(domain, auth).login()

    async def close(self) -> None:
        await self.http.close()

    # ---- pull --------------------------------------------------------------------------------

    async def pull(self, namespace: str, ref: str | reference.Reference, *, platform: Platform | None = None,
                   auth: Credentials | None = None, progress: Progress | None = None, actor: str) -> Image:
        r = reference.parse(ref) if isinstance(ref, str) else ref
        emit = progress or (lambda _m: None)
        services = self.services
        assert services.leases is not None and services.images is not None
        repo = self.registry(r.domain, auth).repository(r.path)
        t0 = time.monotonic()
        try:
            root = await repo.get_manifest(r.digest or r.tag)
        except NotFound as err:
            raise manifest_not_found(r, err) from err
        emit(message(f"Pulling from {r.path}", r.digest or r.tag))  # after the resolve: errors before it are plain
        name = image_name(r)
        lease_id = f"pull-{uuid.uuid4().hex[:16]}"
        expire = (dt.datetime.now(dt.UTC) + LEASE_TTL).strftime("%Y-%m-%dT%H:%M:%SZ")
        await services.leases.create(namespace, lease_id, {LABEL_EXPIRE: expire}, actor=actor)
        try:
            source = {LABEL_SOURCE + r.domain: r.path}
            docs: list[tuple[formats.Descriptor, bytes, formats.Index | formats.Manifest]] = []
            desc, data = root.descriptor, root.data
            for _ in range(4):
                doc = formats.parse(data, desc.media_type)
                docs.append((desc, data, doc))
                if isinstance(doc, formats.Manifest):
                    break
                child = formats.choose(doc, platform)
                m = await repo.get_manifest(child.digest)
                desc, data = formats.Descriptor(media_type=child.media_type, digest=m.digest, size=len(m.data)), m.data
            manifest = docs[-1][2]
            if not isinstance(manifest, formats.Manifest):
                raise FailedPrecondition(f"{r.familiar()}: indexes nested too deep")
            sem = asyncio.Semaphore(DOWNLOADS)
            layers = [d for d in manifest.layers if formats.is_layer(d.media_type)]
            loop = asyncio.get_running_loop()
            done: list[asyncio.Future[bool]] = [loop.create_future() for _ in layers]
            config_done: asyncio.Future[bool] = loop.create_future()
            busy = [0.0]

            async def one(d: formats.Descriptor, show: bool, fut: asyncio.Future[bool]) -> None:
                try:
                    async with sem if show else contextlib.nullcontext():  # the config is small: no slot for it
                        got = await self._fetch(namespace, repo, d, lease_id, emit if show else None, source, actor)
                except asyncio.CancelledError:
                    fut.cancel()
                    raise
                except Exception as err:
                    fut.set_exception(err)
                    fut.exception()  # retrieved here; the gather raises it
                    raise
                fut.set_result(got)

            for d in layers:
                emit(message("Pulling fs layer", short(d.digest)))
            await _gather([one(manifest.config, False, config_done),
                           *[one(d, True, f) for d, f in zip(layers, done, strict=True)],
                           self._unpack_as_fetched(namespace, manifest, layers, done, config_done, emit, busy,
                                                   actor)])
            t_fetch = time.monotonic()
            fault("layers:done")
            # parents after children, each with the gc labels to what it references
            for desc, data, doc in reversed(docs):
                labels = dict(source)
                if isinstance(doc, formats.Index):
                    labels.update({f"{LABEL_GC_CONTENT}m.{i}": m.digest for i, m in enumerate(doc.manifests)})
                else:
                    labels[LABEL_GC_CONTENT + "config"] = doc.config.digest
                    labels.update({f"{LABEL_GC_CONTENT}l.{i}": d.digest for i, d in enumerate(doc.layers)})
                await self._store_bytes(namespace, desc, data, lease_id, labels, actor)
            img, changed = await self._record(namespace, name, root.descriptor, manifest.config.digest, actor)
            # the snapshots exist already (made while later layers downloaded): this checks them and labels
            resolved = await image_unpack.unpack(services, namespace, name, SNAPSHOTTER, platform=platform,
                                                 actor=actor)
            t_unpack = time.monotonic()
            await services.journal.append(
                [ImagePulled(name=name, digest=root.digest, registry=r.domain, size=resolved.size,
                             config=resolved.config_digest)], namespace=namespace, actor=actor)
        finally:
            await asyncio.shield(self._drop_lease(namespace, lease_id, actor))
        self.last_timings = {"resolve_fetch": t_fetch - t0, "unpack": t_unpack - t_fetch, "apply_busy": busy[0],
                             "bytes": float(sum(d.size for d in layers))}
        log.info("pulled %s (%s): fetch %.3fs, unpack %.3fs, %d bytes of layers; layers applied during %.3fs "
                 "(overlapping the fetch)", name, root.digest, t_fetch - t0, t_unpack - t_fetch,
                 sum(d.size for d in layers), busy[0])
        emit(message(f"Digest: {root.digest}"))
        emit(message(f"Status: {'Downloaded newer image' if changed else 'Image is up to date'} for {r.familiar()}"))
        return img

    async def _unpack_as_fetched(self, namespace: str, manifest: formats.Manifest, layers: list[formats.Descriptor],
                                 done: list[asyncio.Future[bool]], config_done: asyncio.Future[bool],
                                 emit: Progress, busy: list[float], actor: str) -> None:
        """Unpack each layer as soon as its blob is here, while the others download (in parallel with
        overlayfs, engine/images/unpacker.py); busy[0] ends up as the time any layer was being unpacked."""
        content, snaps = self.services.content, self.services.snapshots
        assert content is not None and snaps is not None
        await config_done
        try:
            config = formats.parse_config(await content.read(namespace, manifest.config.digest))
        except NotFound:
            return  # the final unpack reports it
        diff_ids = list(config.rootfs.diff_ids)
        if len(diff_ids) != len(layers):
            return  # the final unpack refuses the image with the reason
        store = content.store

        def opener(digest: str) -> Callable[[], BinaryIO]:
            return lambda: open(store.blob_path(digest), "rb")

        spans: dict[int, list[float]] = {}  # per layer: when its extraction started and ended

        def progress(i: int, event: str) -> None:
            fresh = done[i].result()
            if event == "extracting":
                spans[i] = [time.monotonic(), 0.0]
                if fresh:
                    emit(message("Extracting", short(layers[i].digest), 0, layers[i].size))
            elif event == "staged":
                spans[i][1] = time.monotonic()
                fault("layer:staged")
            elif event == "done" and fresh:
                emit(message("Pull complete", short(layers[i].digest)))

        stack = [Layer(diff_id, opener(d.digest), fut)  # type: ignore[arg-type]
                 for d, diff_id, fut in zip(layers, diff_ids, done, strict=True)]
        try:
            await unpack_layers(snaps, SNAPSHOTTER, stack, namespace=namespace, actor=actor, progress=progress)
        finally:
            busy[0] = _covered([(a, b) for a, b in spans.values() if b])

    async def push(self, namespace: str, ref: str | reference.Reference, *, auth: Credentials | None = None,
                   progress: Progress | None = None, actor: str) -> str:
        """Push the image record `ref` to its registry (engine/services/push.py); the pushed digest."""
        from engine.services.push import push

        return await push(self, namespace, ref, auth=auth, progress=progress, actor=actor)

    async def _drop_lease(self, namespace: str, lease_id: str, actor: str) -> None:
        assert self.services.leases is not None
        try:
            await self.services.leases.delete(namespace, lease_id, actor=actor)
        except NotFound:
            pass
        except Exception:
            log.exception("cannot delete pull lease %s", lease_id)

    async def _record(self, namespace: str, name: str, target: formats.Descriptor, image_id: str,
                      actor: str) -> tuple[Image, bool]:
        """Create or point the image record; (record, whether it changed). In Docker's namespace the image the
        name pointed at before stays listed as dangling, as with a load or a tag (image_archive's rules)."""
        images = self.services.images
        assert images is not None
        t = ImageDescriptor(media_type=target.media_type, digest=target.digest, size=target.size)
        if namespace == DOCKER_NAMESPACE:
            from engine.services.image_archive import point_events

            def decide(tx: sqlite3.Cursor) -> list[Any]:
                events = point_events(tx, namespace, name, t, image_id)
                if not events:
                    raise _Unchanged(name)
                return events

            try:
                await self.services.journal.append(decide, namespace=namespace, actor=actor)
            except _Unchanged:
                return await images.get(namespace, name), False
            return await images.get(namespace, name), True
        try:
            cur = await images.get(namespace, name)
        except NotFound:
            try:
                return await images.create(namespace, Image(name=name, target=t), actor=actor), True
            except AlreadyExists:
                cur = await images.get(namespace, name)
        if cur.target.digest == t.digest:
            return cur, False
        return await images.update(namespace, Image(name=name, target=t), ["target"], actor=actor), True

    async def _store_bytes(self, namespace: str, desc: formats.Descriptor, data: bytes, lease: str,
                           labels: dict[str, str], actor: str) -> None:
        key = (namespace, desc.digest)
        lock = self._doc_locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:  # concurrent pulls of one image store its manifest once
                await self._store_locked(namespace, desc, data, lease, labels, actor)
        finally:
            if not lock.locked() and not getattr(lock, "_waiters", None):
                self._doc_locks.pop(key, None)

    async def _store_locked(self, namespace: str, desc: formats.Descriptor, data: bytes, lease: str,
                            labels: dict[str, str], actor: str) -> None:
        content = self.services.content
        assert content is not None
        try:
            info = await content.info(namespace, desc.digest)
        except NotFound:
            info = None
        if info is None:
            try:
                w = await content.writer(namespace, f"pull-{desc.digest}", total=len(data), expected=desc.digest,
                                         lease=lease, actor=actor)
                try:
                    await w.write(data, 0)
                    await w.commit(len(data), desc.digest, labels)
                    return
                finally:
                    await w.close()
            except AlreadyExists:
                info = await content.info(namespace, desc.digest)
        await self._hold(namespace, lease, desc.digest, actor)
        gc = {k: v for k, v in labels.items() if not k.startswith(LABEL_SOURCE)}
        if any(info.labels.get(k) != v for k, v in gc.items()):
            await content.update(namespace, desc.digest, gc, paths=[f"labels.{k}" for k in gc], actor=actor)
        await self._note_source(namespace, info, {k: v for k, v in labels.items() if k.startswith(LABEL_SOURCE)},
                                actor)

    async def _note_source(self, namespace: str, info: Any, labels: dict[str, str], actor: str) -> None:
        """Add this repository to the blob's distribution-source label (comma-separated, as containerd)."""
        content = self.services.content
        assert content is not None
        for key, path in labels.items():
            have = [p for p in info.labels.get(key, "").split(",") if p]
            if path not in have:
                value = ",".join([*have, path])
                await content.update(namespace, info.digest, {key: value}, paths=[f"labels.{key}"], actor=actor)

    async def _hold(self, namespace: str, lease: str, digest: str, actor: str) -> None:
        assert self.services.leases is not None
        await self.services.leases.add_resource(namespace, lease, Resource(digest, "content"), actor=actor)

    async def _fetch(self, namespace: str, repo: Repository, desc: formats.Descriptor, lease: str,
                     emit: Progress | None, labels: dict[str, str], actor: str) -> bool:
        """Make sure the blob is in the namespace (one download per digest at a time); True if downloaded."""
        content = self.services.content
        assert content is not None
        key = (namespace, desc.digest)
        while True:
            try:
                info = await content.info(namespace, desc.digest)
                await self._hold(namespace, lease, desc.digest, actor)
                await self._note_source(namespace, info, labels, actor)
                if emit:
                    emit(message("Already exists", short(desc.digest)))
                return False
            except NotFound:
                pass
            other = self._inflight.get(key)
            if other is not None:
                if emit:
                    emit(message("Waiting", short(desc.digest)))
                await asyncio.shield(other)
                continue
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._inflight[key] = fut
            try:
                await self._download(namespace, repo, desc, lease, emit, labels, actor)
                fut.set_result(None)
                return True
            except BaseException as err:
                fut.set_exception(err if isinstance(err, Exception) else Unavailable("download cancelled"))
                raise
            finally:
                del self._inflight[key]

    async def _download(self, namespace: str, repo: Repository, desc: formats.Descriptor, lease: str,
                        emit: Progress | None, labels: dict[str, str], actor: str) -> None:
        content = self.services.content
        assert content is not None
        digest, size, sid = desc.digest, desc.size, short(desc.digest)
        ref = f"pull-{digest}"
        try:
            w = await content.writer(namespace, ref, total=size, expected=digest, lease=lease, actor=actor)
        except AlreadyExists:
            await self._hold(namespace, lease, digest, actor)
            return
        try:
            if w.offset == 0 and content.store.exists(digest):  # another namespace has it: no copy
                await w.commit(size, digest, labels)
                return
            failures = 0
            while w.offset < size:
                try:
                    resp, start = await repo.open_blob(digest, w.offset)
                    await self._copy(resp, w, start, size, sid, emit,
                                     content.store.ingest_path(backend_ref(namespace, ref)) / "data")
                except Unavailable:
                    failures += 1
                    if failures > RETRIES:
                        raise
                    log.info("blob %s: download broke at %d of %d bytes, resuming", digest, w.offset, size)
                    continue
                if w.offset < size:
                    failures += 1
                    if failures > RETRIES:
                        raise Unavailable(f"blob {digest}: registry sent {w.offset} of {size} bytes")
            if emit:
                emit(message("Verifying Checksum", sid))
            try:
                await w.commit(size, digest, labels)
            except FailedPrecondition as err:
                await w.close()
                await content.abort(namespace, ref, actor=actor)
                raise DataLoss(f"failed to verify {digest} from {repo.path}: {err}") from err
            except AlreadyExists:
                await self._hold(namespace, lease, digest, actor)
            if emit:
                emit(message("Download complete", sid))
        finally:
            await w.close()

    async def _copy(self, resp: Response, w: Any, start: int, size: int, sid: str, emit: Progress | None,
                    data_path: Path | None = None) -> None:
        """Stream a blob response into the writer, in ~1 MiB writes, reporting progress.

        Every ``FLUSH_EVERY`` bytes the ingest file is fdatasync'ed on a worker thread, so the disk writes
        back while the download goes on and the commit's fsync only waits for the tail."""
        buf: list[bytes] = []
        pending = 0
        offset = start
        first = True
        last_report, reported = 0.0, -1
        flushed = start
        flushing: asyncio.Future[None] | None = None
        fd = os.open(data_path, os.O_RDONLY | os.O_CLOEXEC) if data_path is not None and FLUSH_EVERY else -1
        try:
            async for chunk in resp.chunks():
                buf.append(chunk)
                pending += len(chunk)
                if pending >= WRITE_SIZE:
                    data = b"".join(buf)
                    buf, pending = [], 0
                    await w.write(data, 0 if first and start == 0 else None)
                    first = False
                    offset += len(data)
                    fault("layer:partial")
                    if fd >= 0 and offset - flushed >= FLUSH_EVERY and (flushing is None or flushing.done()):
                        flushed = offset
                        flushing = asyncio.ensure_future(asyncio.to_thread(os.fdatasync, fd))
                    now = time.monotonic()
                    if emit and now - last_report > 0.1:
                        last_report, reported = now, offset
                        emit(message("Downloading", sid, offset, size))
        except Unavailable:
            if buf:  # keep what arrived before the break: the retry asks for the rest
                await w.write(b"".join(buf), 0 if first and start == 0 else None)
            raise
        finally:
            resp.close()
            if flushing is not None:
                with contextlib.suppress(OSError):
                    await flushing
            if fd >= 0:
                os.close(fd)
        if buf:
            data = b"".join(buf)
            await w.write(data, 0 if first and start == 0 else None)
            offset += len(data)
        if emit and reported != offset:
            emit(message("Downloading", sid, offset, size))


def _covered(spans: list[tuple[float, float]]) -> float:
    """The length of the union of time spans."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


async def _gather(coros: list[Any]) -> None:
    """Run all to their end (a sibling's failure does not cut a download half-way), then raise the first
    failure."""
    results = await asyncio.gather(*coros, return_exceptions=True)
    for res in results:
        if isinstance(res, BaseException):
            raise res


DOCKER_NAMESPACE = "moby"


class _Unchanged(EngineError):
    """The name already points at the pulled target (nothing to journal)."""
