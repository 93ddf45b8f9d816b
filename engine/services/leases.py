"""containerd leases: commands, events and the ``leases`` projection.

A lease is a namespaced id with labels that protects resources from garbage collection while a client
works (a pull holds one until the image record exists). Resources are containerd's kinds: ``content``
(id = digest), ``ingests`` (id = ref) and ``snapshots/<snapshotter>`` (id = key). A lease whose
``containerd.io/gc.expire`` label (RFC 3339) lies in the past protects nothing and is deleted by the next
collection; ``containerd.io/gc.flat`` makes a lease protect only the listed resources, not what they
reference. Deleting a lease with ``sync`` runs a collection before returning (containerd's
SynchronousDelete).

Design choices: resource rows are removed with their lease in the same apply; adding a resource twice is
a no-op (no event), as containerd's bucket put is; removing an absent one is a no-op too.
"""

from __future__ import annotations

import builtins
import datetime as dt
import sqlite3
from collections.abc import Awaitable, Callable
from typing import ClassVar

import msgspec

from engine.errors import AlreadyExists, InvalidArgument, NotFound, Unimplemented
from engine.events.journal import Journal
from engine.events.projection import Projection
from engine.events.types import Envelope, Event
from engine.filters import Adaptor, parse_all
from engine.images.content import digests
from engine.services.namespaces import namespace_events, validate_labels, validate_name

LABEL_EXPIRE = "containerd.io/gc.expire"
LABEL_FLAT = "containerd.io/gc.flat"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_codec = (msgspec.json.Encoder(), msgspec.json.Decoder(dict[str, str]))


class Lease(msgspec.Struct, frozen=True):
    id: str
    created_ns: int
    labels: dict[str, str] = {}


class Resource(msgspec.Struct, frozen=True):
    id: str
    type: str


class LeaseCreated(Event, frozen=True):
    TYPE: ClassVar[str] = "lease.created"
    SUBJECT: ClassVar[str] = "id"
    id: str
    labels: dict[str, str] = {}


class LeaseDeleted(Event, frozen=True):
    TYPE: ClassVar[str] = "lease.deleted"
    SUBJECT: ClassVar[str] = "id"
    id: str


class LeaseResourceAdded(Event, frozen=True):
    TYPE: ClassVar[str] = "lease.resource_added"
    SUBJECT: ClassVar[str] = "lease"
    lease: str
    type: str
    resource: str


class LeaseResourceRemoved(Event, frozen=True):
    TYPE: ClassVar[str] = "lease.resource_removed"
    SUBJECT: ClassVar[str] = "lease"
    lease: str
    type: str
    resource: str


def apply(env: Envelope, tx: sqlite3.Cursor) -> None:
    ev, ns = env.event, env.namespace
    if isinstance(ev, LeaseCreated):
        tx.execute("INSERT INTO leases(namespace, id, labels, created_ns) VALUES (?, ?, ?, ?)",
                   (ns, ev.id, _codec[0].encode(ev.labels).decode(), env.time_ns))
    elif isinstance(ev, LeaseDeleted):
        tx.execute("DELETE FROM leases WHERE namespace = ? AND id = ?", (ns, ev.id))
        tx.execute("DELETE FROM lease_resources WHERE namespace = ? AND lease = ?", (ns, ev.id))
    elif isinstance(ev, LeaseResourceAdded):
        tx.execute("INSERT OR IGNORE INTO lease_resources(namespace, lease, type, id) VALUES (?, ?, ?, ?)",
                   (ns, ev.lease, ev.type, ev.resource))
    elif isinstance(ev, LeaseResourceRemoved):
        tx.execute("DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND type = ? AND id = ?",
                   (ns, ev.lease, ev.type, ev.resource))


PROJECTION = Projection(
    name="leases",
    tables=("leases", "lease_resources"),
    events=(LeaseCreated, LeaseDeleted, LeaseResourceAdded, LeaseResourceRemoved),
    apply=apply,
    namespaced_tables=("leases",),
)


def validate_resource(type_: str, id_: str) -> None:
    """containerd's rule: content ids are digests, ingests any ref, snapshots `snapshots/<name>`."""
    if not id_:
        raise InvalidArgument("lease resource id must not be empty")
    snapshots = type_.startswith("snapshots/") and len(type_) > len("snapshots/")
    if type_ not in ("content", "ingests") and not snapshots:
        raise Unimplemented(f"unsupported resource type {type_}")
    if type_ == "content":
        digests.parse(id_)


def parse_expire(value: str) -> int | None:
    """An RFC 3339 time as ns since the epoch, or None when it does not parse (then it never expires)."""
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # Python takes at most 6 fraction digits; containerd writes up to 9
    if "." in text:
        head, _, rest = text.partition(".")
        n = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(n, 6)].ljust(6, '0')}{rest[n:]}" if n else text
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return (when - _EPOCH) // dt.timedelta(microseconds=1) * 1000


def expired(labels: dict[str, str], now_ns: int) -> bool:
    value = labels.get(LABEL_EXPIRE)
    if value is None:
        return False
    when = parse_expire(value)
    return when is not None and when <= now_ns


def lease_row(tx: sqlite3.Cursor | sqlite3.Connection, namespace: str, id_: str) -> Lease | None:
    row = tx.execute("SELECT id, created_ns, labels FROM leases WHERE namespace = ? AND id = ?",
                     (namespace, id_)).fetchone()
    return Lease(row[0], row[1], _codec[1].decode(row[2])) if row else None


def require_lease(tx: sqlite3.Cursor | sqlite3.Connection, namespace: str, id_: str) -> Lease:
    lease = lease_row(tx, namespace, id_)
    if lease is None:
        raise NotFound(f"lease {id_!r}: not found")
    return lease


def _check_lease(tx: sqlite3.Cursor, namespace: str, id_: str) -> None:
    require_lease(tx, namespace, id_)


def lease_adaptor(lease: Lease) -> Adaptor:
    def adapt(path: tuple[str, ...]) -> str | None:
        if path == ("id",):
            return lease.id
        if len(path) >= 2 and path[0] == "labels":
            return lease.labels.get(".".join(path[1:]))
        return None

    return adapt


def validate_lease_id(id_: str) -> str:
    """containerd only asks a lease id to be given (ctr makes ones like `321579006--6n5`, `8317-_1Me`);
    we also refuse what could not be printed or stored sanely."""
    if not id_:
        raise InvalidArgument("lease id must be provided")
    if len(id_) > 256 or any(ch in id_ for ch in "\x00/\n\r"):
        raise InvalidArgument(f"invalid lease id {id_[:64]!r}: at most 256 characters, no NUL, '/' or newline")
    return id_


class LeaseService:
    """Local implementation of containerd's Leases service."""

    def __init__(self, journal: Journal, collect: Callable[[], Awaitable[object]] | None = None) -> None:
        self.journal = journal
        self.collect = collect  # the garbage collector, for delete(sync=True); set by whoever builds both

    async def create(self, namespace: str, id_: str, labels: dict[str, str] | None = None, *,
                     actor: str) -> Lease:
        validate_name(namespace)
        validate_lease_id(id_)
        labels = validate_labels(labels or {})

        def decide(tx: sqlite3.Cursor) -> list[Event]:
            if lease_row(tx, namespace, id_) is not None:
                raise AlreadyExists(f"lease {id_!r}: already exists")
            return [*namespace_events(tx, namespace), LeaseCreated(id=id_, labels=labels)]

        envs = await self.journal.append(decide, namespace=namespace, actor=actor)
        return Lease(id_, envs[-1].time_ns, labels)

    async def delete(self, namespace: str, id_: str, *, sync: bool = False, actor: str) -> None:
        validate_name(namespace)

        def check(tx: sqlite3.Cursor) -> None:
            require_lease(tx, namespace, id_)

        await self.journal.append([LeaseDeleted(id=id_)], namespace=namespace, actor=actor, check=check)
        if sync and self.collect is not None:
            await self.collect()

    async def get(self, namespace: str, id_: str) -> Lease:
        return await self.journal.run_read(lambda c: require_lease(c, namespace, id_))  # type: ignore[return-value]

    async def list(self, namespace: str, filters: list[str] | None = None) -> list[Lease]:
        flt = parse_all(filters or [])

        def q(conn: sqlite3.Connection) -> list[Lease]:
            rows = conn.execute("SELECT id, created_ns, labels FROM leases WHERE namespace = ? ORDER BY id",
                                (namespace,))
            leases = [Lease(i, c, _codec[1].decode(lb)) for i, c, lb in rows]
            return [le for le in leases if flt.match(lease_adaptor(le))]

        return await self.journal.run_read(q)  # type: ignore[return-value]

    async def add_resource(self, namespace: str, id_: str, resource: Resource, *, actor: str) -> None:
        """Protect `resource` with the lease; adding it again changes nothing (no event)."""
        validate_resource(resource.type, resource.id)
        if await self._has(namespace, id_, resource):
            return
        await self.journal.append([LeaseResourceAdded(lease=id_, type=resource.type, resource=resource.id)],
                                  namespace=namespace, actor=actor,
                                  check=lambda tx: _check_lease(tx, namespace, id_))

    async def delete_resource(self, namespace: str, id_: str, resource: Resource, *, actor: str) -> None:
        """Stop protecting `resource`; removing one the lease does not hold changes nothing (no event)."""
        validate_resource(resource.type, resource.id)
        if not await self._has(namespace, id_, resource):
            return
        await self.journal.append([LeaseResourceRemoved(lease=id_, type=resource.type, resource=resource.id)],
                                  namespace=namespace, actor=actor,
                                  check=lambda tx: _check_lease(tx, namespace, id_))

    async def list_resources(self, namespace: str, id_: str) -> builtins.list[Resource]:
        def q(conn: sqlite3.Connection) -> builtins.list[Resource]:
            require_lease(conn, namespace, id_)
            rows = conn.execute("SELECT id, type FROM lease_resources WHERE namespace = ? AND lease = ? "
                                "ORDER BY type, id", (namespace, id_))
            return [Resource(i, t) for i, t in rows]

        return await self.journal.run_read(q)  # type: ignore[return-value]

    async def _has(self, namespace: str, id_: str, resource: Resource) -> bool:
        """Whether the lease holds the resource; NotFound if there is no such lease."""

        def q(conn: sqlite3.Connection) -> bool:
            require_lease(conn, namespace, id_)
            return conn.execute("SELECT 1 FROM lease_resources WHERE namespace = ? AND lease = ? AND type = ? "
                                "AND id = ?", (namespace, id_, resource.type, resource.id)).fetchone() is not None

        return await self.journal.run_read(q)  # type: ignore[return-value]
