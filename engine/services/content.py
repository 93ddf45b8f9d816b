"""containerd's content service over the local store: namespaced metadata as a projection of events.

Blobs are shared on disk (engine/images/content); the ``content`` table says which namespace holds which
digest and with which labels, as containerd's metadata store does over its local store. An ingest is a
row in ``content_ingests`` plus a directory on disk whose backend ref is ``<namespace>/<ref>`` (namespace
names cannot hold ``/``, so two namespaces never share an ingest).

Events and the side effects they bracket:

* ``content.ingest_started`` is appended when a ref is first opened (after its lock is taken);
  ``content.committed`` after the data was verified and renamed into ``blobs/``;
  ``content.ingest_aborted`` after the ingest directory was removed. An ingest row without its directory
  (a crash in between) is resolved by ``recover()``: committed if the expected blob is there, else aborted.
* ``content.deleted`` removes a namespace's row. A blob file is removed only when no namespace holds it,
  bracketed by ``content.blob_removal_requested`` (intent, refused while any row holds the digest) and
  ``content.blob_removed`` | ``content.blob_removal_failed``; ``recover()`` finishes intents left open.
* Commits and blob removals take one asyncio lock (``disk_lock``) around their disk step and their
  append, so a removal can never unlink a blob that a concurrent commit has just renamed into place.

A blob that is already on disk (another namespace committed it) makes the local commit AlreadyExists;
the metadata commit still records it in this namespace, as containerd's shared policy does; only a digest
this namespace already holds is AlreadyExists to the caller. A writer that commits an expected digest
present on disk without writing a byte records it at once (no copy), as containerd's shared policy does.
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
from typing import ClassVar, cast

import msgspec

from engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from engine.events.journal import Journal
from engine.events.projection import Projection
from engine.events.types import Envelope, Event
from engine.filters import Adaptor, parse_all
from engine.images.content import LocalStore, ReaderAt, Writer, digests, validate_ref
from engine.services.leases import LeaseResourceAdded, LeaseResourceRemoved, require_lease
from engine.services.namespaces import namespace_events, validate_labels, validate_name

_codec = (msgspec.json.Encoder(), msgspec.json.Decoder(dict[str, str]))
_BIG_WRITE = 64 * 1024  # writes larger than this go to a worker thread


class Info(msgspec.Struct, frozen=True):
    digest: str
    size: int
    created_ns: int
    updated_ns: int
    labels: dict[str, str] = {}


class Status(msgspec.Struct, frozen=True):
    ref: str
    offset: int
    total: int
    expected: str
    started_ns: int
    updated_ns: int


class ContentIngestStarted(Event, frozen=True):
    TYPE: ClassVar[str] = "content.ingest_started"
    SUBJECT: ClassVar[str] = "ref"
    ref: str
    expected: str = ""
    total: int = 0


class ContentIngestAborted(Event, frozen=True):
    TYPE: ClassVar[str] = "content.ingest_aborted"
    SUBJECT: ClassVar[str] = "ref"
    ref: str


class ContentCommitted(Event, frozen=True):
    TYPE: ClassVar[str] = "content.committed"
    SUBJECT: ClassVar[str] = "digest"
    digest: str
    size: int
    labels: dict[str, str] = {}
    ref: str = ""


class ContentLabelsUpdated(Event, frozen=True):
    """The content's labels after the update (the whole set)."""

    TYPE: ClassVar[str] = "content.labels_updated"
    SUBJECT: ClassVar[str] = "digest"
    digest: str
    labels: dict[str, str] = {}


class ContentDeleted(Event, frozen=True):
    TYPE: ClassVar[str] = "content.deleted"
    SUBJECT: ClassVar[str] = "digest"
    digest: str


class ContentBlobRemovalRequested(Event, frozen=True):
    TYPE: ClassVar[str] = "content.blob_removal_requested"
    SUBJECT: ClassVar[str] = "digest"
    digest: str


class ContentBlobRemoved(Event, frozen=True):
    TYPE: ClassVar[str] = "content.blob_removed"
    SUBJECT: ClassVar[str] = "digest"
    digest: str


class ContentBlobRemovalFailed(Event, frozen=True):
    TYPE: ClassVar[str] = "content.blob_removal_failed"
    SUBJECT: ClassVar[str] = "digest"
    digest: str
    error: str


def apply(env: Envelope, tx: sqlite3.Cursor) -> None:
    ev, ns, t = env.event, env.namespace, env.time_ns
    if isinstance(ev, ContentIngestStarted):
        tx.execute("INSERT OR REPLACE INTO content_ingests(namespace, ref, expected, total, started_ns, updated_ns)"
                   " VALUES (?, ?, ?, ?, ?, ?)", (ns, ev.ref, ev.expected, ev.total, t, t))
    elif isinstance(ev, ContentIngestAborted):
        tx.execute("DELETE FROM content_ingests WHERE namespace = ? AND ref = ?", (ns, ev.ref))
    elif isinstance(ev, ContentCommitted):
        if ev.ref:
            tx.execute("DELETE FROM content_ingests WHERE namespace = ? AND ref = ?", (ns, ev.ref))
        tx.execute("INSERT INTO content(namespace, digest, size, labels, created_ns, updated_ns) VALUES (?,?,?,?,?,?)",
                   (ns, ev.digest, ev.size, _codec[0].encode(ev.labels).decode(), t, t))
    elif isinstance(ev, ContentLabelsUpdated):
        tx.execute("UPDATE content SET labels = ?, updated_ns = ? WHERE namespace = ? AND digest = ?",
                   (_codec[0].encode(ev.labels).decode(), t, ns, ev.digest))
    elif isinstance(ev, ContentDeleted):
        tx.execute("DELETE FROM content WHERE namespace = ? AND digest = ?", (ns, ev.digest))
    elif isinstance(ev, ContentBlobRemovalRequested):
        tx.execute("INSERT OR REPLACE INTO content_removals(digest, requested_ns) VALUES (?, ?)", (ev.digest, t))
    elif isinstance(ev, (ContentBlobRemoved, ContentBlobRemovalFailed)):
        tx.execute("DELETE FROM content_removals WHERE digest = ?", (ev.digest,))


PROJECTION = Projection(
    name="content",
    tables=("content", "content_ingests", "content_removals"),
    events=(ContentIngestStarted, ContentIngestAborted, ContentCommitted, ContentLabelsUpdated, ContentDeleted,
            ContentBlobRemovalRequested, ContentBlobRemoved, ContentBlobRemovalFailed),
    apply=apply,
    namespaced_tables=("content", "content_ingests"),
)


class _StillReferenced(FailedPrecondition):
    """A blob removal found the digest held again (no event is appended)."""


def backend_ref(namespace: str, ref: str) -> str:
    return f"{namespace}/{ref}"


def content_row(tx: sqlite3.Cursor | sqlite3.Connection, namespace: str, digest: str) -> Info | None:
    row = tx.execute("SELECT digest, size, created_ns, updated_ns, labels FROM content "
                     "WHERE namespace = ? AND digest = ?", (namespace, digest)).fetchone()
    return Info(row[0], row[1], row[2], row[3], _codec[1].decode(row[4])) if row else None


def ingest_row(tx: sqlite3.Cursor | sqlite3.Connection, namespace: str, ref: str) -> tuple[str, int, int, int] | None:
    """(expected, total, started_ns, updated_ns) of a recorded ingest."""
    return tx.execute("SELECT expected, total, started_ns, updated_ns FROM content_ingests "
                      "WHERE namespace = ? AND ref = ?", (namespace, ref)).fetchone()


def update_labels(current: dict[str, str], labels: dict[str, str], paths: list[str] | None) -> dict[str, str]:
    """containerd's field masks for content: none or `labels` replaces all, `labels.<key>` sets or drops one."""
    if not paths:
        return dict(labels)
    out = dict(current)
    for path in paths:
        if path == "labels":
            out = dict(labels)
        elif path.startswith("labels."):
            key = path[len("labels."):]
            if labels.get(key, "") != "":
                out[key] = labels[key]
            else:
                out.pop(key, None)
        else:
            raise InvalidArgument(f"cannot update {path!r} field on content info")
    return out


def info_adaptor(info: Info) -> Adaptor:
    def adapt(path: tuple[str, ...]) -> str | None:
        if path == ("digest",):
            return info.digest
        if path == ("size",):
            return str(info.size)
        if len(path) >= 2 and path[0] == "labels":
            return info.labels.get(".".join(path[1:]))
        return None

    return adapt


def status_adaptor(st: Status) -> Adaptor:
    def adapt(path: tuple[str, ...]) -> str | None:
        if path == ("ref",):
            return st.ref
        if path == ("expected",):
            return st.expected or None
        return None

    return adapt


class ContentWriter:
    """An open ingest in one namespace: write, then commit (or close to resume later)."""

    def __init__(self, service: ContentService, namespace: str, ref: str, writer: Writer, lease: str,
                 actor: str) -> None:
        self.service = service
        self.namespace = namespace
        self.ref = ref
        self.lease = lease
        self.actor = actor
        self._w = writer

    @property
    def offset(self) -> int:
        return self._w.offset

    def digest(self) -> str:
        return self._w.digest()

    def status(self) -> Status:
        st = self._w.status()
        return Status(self.ref, st.offset, st.total, st.expected, st.started_ns, st.updated_ns)

    async def write(self, data: bytes, offset: int | None = None) -> int:
        if len(data) > _BIG_WRITE:
            return await asyncio.to_thread(self._w.write, data, offset)
        return self._w.write(data, offset)

    async def truncate(self, size: int) -> None:
        self._w.truncate(size)

    async def commit(self, size: int = 0, expected: str = "", labels: dict[str, str] | None = None) -> Info:
        """Verify and store; AlreadyExists if this namespace holds the digest already."""
        labels = validate_labels(labels or {})
        if expected:
            digests.parse(expected)
        svc, ns, ref, lease = self.service, self.namespace, self.ref, self.lease
        want = expected or self._w.expected
        shared = self._w.offset == 0 and bool(want)
        if not shared:
            await asyncio.to_thread(self._w.verify, size, expected)  # the slow part (fsync), outside the lock
        async with svc.disk_lock:
            present = svc.store.info(want) if shared and svc.store.exists(want) else None
            if present is not None and size in (0, present.size):
                # shared content: the blob is on disk already (another namespace's), nothing was written;
                # record it here without a copy, as containerd's shared content policy does
                self._w.discard()
                dgst, got_size = want, present.size
            else:
                try:
                    blob = await asyncio.to_thread(self._w.commit, size, expected)
                    dgst, got_size = blob.digest, blob.size
                except AlreadyExists:
                    dgst, got_size = self._w.digest(), self._w.offset
            held: list[bool] = []

            def decide(tx: sqlite3.Cursor) -> list[Event]:
                events: list[Event] = namespace_events(tx, ns)
                if content_row(tx, ns, dgst) is not None:
                    held.append(True)
                    if ingest_row(tx, ns, ref) is None:
                        raise AlreadyExists(f"content {dgst}: already exists")
                    return [*events, ContentIngestAborted(ref=ref)]
                events.append(ContentCommitted(digest=dgst, size=got_size, labels=labels, ref=ref))
                if lease and tx.execute("SELECT 1 FROM leases WHERE namespace = ? AND id = ?",
                                        (ns, lease)).fetchone():
                    events += [LeaseResourceAdded(lease=lease, type="content", resource=dgst),
                               LeaseResourceRemoved(lease=lease, type="ingests", resource=ref)]
                return events

            envs = await svc.journal.append(decide, namespace=ns, actor=self.actor)
        if held:
            raise AlreadyExists(f"content {dgst}: already exists")
        return Info(dgst, got_size, envs[-1].time_ns, envs[-1].time_ns, labels)

    async def close(self) -> None:
        """Release the ref's lock; the ingest stays to be resumed (or aborted)."""
        self._w.close()

    async def __aenter__(self) -> ContentWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class ContentService:
    """Local implementation of containerd's Content service (namespaced metadata over a LocalStore)."""

    def __init__(self, journal: Journal, store: LocalStore) -> None:
        self.journal = journal
        self.store = store
        self.disk_lock = asyncio.Lock()

    # ---- ingest ------------------------------------------------------------------------------

    async def writer(self, namespace: str, ref: str, *, total: int = 0, expected: str = "", lease: str = "",
                     actor: str) -> ContentWriter:
        """Open or resume the ingest `ref`; Unavailable `ref ... locked` while another writer holds it."""
        validate_name(namespace)
        validate_ref(ref)
        if expected:
            digests.parse(expected)
        if total < 0:
            raise InvalidArgument(f"ingest {ref}: negative expected size {total}")

        def pre(conn: sqlite3.Connection) -> tuple[str, int, int, int] | None:
            if expected and content_row(conn, namespace, expected) is not None:
                raise AlreadyExists(f"content {expected}: already exists")
            if lease:
                require_lease(conn, namespace, lease)
            return ingest_row(conn, namespace, ref)

        row = await self.journal.run_read(pre)
        if row is not None:
            expected = expected or row[0]  # type: ignore[index]
            total = total or row[1]  # type: ignore[index]
        try:
            w = await asyncio.to_thread(self.store.writer, backend_ref(namespace, ref), total=total,
                                        expected=expected)
        except Unavailable as err:
            raise Unavailable(f"ref {ref} locked") from err
        try:
            def decide(tx: sqlite3.Cursor) -> list[Event]:
                events: list[Event] = []
                if ingest_row(tx, namespace, ref) is None:
                    events += [*namespace_events(tx, namespace),
                               ContentIngestStarted(ref=ref, expected=expected, total=w.total)]
                if lease:
                    require_lease(tx, namespace, lease)
                    events.append(LeaseResourceAdded(lease=lease, type="ingests", resource=ref))
                return events

            if row is None or lease:
                await self.journal.append(decide, namespace=namespace, actor=actor)
        except BaseException:
            w.close()
            raise
        return ContentWriter(self, namespace, ref, w, lease, actor)

    async def status(self, namespace: str, ref: str) -> Status:
        validate_ref(ref)
        row = await self.journal.run_read(lambda c: ingest_row(c, namespace, ref))
        if row is None:
            raise NotFound(f"ingest {ref}: not found")
        return self._status(namespace, ref, row)  # type: ignore[arg-type]

    def _status(self, namespace: str, ref: str, row: tuple[str, int, int, int]) -> Status:
        try:
            st = self.store.status(backend_ref(namespace, ref))
            return Status(ref, st.offset, st.total or row[1], row[0], st.started_ns or row[2],
                          max(st.updated_ns, row[3]))
        except NotFound:
            return Status(ref, 0, row[1], row[0], row[2], row[3])

    async def list_statuses(self, namespace: str, filters: list[str] | None = None) -> list[Status]:
        flt = parse_all(filters or [])
        rows = cast(builtins.list[tuple[str, str, int, int, int]], await self.journal.run_read(lambda c: c.execute(
            "SELECT ref, expected, total, started_ns, updated_ns FROM content_ingests WHERE namespace = ? "
            "ORDER BY ref", (namespace,)).fetchall()))
        out = [self._status(namespace, r[0], (r[1], r[2], r[3], r[4])) for r in rows]
        return [s for s in out if flt.match(status_adaptor(s))]

    async def abort(self, namespace: str, ref: str, *, actor: str, cause: str = "api") -> None:
        """Remove the ingest (Unavailable while a writer holds it), then record it."""
        validate_ref(ref)
        row = await self.journal.run_read(lambda c: ingest_row(c, namespace, ref))
        if row is None:
            raise NotFound(f"ingest {ref}: not found")
        try:
            await asyncio.to_thread(self.store.abort, backend_ref(namespace, ref))
        except NotFound:
            pass
        except Unavailable as err:
            raise Unavailable(f"ref {ref} locked") from err
        await self.journal.append([ContentIngestAborted(ref=ref)], namespace=namespace, actor=actor, cause=cause,
                                  check=lambda tx: _require_ingest(tx, namespace, ref))

    # ---- committed content -------------------------------------------------------------------

    async def info(self, namespace: str, digest: str) -> Info:
        digests.parse(digest)
        info = await self.journal.run_read(lambda c: content_row(c, namespace, digest))
        if info is None:
            raise NotFound(f"content digest {digest}: not found")
        return info  # type: ignore[return-value]

    async def update(self, namespace: str, digest: str, labels: dict[str, str] | None = None, *,
                     paths: list[str] | None = None, actor: str) -> Info:
        digests.parse(digest)
        validate_labels(labels or {})
        out: list[Info] = []

        def decide(tx: sqlite3.Cursor) -> list[Event]:
            cur = content_row(tx, namespace, digest)
            if cur is None:
                raise NotFound(f"content digest {digest}: not found")
            new = validate_labels(update_labels(cur.labels, labels or {}, paths))
            out.append(Info(cur.digest, cur.size, cur.created_ns, cur.updated_ns, new))
            return [ContentLabelsUpdated(digest=digest, labels=new)]

        envs = await self.journal.append(decide, namespace=namespace, actor=actor)
        i = out[0]
        return Info(i.digest, i.size, i.created_ns, envs[-1].time_ns, i.labels)

    async def list(self, namespace: str, filters: list[str] | None = None) -> list[Info]:
        """containerd's Walk: every content of the namespace matching any filter (digest, size, labels.*)."""
        flt = parse_all(filters or [])

        def q(conn: sqlite3.Connection) -> list[Info]:
            rows = conn.execute("SELECT digest, size, created_ns, updated_ns, labels FROM content "
                                "WHERE namespace = ? ORDER BY digest", (namespace,))
            return [Info(d, s, c, u, _codec[1].decode(lb)) for d, s, c, u, lb in rows]

        infos = await self.journal.run_read(q)
        return [i for i in infos if flt.match(info_adaptor(i))]  # type: ignore[attr-defined]

    async def reader_at(self, namespace: str, digest: str) -> ReaderAt:
        await self.info(namespace, digest)
        return self.store.reader_at(digest)

    async def read(self, namespace: str, digest: str) -> bytes:
        with await self.reader_at(namespace, digest) as r:
            return b"".join(r.chunks())

    async def delete(self, namespace: str, digest: str, *, actor: str, cause: str = "api") -> None:
        """Remove the namespace's record; the blob goes too when no namespace holds it any more."""
        digests.parse(digest)

        def check(tx: sqlite3.Cursor) -> None:
            if content_row(tx, namespace, digest) is None:
                raise NotFound(f"content digest {digest}: not found")

        await self.journal.append([ContentDeleted(digest=digest)], namespace=namespace, actor=actor, cause=cause,
                                  check=check)
        await self.release_blob(digest, actor=actor, cause=cause)

    async def release_blob(self, digest: str, *, actor: str, cause: str = "api") -> bool:
        """Remove the blob file if no namespace holds the digest: intent, unlink, outcome. True if removed."""

        def check(tx: sqlite3.Cursor) -> None:
            if tx.execute("SELECT 1 FROM content WHERE digest = ? LIMIT 1", (digest,)).fetchone():
                raise _StillReferenced(f"content {digest} is held by a namespace")

        async with self.disk_lock:
            try:
                await self.journal.append([ContentBlobRemovalRequested(digest=digest)], namespace="", actor=actor,
                                          cause=cause, check=check)
            except _StillReferenced:
                return False
            return await self._finish_removal(digest, actor=actor, cause=cause)

    async def _finish_removal(self, digest: str, *, actor: str, cause: str) -> bool:
        try:
            await asyncio.to_thread(self.store.delete, digest)
        except NotFound:
            pass
        except OSError as err:
            await self.journal.append([ContentBlobRemovalFailed(digest=digest, error=str(err))], namespace="",
                                      actor=actor, cause=cause)
            return False
        await self.journal.append([ContentBlobRemoved(digest=digest)], namespace="", actor=actor, cause=cause)
        return True

    # ---- recovery ----------------------------------------------------------------------------

    async def recover(self, *, actor: str) -> dict[str, int]:
        """Resolve intents left by a crash: pending blob removals, ingest rows whose directory is gone."""
        done = {"removals": 0, "committed": 0, "aborted": 0}
        pending = await self.journal.run_read(lambda c: [r[0] for r in c.execute(
            "SELECT digest FROM content_removals ORDER BY digest")])
        async with self.disk_lock:
            for dgst in pending:  # type: ignore[attr-defined]
                if await self._finish_removal(dgst, actor=actor, cause="recover"):
                    done["removals"] += 1
        ingests = await self.journal.run_read(lambda c: c.execute(
            "SELECT namespace, ref, expected FROM content_ingests ORDER BY namespace, ref").fetchall())
        for ns, ref, expected in ingests:  # type: ignore[attr-defined]
            if self.store.ingest_path(backend_ref(ns, ref)).is_dir():
                continue
            size = self.store.info(expected).size if expected and self.store.exists(expected) else -1

            def decide(tx: sqlite3.Cursor, ns: str = ns, ref: str = ref, expected: str = expected,
                       size: int = size) -> list[Event]:
                if size >= 0 and content_row(tx, ns, expected) is None:
                    done["committed"] += 1
                    return [ContentCommitted(digest=expected, size=size, ref=ref)]
                done["aborted"] += 1
                return [ContentIngestAborted(ref=ref)]

            await self.journal.append(decide, namespace=ns, actor=actor, cause="recover")
        return done


def _require_ingest(tx: sqlite3.Cursor, namespace: str, ref: str) -> None:
    if ingest_row(tx, namespace, ref) is None:
        raise NotFound(f"ingest {ref}: not found")
