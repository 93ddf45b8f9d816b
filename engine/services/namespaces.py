"""containerd namespaces: commands, events and the ``namespaces`` projection.

A namespace is a name and labels. Names follow containerd's identifier rule (alphanumerics separated by
single ``.``, ``_`` or ``-``, at most 76 characters); a label's key and value together are at most 4096
bytes. Deleting a namespace that still holds objects (any row in a projection's ``namespaced_tables``)
fails with FailedPrecondition, as containerd's does.
"""

from __future__ import annotations

import re
import sqlite3
from typing import ClassVar

import msgspec

from engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from engine.events.journal import Journal
from engine.events.projection import Projection
from engine.events.types import Envelope, Event

_IDENT = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
MAX_IDENT = 76
MAX_LABEL = 4096


class Namespace(msgspec.Struct, frozen=True):
    name: str
    labels: dict[str, str] = {}


class NamespaceCreated(Event, frozen=True):
    TYPE: ClassVar[str] = "namespace.created"
    SUBJECT: ClassVar[str] = "name"
    name: str
    labels: dict[str, str] = {}


class NamespaceUpdated(Event, frozen=True):
    """The namespace's labels after the update (the whole set, not a diff)."""

    TYPE: ClassVar[str] = "namespace.updated"
    SUBJECT: ClassVar[str] = "name"
    name: str
    labels: dict[str, str] = {}


class NamespaceDeleted(Event, frozen=True):
    TYPE: ClassVar[str] = "namespace.deleted"
    SUBJECT: ClassVar[str] = "name"
    name: str


def validate_name(name: str) -> str:
    if not name:
        raise InvalidArgument("identifier must not be empty")
    if len(name) > MAX_IDENT:
        raise InvalidArgument(f"identifier {name!r} greater than maximum length ({MAX_IDENT} characters)")
    if not _IDENT.match(name):
        raise InvalidArgument(
            f"identifier {name!r} must match {_IDENT.pattern}: alphanumerics separated by single '.', '_' or '-'"
        )
    return name


def validate_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        if not key:
            raise InvalidArgument("label key must not be empty")
        size = len(key.encode()) + len(value.encode())
        if size > MAX_LABEL:
            raise InvalidArgument(
                f"label key and value length ({size} bytes) greater than maximum size ({MAX_LABEL} bytes)"
            )
    return dict(labels)


_labels_codec = (msgspec.json.Encoder(), msgspec.json.Decoder(dict[str, str]))


def apply(env: Envelope, tx: sqlite3.Cursor) -> None:
    ev = env.event
    if isinstance(ev, NamespaceCreated):
        tx.execute("INSERT INTO namespaces(name, labels, created_ns, updated_ns) VALUES (?, ?, ?, ?)",
                   (ev.name, _labels_codec[0].encode(ev.labels).decode(), env.time_ns, env.time_ns))
    elif isinstance(ev, NamespaceUpdated):
        tx.execute("UPDATE namespaces SET labels = ?, updated_ns = ? WHERE name = ?",
                   (_labels_codec[0].encode(ev.labels).decode(), env.time_ns, ev.name))
    elif isinstance(ev, NamespaceDeleted):
        tx.execute("DELETE FROM namespaces WHERE name = ?", (ev.name,))


PROJECTION = Projection(
    name="namespaces",
    tables=("namespaces",),
    events=(NamespaceCreated, NamespaceUpdated, NamespaceDeleted),
    apply=apply,
)


def _row(tx: sqlite3.Cursor | sqlite3.Connection, name: str) -> Namespace | None:
    row = tx.execute("SELECT name, labels FROM namespaces WHERE name = ?", (name,)).fetchone()
    return Namespace(row[0], _labels_codec[1].decode(row[1])) if row else None


def namespace_events(tx: sqlite3.Cursor, namespace: str) -> list[Event]:
    """A NamespaceCreated when the namespace has no row yet, for a command to append with its own events
    (containerd creates a namespace on first use, in the same transaction as the object)."""
    return [] if _row(tx, namespace) is not None else [NamespaceCreated(name=namespace)]


def update_labels(current: dict[str, str], labels: dict[str, str], paths: list[str] | None) -> dict[str, str]:
    """containerd's field-mask semantics: no paths replaces all labels; `labels` too; `labels.k` one key."""
    if not paths:
        return dict(labels)
    out = dict(current)
    for path in paths:
        if path == "labels":
            out = dict(labels)
        elif path.startswith("labels."):
            key = path[len("labels."):]
            if key in labels and labels[key] != "":
                out[key] = labels[key]
            else:
                out.pop(key, None)
        else:
            raise InvalidArgument(f"cannot update {path!r} field on namespace")
    return out


class NamespaceService:
    """Local implementation of containerd's Namespaces service; the transports adapt to it."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def create(self, name: str, labels: dict[str, str] | None = None, *, actor: str) -> Namespace:
        validate_name(name)
        labels = validate_labels(labels or {})

        def check(tx: sqlite3.Cursor) -> None:
            if _row(tx, name) is not None:
                raise AlreadyExists(f"namespace {name}: already exists")

        await self.journal.append([NamespaceCreated(name=name, labels=labels)], namespace=name, actor=actor,
                                  check=check)
        return Namespace(name, labels)

    async def get(self, name: str) -> Namespace:
        validate_name(name)
        ns = await self.journal.run_read(lambda conn: _row(conn, name))
        if ns is None:
            raise NotFound(f"namespace {name}: not found")
        return ns  # type: ignore[return-value]

    async def list(self) -> list[Namespace]:
        def q(conn: sqlite3.Connection) -> list[Namespace]:
            return [Namespace(n, _labels_codec[1].decode(lb))
                    for n, lb in conn.execute("SELECT name, labels FROM namespaces ORDER BY name")]

        return await self.journal.run_read(q)  # type: ignore[return-value]

    async def update(self, name: str, labels: dict[str, str] | None = None, *, paths: list[str] | None = None,
                     actor: str) -> Namespace:
        validate_name(name)
        validate_labels(labels or {})
        result: list[Namespace] = []

        def decide(tx: sqlite3.Cursor) -> list[Event]:
            current = _row(tx, name)
            if current is None:
                raise NotFound(f"namespace {name}: not found")
            new = validate_labels(update_labels(current.labels, labels or {}, paths))
            result.append(Namespace(name, new))
            return [NamespaceUpdated(name=name, labels=new)]

        await self.journal.append(decide, namespace=name, actor=actor)
        return result[0]

    async def delete(self, name: str, *, actor: str) -> None:
        validate_name(name)
        tables = self.journal.projections.namespaced_tables

        def check(tx: sqlite3.Cursor) -> None:
            if _row(tx, name) is None:
                raise NotFound(f"namespace {name}: not found")
            used = [t for t in tables if tx.execute(f"SELECT 1 FROM {t} WHERE namespace = ? LIMIT 1",
                                                    (name,)).fetchone()]
            if used:
                raise FailedPrecondition(f"namespace {name} must be empty, but it still has {', '.join(used)}")

        await self.journal.append([NamespaceDeleted(name=name)], namespace=name, actor=actor, check=check)
