"""Docker's images over containerd's image records: load, save, import, and the tag/untag/delete/prune rules.

Docker's objects live in one containerd namespace (``moby``). An image record's name is a full reference
(``docker.io/library/busybox:latest``); an image with no name left is kept as ``moby-dangling@<target
digest>``, as dockerd's containerd store does; the Docker image ID is the config digest of the manifest
chosen for the host platform (``engine/services/image_unpack.py``).

* ``load`` takes a ``docker save`` tar or an OCI layout tar (engine/images/archive reads both): the tar is
  extracted as it arrives (a worker thread reads the request body) into ``<root>/tmp``, every blob is
  ingested through the content service with its expected digest under a lease (``containerd.io/gc.expire`` a day ahead, deleted at the end), with the
  containerd gc labels on manifests and indexes; each image is resolved and unpacked **before** any
  record exists, so a bad archive (missing blob, digest mismatch, a layer that does not hash to its diff
  ID) leaves no record, and its blobs only under the lease, which goes at the end (gc then removes them).
  Then the records are created or re-pointed and ``image.loaded`` journaled.
* ``point`` (load, import, tag) changes records in one append: the name's record is created or re-pointed;
  the old target, if no other name has it, becomes ``moby-dangling@<digest>``; a dangling record of the
  new target goes (the image has a name now); and ``image.tagged`` goes with it.
* ``remove`` follows dockerd's containerd ImageDelete: by name it untags, and deletes the image with its
  last name; by ID it deletes every name (several repositories: 409 unless forced); a container using the
  image is a 409 (a running one even when forced). Deletions are ``image.untagged`` and
  ``image.removed`` events next to the records' ``image.deleted``; gc then collects the content.

Event types (subjects; payloads): ``image.tagged`` (name; id, target), ``image.untagged`` (name; id),
``image.removed`` (id; names), ``image.loaded`` (id; names, target), ``image.imported`` (id; name,
source), ``image.saved`` (id; names), ``image.pruned`` (namespace; ids, reclaimed). Docker's actions
(``/events``): tag, untag, delete, load, import, save, prune.

Listing and resolution need the config digest of each record's target: resolved once per target digest
and cached (content-addressed, so the answer never changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import io
import logging
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Protocol

from engine.errors import AlreadyExists, Conflict, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from engine.events.projection import Projection
from engine.events.types import Event
from engine.images import formats, platforms, reference
from engine.images.archive import layout, rootfs, tarstream, writer
from engine.services import image_unpack
from engine.services.images import Descriptor, Image, ImageCreated, ImageDeleted, ImageUpdated
from engine.services.images import _get as get_record
from engine.services.leases import LABEL_EXPIRE, Resource
from engine.services.namespaces import namespace_events

if TYPE_CHECKING:
    from engine.services import Services

log = logging.getLogger(__name__)
DANGLING = "moby-dangling@"
LOCK_RETRIES = 600  # ~5 min of waiting for a concurrent load's ingest of the same blob
SCRATCH_KINDS = ("load-", "import-")
Progress = Callable[[dict[str, Any]], None]


class ImageTagged(Event, frozen=True):
    TYPE: ClassVar[str] = "image.tagged"
    SUBJECT: ClassVar[str] = "name"
    name: str
    id: str
    target: str = ""


class ImageUntagged(Event, frozen=True):
    TYPE: ClassVar[str] = "image.untagged"
    SUBJECT: ClassVar[str] = "name"
    name: str
    id: str


class ImageRemoved(Event, frozen=True):
    TYPE: ClassVar[str] = "image.removed"
    SUBJECT: ClassVar[str] = "id"
    id: str
    names: list[str] = []


class ImageLoaded(Event, frozen=True):
    TYPE: ClassVar[str] = "image.loaded"
    SUBJECT: ClassVar[str] = "id"
    id: str
    names: list[str] = []
    target: str = ""


class ImageImported(Event, frozen=True):
    TYPE: ClassVar[str] = "image.imported"
    SUBJECT: ClassVar[str] = "id"
    id: str
    name: str = ""
    source: str = "-"


class ImageSaved(Event, frozen=True):
    TYPE: ClassVar[str] = "image.saved"
    SUBJECT: ClassVar[str] = "id"
    id: str
    names: list[str] = []


class ImagesPruned(Event, frozen=True):
    TYPE: ClassVar[str] = "image.pruned"
    SUBJECT: ClassVar[str] = "namespace"
    namespace: str
    ids: list[str] = []
    reclaimed: int = 0


def apply(env: Any, tx: sqlite3.Cursor) -> None:
    """Docker-level image events change no table of their own (the records are the images projection's)."""


# no tables: registered so that every process that reads the journal (``engine journal verify``) knows the types
PROJECTION = Projection(name="image_archive", tables=(), events=(
    ImageTagged, ImageUntagged, ImageRemoved, ImageLoaded, ImageImported, ImageSaved, ImagesPruned), apply=apply)


class AsyncReader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


@dataclass
class Group:
    """One Docker image: the records whose targets resolve to one config digest."""

    id: str
    records: list[Image] = field(default_factory=list)
    resolved: image_unpack.Resolved | None = None

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.records if not r.name.startswith(DANGLING)]

    @property
    def dangling(self) -> bool:
        return not self.names

    @property
    def created_ns(self) -> int:
        return min((r.created_ns for r in self.records), default=0)


def is_dangling(name: str) -> bool:
    return name.startswith(DANGLING)


def short_id(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _desc(t: formats.Descriptor) -> Descriptor:
    return Descriptor(media_type=t.media_type, digest=t.digest, size=t.size)


def point_events(tx: sqlite3.Cursor, ns: str, name: str, target: Descriptor, image_id: str) -> list[Event]:
    """Events that make `name` point at `target` (see the module docstring); [] if it already does."""
    events: list[Event] = list(namespace_events(tx, ns))
    cur = get_record(tx, ns, name)
    if cur is not None and cur.target.digest == target.digest:
        return []
    if cur is None:
        events.append(ImageCreated(name=name, image=Image(name=name, target=target)))
    else:
        events.append(ImageUpdated(name=name, image=Image(name=name, labels=cur.labels, target=target),
                                   paths=["target"]))
        old = cur.target
        others = tx.execute("SELECT 1 FROM images WHERE namespace = ? AND target_digest = ? AND name != ?",
                            (ns, old.digest, name)).fetchone()
        if others is None:
            dname = DANGLING + old.digest
            events.append(ImageCreated(name=dname, image=Image(name=dname, target=old)))
    dname = DANGLING + target.digest
    if not is_dangling(name) and get_record(tx, ns, dname) is not None:
        events.append(ImageDeleted(name=dname, digest=target.digest))
    if not is_dangling(name):
        events.append(ImageTagged(name=name, id=image_id, target=target.digest))
    return events


def dangling_events(tx: sqlite3.Cursor, ns: str, target: Descriptor) -> list[Event]:
    """A dangling record for `target` unless some record already points at it."""
    if tx.execute("SELECT 1 FROM images WHERE namespace = ? AND target_digest = ?",
                  (ns, target.digest)).fetchone():
        return []
    name = DANGLING + target.digest
    return [*namespace_events(tx, ns), ImageCreated(name=name, image=Image(name=name, target=target))]


class _FromAsync(io.RawIOBase):
    """A blocking file over an async reader (the request body), for the worker thread that extracts: each
    read waits on the event loop, so the archive is never spooled to disk first."""

    def __init__(self, stream: AsyncReader, loop: asyncio.AbstractEventLoop) -> None:
        self.stream, self.loop = stream, loop

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = asyncio.run_coroutine_threadsafe(self.stream.read(len(b)), self.loop).result()
        b[:len(data)] = data
        return len(data)


@contextlib.contextmanager
def _sync_reader(stream: AsyncReader | BinaryIO | Path, loop: asyncio.AbstractEventLoop) -> Iterator[BinaryIO]:
    if isinstance(stream, Path):
        with open(stream, "rb") as f:
            yield f
    elif asyncio.iscoroutinefunction(getattr(stream, "read", None)):
        with io.BufferedReader(_FromAsync(stream, loop), 1 << 20) as f:  # type: ignore[arg-type]
            yield f  # type: ignore[misc]
    else:
        yield stream  # type: ignore[misc]


def service(services: Services) -> ImageArchiveService:
    """The daemon's one ImageArchiveService (kept in ``services.extra["image_archive"]``, made on first use)."""
    svc = services.extra.get("image_archive")
    if svc is None:
        svc = services.extra["image_archive"] = ImageArchiveService(services)
    return svc  # type: ignore[return-value]


class ImageArchiveService:
    """Docker's image operations in a namespace (``moby``), over the images, content and lease services."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._resolved: dict[str, image_unpack.Resolved] = {}
        self.last_timings: dict[str, float] = {}  # seconds per step of the last load (extract, ingest, unpack)
        self.scratch = Path(services.config.root) / "tmp"
        self._clean_scratch()

    def _clean_scratch(self) -> None:
        """Scratch directories of loads and imports a crash cut short (one service per daemon process)."""
        if not self.scratch.is_dir():
            return
        for p in self.scratch.iterdir():
            if p.name.startswith(SCRATCH_KINDS):
                shutil.rmtree(p, ignore_errors=True)

    # ---- resolution ---------------------------------------------------------------------------

    async def resolved(self, ns: str, img: Image) -> image_unpack.Resolved:
        r = self._resolved.get(img.target.digest)
        if r is None:
            t = img.target
            r = await image_unpack.resolve_target(self.services, ns, img.name, formats.Descriptor(
                media_type=t.media_type, digest=t.digest, size=t.size))
            self._resolved[t.digest] = r
        return r

    async def groups(self, ns: str) -> list[Group]:
        """Every Docker image of `ns` (records whose content cannot be resolved are left out)."""
        assert self.services.images is not None
        out: dict[str, Group] = {}
        for img in await self.services.images.list(ns):
            try:
                r = await self.resolved(ns, img)
            except (NotFound, InvalidArgument) as err:
                log.debug("image %s: not resolvable: %s", img.name, err)
                continue
            g = out.setdefault(r.config_digest, Group(r.config_digest, [], r))
            g.records.append(img)
        return list(out.values())

    async def lookup(self, ns: str, s: str) -> tuple[Group, list[Image]]:
        """The image `s` names and the records `s` itself names; see ``find``."""
        g, recs, _ = await self.find(ns, s)
        return g, recs

    async def find(self, ns: str, s: str) -> tuple[Group, list[Image], bool]:
        """The image `s` names (reference, ID, ID prefix, ``sha256:`` prefix), the records `s` itself
        names (the one tag, or every record for an ID) and whether `s` was a name; NotFound
        ``No such image: <s>``."""
        groups = await self.groups(ns)
        if not s:
            raise NotFound("No such image: ")
        ref: reference.Reference | None = None
        if not reference.is_id(s):
            try:
                ref = reference.parse(s)
            except InvalidArgument:
                ref = None
        if ref is not None:
            full = str(ref)
            for g in groups:
                for r in g.records:
                    if r.name == full:
                        return g, [r], True
            if ref.digest:  # repo@digest: a record of that repository whose target is the digest
                for g in groups:
                    same = [r for r in g.records if r.target.digest == ref.digest and not is_dangling(r.name)
                            and reference.parse(r.name, default_tag="").repository == ref.repository]
                    if same:
                        return g, same, True
        hexpart = s.removeprefix("sha256:")
        if hexpart and all(c in "0123456789abcdef" for c in hexpart) and (s.startswith("sha256:") or ref is None
                                                                          or ":" not in s):
            found = [g for g in groups if g.id.split(":", 1)[1].startswith(hexpart)]
            if len(found) > 1:
                raise InvalidArgument(f"ambiguous image ID prefix {s}: {len(found)} images match")
            if found:
                return found[0], list(found[0].records), False
        raise NotFound(f"No such image: {ref.familiar() if ref is not None else s}")

    # ---- tag, remove, prune -------------------------------------------------------------------

    async def tag(self, ns: str, source: str, new: str, *, actor: str) -> str:
        """Point `new` at the image `source` names; the new full name."""
        g, recs = await self.lookup(ns, source)
        target = recs[0].target
        ref = reference.parse(new)
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        name = str(ref)

        def decide(tx: sqlite3.Cursor) -> list[Event]:  # a tag that is already there is still Docker's "tag"
            return point_events(tx, ns, name, target, g.id) or [ImageTagged(name=name, id=g.id, target=target.digest)]

        await self.services.journal.append(decide, namespace=ns, actor=actor)
        return name

    async def _users(self, ns: str, g: Group) -> list[tuple[str, bool]]:
        """(container id, running) of the containers that use image `g`: Docker's container records (their
        image ID and state) when the dockerd role runs, else containerd's records naming one of its names."""
        svc = self.services
        docker = getattr(svc, "docker", None)
        if docker is not None and ns == "moby":
            return [(c.id, c.state.running) for c in await docker.list() if c.image_id == g.id]
        if svc.containers is None:
            return []
        keys = {g.id, *(r.name for r in g.records)}
        return [(c.id, False) for c in await svc.containers.list(ns) if c.image in keys]

    async def remove(self, ns: str, s: str, *, force: bool = False, actor: str) -> list[dict[str, str]]:
        """Docker's ``DELETE /images/{name}``: the Untagged/Deleted list."""
        g, named, by_name = await self.find(ns, s)
        by_id = not by_name
        users = await self._users(ns, g)
        if not by_id:
            if len(named) < len(g.records):
                return await self._delete(ns, g, named, deleted=False, actor=actor)
            if users and not force:
                ref = reference.parse(named[0].name).familiar()
                raise Conflict(f"conflict: unable to delete {ref} (must be forced) - container "
                               f"{users[0][0][:12]} is using its referenced image {short_id(g.id)}")
            if users:  # forced: the name goes, the image stays (dangling) for its containers
                return await self._delete(ns, g, named, deleted=False, keep_dangling=True, actor=actor)
            return await self._delete(ns, g, named, deleted=True, actor=actor)
        running = [u for u in users if u[1]]
        if running:
            raise Conflict(f"conflict: unable to delete {short_id(g.id)} (cannot be forced) - image is being "
                           f"used by running container {running[0][0][:12]}")
        if users and not force:
            raise Conflict(f"conflict: unable to delete {short_id(g.id)} (must be forced) - image is being "
                           f"used by stopped container {users[0][0][:12]}")
        repos = {reference.parse(n, default_tag="").repository for n in g.names}
        if len(repos) > 1 and not force:
            raise Conflict(f"conflict: unable to delete {short_id(g.id)} (must be forced) - image is "
                           "referenced in multiple repositories")
        return await self._delete(ns, g, g.records, deleted=True, actor=actor)

    async def _delete(self, ns: str, g: Group, recs: list[Image], *, deleted: bool, keep_dangling: bool = False,
                      actor: str) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        names = [r.name for r in recs]

        def decide(tx: sqlite3.Cursor) -> list[Event]:
            events: list[Event] = []
            for r in recs:
                cur = get_record(tx, ns, r.name)
                if cur is None:
                    continue
                events.append(ImageDeleted(name=r.name, digest=cur.target.digest))
                if not is_dangling(r.name):
                    events.append(ImageUntagged(name=r.name, id=g.id))
            if keep_dangling and recs:
                t = recs[0].target
                left = tx.execute("SELECT name FROM images WHERE namespace = ? AND target_digest = ?",
                                  (ns, t.digest)).fetchall()
                if all(n in names for (n,) in left):
                    d = DANGLING + t.digest
                    if d not in names:
                        events.append(ImageCreated(name=d, image=Image(name=d, target=t)))
            if deleted:
                events.append(ImageRemoved(id=g.id, names=[n for n in names if not is_dangling(n)]))
            return events

        await self.services.journal.append(decide, namespace=ns, actor=actor)
        for n in names:
            if not is_dangling(n):
                out.append({"Untagged": reference.parse(n, default_tag="").familiar()})
        if deleted:
            out.append({"Deleted": g.id})
        return out  # gc's scheduler collects the content soon after the records' deletion

    async def prune(self, ns: str, *, all_images: bool = False, keep: Callable[[Group], bool] | None = None,
                    actor: str) -> tuple[list[dict[str, str]], int]:
        """Remove dangling images (every unused one with `all_images`); (Docker's list, bytes reclaimed)."""
        out: list[dict[str, str]] = []
        reclaimed = 0
        ids = []
        for g in await self.groups(ns):
            if not all_images and not g.dangling:
                continue
            if keep is not None and keep(g):
                continue
            if await self._users(ns, g):
                continue
            out += await self._delete(ns, g, g.records, deleted=True, actor=actor)
            reclaimed += g.resolved.size if g.resolved else 0
            ids.append(g.id)
        await self.services.journal.append([ImagesPruned(namespace=ns, ids=ids, reclaimed=reclaimed)],
                                           namespace=ns, actor=actor)
        return out, reclaimed

    # ---- load, import, save -------------------------------------------------------------------

    def _workdir(self, kind: str) -> Path:
        d = self.scratch / f"{kind}-{uuid.uuid4().hex[:16]}"
        d.mkdir(parents=True)
        return d

    async def _lease(self, ns: str, actor: str) -> str:
        assert self.services.leases is not None
        lease = f"load-{uuid.uuid4().hex[:16]}"
        expire = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self.services.leases.create(ns, lease, {LABEL_EXPIRE: expire}, actor=actor)
        return lease

    async def _drop_lease(self, ns: str, lease: str, actor: str) -> None:
        assert self.services.leases is not None
        try:
            await self.services.leases.delete(ns, lease, actor=actor)
        except NotFound:
            pass
        except Exception:  # noqa: BLE001 - the lease expires by itself
            log.exception("cannot delete lease %s", lease)

    async def _ingest(self, ns: str, blob: layout.Blob, lease: str, actor: str) -> None:
        content, leases = self.services.content, self.services.leases
        assert content is not None and leases is not None
        try:
            info = await content.info(ns, blob.digest)
        except NotFound:
            info = None
        if info is None:
            try:
                w = await self._open_writer(ns, blob, lease, actor)
            except AlreadyExists:
                info = await content.info(ns, blob.digest)
            else:
                try:
                    if not content.store.exists(blob.digest):
                        if w.offset:
                            await w.truncate(0)
                        await self._write(w, blob)
                    await w.commit(blob.size, blob.digest, blob.labels)
                    return
                except FailedPrecondition as err:
                    await w.close()
                    await content.abort(ns, f"load-{blob.digest}", actor=actor)
                    raise InvalidArgument(f"invalid archive: blob {blob.digest} does not match its digest: "
                                          f"{err}") from err
                except AlreadyExists:
                    info = await content.info(ns, blob.digest)
                finally:
                    await w.close()
        await leases.add_resource(ns, lease, Resource(blob.digest, "content"), actor=actor)
        if any(info.labels.get(k) != v for k, v in blob.labels.items()):
            await content.update(ns, blob.digest, blob.labels, paths=[f"labels.{k}" for k in blob.labels],
                                 actor=actor)

    async def _open_writer(self, ns: str, blob: layout.Blob, lease: str, actor: str) -> Any:
        """The ingest `load-<digest>`; a concurrent load of the same blob holds it: wait for that one (its
        commit makes ours AlreadyExists), as containerd's importer does."""
        content = self.services.content
        assert content is not None
        delay = 0.02
        for _ in range(LOCK_RETRIES):
            try:
                return await content.writer(ns, f"load-{blob.digest}", total=blob.size, expected=blob.digest,
                                            lease=lease, actor=actor)
            except Unavailable:
                try:
                    await content.info(ns, blob.digest)
                    raise AlreadyExists(f"content {blob.digest}: already exists") from None
                except NotFound:
                    pass
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
        raise Unavailable(f"blob {blob.digest}: another load holds its ingest")

    @staticmethod
    async def _write(w: Any, blob: layout.Blob) -> None:
        if blob.data is not None:
            await w.write(blob.data, 0)
            return
        assert blob.path is not None
        first = True
        with open(blob.path, "rb") as f:
            while chunk := await asyncio.to_thread(f.read, 1 << 20):
                await w.write(chunk, 0 if first else None)
                first = False

    async def _store(self, ns: str, arc: layout.Archive, lease: str, actor: str) -> list[image_unpack.Resolved]:
        t0 = time.monotonic()
        for blob in arc.blobs.values():
            await self._ingest(ns, blob, lease, actor)
        self.last_timings["ingest"] = time.monotonic() - t0
        out = []
        for img in arc.images:
            name = img.names[0] if img.names else DANGLING + img.target.digest
            r = await image_unpack.resolve_target(self.services, ns, name, img.target)
            await image_unpack.unpack_resolved(self.services, ns, r, actor=actor)
            self._resolved[img.target.digest] = r
            out.append(r)
        return out

    async def load(self, ns: str, stream: AsyncReader | BinaryIO | Path, *, actor: str,
                   progress: Progress | None = None) -> list[str]:
        """Load a ``docker save`` or OCI layout tar; the loaded names (full references, or image IDs of
        untagged images), in archive order."""
        work = self._workdir("load")
        try:
            root = work / "root"
            root.mkdir()
            loop = asyncio.get_running_loop()

            def read() -> layout.Archive:
                with _sync_reader(stream, loop) as f:
                    known = tarstream.extract(f, root)
                return layout.read(root, known)

            t0 = time.monotonic()
            arc = await asyncio.to_thread(read)
            self.last_timings = {"extract": time.monotonic() - t0}
            if not arc.images:
                raise InvalidArgument("invalid archive: it holds no image")
            return await self._load_archive(ns, arc, actor, progress)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def load_dir(self, ns: str, path: Path, *, actor: str) -> list[str]:
        """Load an OCI image layout directory (or an extracted docker-archive)."""
        arc = await asyncio.to_thread(layout.read, path)
        return await self._load_archive(ns, arc, actor, None)

    async def _load_archive(self, ns: str, arc: layout.Archive, actor: str, progress: Progress | None) -> list[str]:
        lease = await self._lease(ns, actor)
        try:
            t1 = time.monotonic()
            resolved = await self._store(ns, arc, lease, actor)
            self.last_timings["unpack"] = time.monotonic() - t1 - self.last_timings.get("ingest", 0.0)
            loaded: list[str] = []
            for img, r in zip(arc.images, resolved, strict=True):
                t = _desc(img.target)

                def decide(tx: sqlite3.Cursor, img: layout.ArchiveImage = img, t: Descriptor = t,
                           r: image_unpack.Resolved = r) -> list[Event]:
                    events: list[Event] = []
                    for name in img.names:
                        events += point_events(tx, ns, name, t, r.config_digest)
                    if not img.names:
                        events += dangling_events(tx, ns, t)
                    return [*events, ImageLoaded(id=r.config_digest, names=img.names, target=t.digest)]

                await self.services.journal.append(decide, namespace=ns, actor=actor)
                for name in img.names or [r.config_digest]:
                    loaded.append(name)
                    if progress:
                        shown = reference.parse(name).familiar() if img.names else name
                        what = "Loaded image" if img.names else "Loaded image ID"
                        progress({"stream": f"{what}: {shown}\n"})
            log.info("loaded %s: %s", loaded, {k: round(v, 3) for k, v in self.last_timings.items()})
            return loaded
        finally:
            await asyncio.shield(self._drop_lease(ns, lease, actor))

    async def import_rootfs(self, ns: str, stream: AsyncReader | BinaryIO | Path, *, ref: str = "",
                            changes: list[str] | None = None, message: str = "", platform: str = "",
                            actor: str) -> str:
        """``docker import``: the new image's ID; tagged `ref` if given."""
        name = str(reference.parse(ref)) if ref else ""
        plat = platforms.normalize(platforms.parse(platform)) if platform else platforms.host()
        rootfs.build(rootfs.Layer("sha256:" + "0" * 64, 1, "sha256:" + "0" * 64, formats.OCI_LAYER),
                     changes=list(changes or []), message=message, platform=plat)  # refuse bad changes first
        work = self._workdir("import")
        try:
            layer_path = work / "layer"
            loop = asyncio.get_running_loop()

            def make() -> tuple[rootfs.Layer, bytes, bytes]:
                with _sync_reader(stream, loop) as f:
                    layer = rootfs.write_layer(f, layer_path)
                cfg, man = rootfs.build(layer, changes=list(changes or []), message=message, platform=plat)
                return layer, cfg, man

            layer, cfg, man = await asyncio.to_thread(make)
            cdigest = "sha256:" + hashlib.sha256(cfg).hexdigest()
            mdigest = "sha256:" + hashlib.sha256(man).hexdigest()
            arc = layout.Archive()
            arc.blobs[layer.digest] = layout.Blob(layer.digest, layer.size, layer.media_type, path=layer_path)
            arc.blobs[cdigest] = layout.Blob(cdigest, len(cfg), formats.OCI_CONFIG, data=cfg)
            arc.blobs[mdigest] = layout.Blob(mdigest, len(man), formats.OCI_MANIFEST, data=man, labels={
                layout.LABEL_GC + "config": cdigest, layout.LABEL_GC + "l.0": layer.digest})
            target = formats.Descriptor(media_type=formats.OCI_MANIFEST, digest=mdigest, size=len(man))
            arc.images.append(layout.ArchiveImage(target, [name] if name else [], cdigest))
            lease = await self._lease(ns, actor)
            try:
                await self._store(ns, arc, lease, actor)
                t = _desc(target)

                def decide(tx: sqlite3.Cursor) -> list[Event]:
                    events = point_events(tx, ns, name, t, cdigest) if name else dangling_events(tx, ns, t)
                    return [*events, ImageImported(id=cdigest, name=name, source="-")]

                await self.services.journal.append(decide, namespace=ns, actor=actor)
            finally:
                await asyncio.shield(self._drop_lease(ns, lease, actor))
            return cdigest
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _save_images(self, ns: str, names: list[str]) -> list[writer.SaveImage]:
        content = self.services.content
        assert content is not None
        out: dict[str, writer.SaveImage] = {}
        for s in names:
            g, recs, by_name = await self.find(ns, s)
            for rec in recs:
                r = await self.resolved(ns, rec)
                si = out.get(rec.target.digest)
                if si is None:
                    blobs = await self._present_tree(ns, r.target)
                    si = out[rec.target.digest] = writer.SaveImage(r.target, r.manifest, blobs, [])
                if not is_dangling(rec.name) and rec.name not in si.names:
                    ref = reference.parse(rec.name, default_tag="")
                    if ref.tag:
                        si.names.append(rec.name)
            del g, by_name
        return list(out.values())

    async def _present_tree(self, ns: str, target: formats.Descriptor) -> list[str]:
        """Digests of `target` and what it references that this namespace has (children first)."""
        content = self.services.content
        assert content is not None
        out: list[str] = []

        async def walk(d: formats.Descriptor, depth: int) -> None:
            try:
                await content.info(ns, d.digest)
            except NotFound:
                if depth == 0 or formats.is_layer(d.media_type) or d.media_type in formats.CONFIG_TYPES:
                    raise
                return
            if d.media_type in formats.INDEX_TYPES or d.media_type in formats.MANIFEST_TYPES:
                doc = formats.parse(await content.read(ns, d.digest), d.media_type)
                children = doc.manifests if isinstance(doc, formats.Index) else [doc.config, *doc.layers]
                for c in children:
                    await walk(c, depth + 1)
            if d.digest not in out:
                out.append(d.digest)

        await walk(target, 0)
        return out

    async def save(self, ns: str, names: list[str], *, actor: str) -> Any:
        """``docker save``: an iterator of the tar's chunks (Docker ≥ 25's layout: both formats)."""
        if not names:
            raise InvalidArgument("no image names given")
        images = await self._save_images(ns, names)
        content = self.services.content
        assert content is not None
        events: list[Event] = [ImageSaved(id=i.manifest.config.digest, names=i.names) for i in images]
        await self.services.journal.append(events, namespace=ns, actor=actor)
        return writer.save_stream(images, content.store.blob_path)

    async def export_oci_dir(self, ns: str, names: list[str], dest: Path, *, actor: str) -> None:
        """Write `names` as an OCI image layout directory at `dest`."""
        images = await self._save_images(ns, names)
        assert self.services.content is not None
        await asyncio.to_thread(writer.write_dir, images, self.services.content.store.blob_path, dest)
        await self.services.journal.append([ImageSaved(id=i.manifest.config.digest, names=i.names)
                                            for i in images], namespace=ns, actor=actor)
