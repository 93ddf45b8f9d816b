"""containerd images: metadata records (commands, events, the ``images`` projection, the gc source).

An image here is containerd's: a name in a namespace pointing at a target descriptor (media type,
digest, size, annotations) with labels. Validation follows containerd's metadata store: the name must
not be empty, the target needs a media type and a valid digest. Update takes containerd's field masks
(``labels``, ``labels.<k>``, ``target``, ``annotations``, ``annotations.<k>``; none replaces labels
and target). Delete may name the target it expects (refused with FailedPrecondition on a mismatch) and
may ask for a synchronous collection afterwards.

Design choices: events carry the whole record after the change (replay needs no earlier state but the
created time); image targets are gc roots through ``ImageSource`` — the content's own
``containerd.io/gc.ref.content.*`` labels lead from a manifest to its config and layers. Creating an
image in a namespace that does not exist yet creates it in the same append, as containerd does.
"""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar

import msgspec

from engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from engine.events.journal import Journal
from engine.events.projection import Projection
from engine.events.types import Envelope, Event
from engine.filters import Filter, mapping_adaptor
from engine.images.content import digests
from engine.services.namespaces import namespace_events, validate_labels, validate_name


class Descriptor(msgspec.Struct, frozen=True, kw_only=True):
    media_type: str = ""
    digest: str = ""
    size: int = 0
    annotations: dict[str, str] = {}


class Image(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    labels: dict[str, str] = {}
    target: Descriptor = Descriptor()
    created_ns: int = 0
    updated_ns: int = 0


class ImageCreated(Event, frozen=True):
    TYPE: ClassVar[str] = "image.created"
    SUBJECT: ClassVar[str] = "name"
    name: str
    image: Image


class ImageUpdated(Event, frozen=True):
    """The whole record after the update, and the field paths the caller changed."""

    TYPE: ClassVar[str] = "image.updated"
    SUBJECT: ClassVar[str] = "name"
    name: str
    image: Image
    paths: list[str] = []


class ImageDeleted(Event, frozen=True):
    TYPE: ClassVar[str] = "image.deleted"
    SUBJECT: ClassVar[str] = "name"
    name: str
    digest: str = ""


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Image)


def apply(env: Envelope, tx: sqlite3.Cursor) -> None:
    ev = env.event
    if isinstance(ev, ImageCreated):
        img = msgspec.structs.replace(ev.image, created_ns=env.time_ns, updated_ns=env.time_ns)
        tx.execute("INSERT INTO images(namespace, name, record, target_digest, created_ns, updated_ns) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   (env.namespace, ev.name, _enc.encode(img).decode(), img.target.digest, env.time_ns,
                    env.time_ns))
    elif isinstance(ev, ImageUpdated):
        row = tx.execute("SELECT created_ns FROM images WHERE namespace = ? AND name = ?",
                         (env.namespace, ev.name)).fetchone()
        img = msgspec.structs.replace(ev.image, created_ns=row[0], updated_ns=env.time_ns)
        tx.execute("UPDATE images SET record = ?, target_digest = ?, updated_ns = ? WHERE namespace = ? AND name = ?",
                   (_enc.encode(img).decode(), img.target.digest, env.time_ns, env.namespace, ev.name))
    elif isinstance(ev, ImageDeleted):
        tx.execute("DELETE FROM images WHERE namespace = ? AND name = ?", (env.namespace, ev.name))


PROJECTION = Projection(
    name="images",
    tables=("images",),
    events=(ImageCreated, ImageUpdated, ImageDeleted),
    apply=apply,
    namespaced_tables=("images",),
)


def validate(img: Image) -> Image:
    if not img.name:
        raise InvalidArgument("image name must not be empty")
    validate_labels(img.labels)
    validate_labels(img.target.annotations)
    if not img.target.media_type:
        raise InvalidArgument(f"image {img.name!r}: target media type must not be empty")
    try:
        digests.validate(img.target.digest)
    except InvalidArgument as err:
        raise InvalidArgument(f"image {img.name!r}: target digest: {err}") from None
    if img.target.size < 0:
        raise InvalidArgument(f"image {img.name!r}: target size must not be negative")
    return img


def _keyed(current: dict[str, str], new: dict[str, str], key: str) -> dict[str, str]:
    out = dict(current)
    if new.get(key):
        out[key] = new[key]
    else:
        out.pop(key, None)
    return out


def merge(current: Image, new: Image, paths: list[str]) -> Image:
    """containerd's field-mask update of an image record (the name is the key, never updated)."""
    if not paths:
        paths = ["labels", "target"]
    labels, target = dict(current.labels), current.target
    for path in paths:
        if path == "labels":
            labels = dict(new.labels)
        elif path.startswith("labels."):
            labels = _keyed(labels, new.labels, path[len("labels."):])
        elif path == "target":
            target = new.target
        elif path == "annotations":
            target = msgspec.structs.replace(target, annotations=dict(new.target.annotations))
        elif path.startswith("annotations."):
            key = path[len("annotations."):]
            target = msgspec.structs.replace(target, annotations=_keyed(target.annotations,
                                                                        new.target.annotations, key))
        else:
            raise InvalidArgument(f'cannot update "{path}" field on image "{current.name}"')
    return validate(msgspec.structs.replace(current, labels=labels, target=target))


def _get(tx: sqlite3.Cursor | sqlite3.Connection, namespace: str, name: str) -> Image | None:
    row = tx.execute("SELECT record FROM images WHERE namespace = ? AND name = ?", (namespace, name)).fetchone()
    return _dec.decode(row[0]) if row else None


def adaptor(img: Image):  # type: ignore[no-untyped-def]
    """containerd's image filter fields: name, target.digest, target.mediatype, labels."""
    return mapping_adaptor({"name": img.name, "labels": dict(img.labels),
                            "target": {"digest": img.target.digest, "mediatype": img.target.media_type}})


class ImageSource:
    """gc: every image's target is a root (followed: the content's gc.ref labels lead on)."""

    def roots(self, tx: sqlite3.Cursor, now_ns: int) -> Iterable[tuple[tuple[str, str, str], bool]]:
        for ns, dgst in tx.execute("SELECT DISTINCT namespace, target_digest FROM images").fetchall():
            yield ("content", ns, dgst), True

    def refs(self, tx: sqlite3.Cursor, node: tuple[str, str, str]) -> Iterable[tuple[str, str, str]]:
        return ()


class ImageService:
    """Local implementation of containerd's Images service; `collect` runs a gc for Delete(sync=True)."""

    def __init__(self, journal: Journal, *, collect: Callable[..., Awaitable[Any]] | None = None) -> None:
        self.journal = journal
        self.collect = collect

    async def create(self, namespace: str, img: Image, *, actor: str) -> Image:
        validate_name(namespace)
        img = msgspec.structs.replace(validate(img), created_ns=0, updated_ns=0)

        def decide(tx: sqlite3.Cursor) -> list[Event]:
            if _get(tx, namespace, img.name) is not None:
                raise AlreadyExists(f"image {img.name!r}: already exists")
            return [*namespace_events(tx, namespace), ImageCreated(name=img.name, image=img)]

        envs = await self.journal.append(decide, namespace=namespace, actor=actor)
        return msgspec.structs.replace(img, created_ns=envs[-1].time_ns, updated_ns=envs[-1].time_ns)

    async def get(self, namespace: str, name: str) -> Image:
        validate_name(namespace)
        img = await self.journal.run_read(lambda conn: _get(conn, namespace, name))
        if img is None:
            raise NotFound(f"image {name!r}: not found")
        return img  # type: ignore[return-value]

    async def list(self, namespace: str, flt: Filter | None = None) -> list[Image]:
        validate_name(namespace)

        def q(conn: sqlite3.Connection) -> list[Image]:
            rows = conn.execute("SELECT record FROM images WHERE namespace = ? ORDER BY name", (namespace,))
            return [_dec.decode(r[0]) for r in rows]

        items: list[Image] = await self.journal.run_read(q)  # type: ignore[assignment]
        return [i for i in items if flt is None or flt.match(adaptor(i))]

    async def update(self, namespace: str, img: Image, paths: builtins.list[str] | None = None, *,
                     actor: str) -> Image:
        validate_name(namespace)
        if not img.name:
            raise InvalidArgument("image name must not be empty")
        result: list[Image] = []

        def decide(tx: sqlite3.Cursor) -> list[Event]:
            current = _get(tx, namespace, img.name)
            if current is None:
                raise NotFound(f"image {img.name!r}: not found")
            updated = merge(current, img, list(paths or []))
            result.append(updated)
            return [ImageUpdated(name=img.name, image=updated, paths=list(paths or []))]

        envs = await self.journal.append(decide, namespace=namespace, actor=actor)
        return msgspec.structs.replace(result[0], updated_ns=envs[-1].time_ns)

    async def delete(self, namespace: str, name: str, *, target_digest: str = "", sync: bool = False,
                     actor: str) -> None:
        validate_name(namespace)

        def decide(tx: sqlite3.Cursor) -> list[Event]:
            current = _get(tx, namespace, name)
            if current is None:
                raise NotFound(f"image {name!r}: not found")
            if target_digest and current.target.digest != target_digest:
                raise FailedPrecondition(f"image {name!r}: target is {current.target.digest}, not {target_digest}")
            return [ImageDeleted(name=name, digest=current.target.digest)]

        await self.journal.append(decide, namespace=namespace, actor=actor)
        if sync and self.collect is not None:
            await self.collect(actor=actor)
