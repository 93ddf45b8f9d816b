"""containerd containers: metadata records (commands, events, the ``containers`` projection).

A container here is containerd's: metadata only — id, labels, image, runtime name and options, the OCI
spec (an Any: type URL + bytes, the spec's JSON), snapshotter and snapshot key, extensions, sandbox. The
task (the running process) is a separate service. Validation and field-mask updates follow containerd's
metadata store: runtime name and spec are required, a snapshot key needs a snapshotter, snapshotter and
runtime name are immutable, Update with no paths replaces labels, spec, extensions, image and snapshot
key. Creating a container in a namespace that does not exist yet creates the namespace in the same
append, as containerd does on first use.
"""

from __future__ import annotations

import sqlite3
from typing import ClassVar

import msgspec

from engine.errors import AlreadyExists, InvalidArgument, NotFound
from engine.events.journal import Journal
from engine.events.projection import Projection
from engine.events.types import Envelope, Event
from engine.filters import Filter, mapping_adaptor
from engine.services.namespaces import namespace_events, validate_labels, validate_name

OCI_SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"


class AnyBlob(msgspec.Struct, frozen=True):
    """A protobuf Any kept as it came: type URL and bytes."""

    type_url: str = ""
    value: bytes = b""


class Runtime(msgspec.Struct, frozen=True):
    name: str = ""
    options: AnyBlob | None = None


class Container(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    labels: dict[str, str] = {}
    image: str = ""
    runtime: Runtime = Runtime()
    spec: AnyBlob | None = None
    snapshotter: str = ""
    snapshot_key: str = ""
    extensions: dict[str, AnyBlob] = {}
    sandbox: str = ""
    created_ns: int = 0
    updated_ns: int = 0


class ContainerCreated(Event, frozen=True):
    TYPE: ClassVar[str] = "container.created"
    SUBJECT: ClassVar[str] = "id"
    id: str
    container: Container


class ContainerUpdated(Event, frozen=True):
    """The whole record after the update, and the field paths the caller changed."""

    TYPE: ClassVar[str] = "container.updated"
    SUBJECT: ClassVar[str] = "id"
    id: str
    container: Container
    paths: list[str] = []


class ContainerDeleted(Event, frozen=True):
    TYPE: ClassVar[str] = "container.deleted"
    SUBJECT: ClassVar[str] = "id"
    id: str


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Container)


def apply(env: Envelope, tx: sqlite3.Cursor) -> None:
    ev = env.event
    if isinstance(ev, ContainerCreated):
        c = msgspec.structs.replace(ev.container, created_ns=env.time_ns, updated_ns=env.time_ns)
        tx.execute("INSERT INTO containers(namespace, id, record, created_ns, updated_ns) VALUES (?, ?, ?, ?, ?)",
                   (env.namespace, ev.id, _enc.encode(c).decode(), env.time_ns, env.time_ns))
    elif isinstance(ev, ContainerUpdated):
        row = tx.execute("SELECT created_ns FROM containers WHERE namespace = ? AND id = ?",
                         (env.namespace, ev.id)).fetchone()
        c = msgspec.structs.replace(ev.container, created_ns=row[0], updated_ns=env.time_ns)
        tx.execute("UPDATE containers SET record = ?, updated_ns = ? WHERE namespace = ? AND id = ?",
                   (_enc.encode(c).decode(), env.time_ns, env.namespace, ev.id))
    elif isinstance(ev, ContainerDeleted):
        tx.execute("DELETE FROM containers WHERE namespace = ? AND id = ?", (env.namespace, ev.id))


PROJECTION = Projection(
    name="containers",
    tables=("containers",),
    events=(ContainerCreated, ContainerUpdated, ContainerDeleted),
    apply=apply,
    namespaced_tables=("containers",),
)


def validate(c: Container) -> Container:
    try:
        validate_name(c.id)
    except InvalidArgument as err:
        raise InvalidArgument(f"container.ID: {err}") from None
    for key in c.extensions:
        if not key:
            raise InvalidArgument("container.Extension keys must not be zero-length")
    validate_labels(c.labels)
    if not c.runtime.name:
        raise InvalidArgument("must specify a runtime name")
    if c.spec is None:
        raise InvalidArgument("container.Spec must not be nil")
    if c.snapshot_key and not c.snapshotter:
        raise InvalidArgument("container.Snapshotter must be set if container.SnapshotKey is set")
    return c


def merge(current: Container, new: Container, paths: list[str]) -> Container:
    """containerd's field-mask update of a container record."""
    if not paths:
        if new.snapshotter != current.snapshotter:
            raise InvalidArgument("container.Snapshotter field is immutable")
        if new.runtime.name != current.runtime.name:
            raise InvalidArgument("container.Runtime.Name field is immutable")
        paths = ["labels", "spec", "extensions", "image", "snapshotkey"]
    labels, extensions = dict(current.labels), dict(current.extensions)
    fields: dict[str, object] = {}
    for path in paths:
        if path.startswith("labels."):
            key = path[len("labels."):]
            if new.labels.get(key):
                labels[key] = new.labels[key]
            else:
                labels.pop(key, None)
        elif path.startswith("extensions."):
            key = path[len("extensions."):]
            if key in new.extensions:
                extensions[key] = new.extensions[key]
            else:
                extensions.pop(key, None)
        elif path == "labels":
            labels = dict(new.labels)
        elif path == "extensions":
            extensions = dict(new.extensions)
        elif path == "spec":
            fields["spec"] = new.spec
        elif path == "image":
            fields["image"] = new.image
        elif path == "snapshotkey":
            fields["snapshot_key"] = new.snapshot_key
        else:
            raise InvalidArgument(f'cannot update "{path}" field on "{current.id}"')
    return validate(msgspec.structs.replace(current, labels=labels, extensions=extensions, **fields))


def _get(tx: sqlite3.Cursor | sqlite3.Connection, namespace: str, id: str) -> Container | None:
    row = tx.execute("SELECT record FROM containers WHERE namespace = ? AND id = ?", (namespace, id)).fetchone()
    return _dec.decode(row[0]) if row else None


def adaptor(c: Container):  # type: ignore[no-untyped-def]
    return mapping_adaptor({"id": c.id, "image": c.image, "runtime": {"name": c.runtime.name},
                            "snapshotter": c.snapshotter, "labels": dict(c.labels)})


class ContainerService:
    """Local implementation of containerd's Containers service."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def create(self, namespace: str, c: Container, *, actor: str) -> Container:
        validate_name(namespace)
        validate(c)
        c = msgspec.structs.replace(c, created_ns=0, updated_ns=0)

        def decide(tx: sqlite3.Cursor) -> list[Event]:
            if _get(tx, namespace, c.id) is not None:
                raise AlreadyExists(f"container {c.id!r}: already exists")
            return [*namespace_events(tx, namespace), ContainerCreated(id=c.id, container=c)]

        envs = await self.journal.append(decide, namespace=namespace, actor=actor)
        return msgspec.structs.replace(c, created_ns=envs[-1].time_ns, updated_ns=envs[-1].time_ns)

    async def get(self, namespace: str, id: str) -> Container:
        validate_name(namespace)
        c = await self.journal.run_read(lambda conn: _get(conn, namespace, id))
        if c is None:
            raise NotFound(f"container {id!r} in namespace {namespace!r}: not found")
        return c  # type: ignore[return-value]

    async def list(self, namespace: str, flt: Filter | None = None) -> list[Container]:
        validate_name(namespace)

        def q(conn: sqlite3.Connection) -> list[Container]:
            rows = conn.execute("SELECT record FROM containers WHERE namespace = ? ORDER BY id", (namespace,))
            return [_dec.decode(r[0]) for r in rows]

        items: list[Container] = await self.journal.run_read(q)  # type: ignore[assignment]
        return [c for c in items if flt is None or flt.match(adaptor(c))]

    async def update(self, namespace: str, c: Container, paths: list[str] | None = None, *,
                     actor: str) -> Container:
        validate_name(namespace)
        result: list[Container] = []

        def decide(tx: sqlite3.Cursor) -> list[Event]:
            current = _get(tx, namespace, c.id)
            if current is None:
                raise NotFound(f"container {c.id!r}: not found")
            updated = merge(current, c, list(paths or []))
            result.append(updated)
            return [ContainerUpdated(id=c.id, container=updated, paths=list(paths or []))]

        envs = await self.journal.append(decide, namespace=namespace, actor=actor)
        return msgspec.structs.replace(result[0], updated_ns=envs[-1].time_ns)

    async def delete(self, namespace: str, id: str, *, actor: str) -> None:
        validate_name(namespace)

        def check(tx: sqlite3.Cursor) -> None:
            if _get(tx, namespace, id) is None:
                raise NotFound(f"container {id!r}: not found")

        await self.journal.append([ContainerDeleted(id=id)], namespace=namespace, actor=actor, check=check)
