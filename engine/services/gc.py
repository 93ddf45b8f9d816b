"""Garbage collection of content, expired leases and stale ingests, with containerd's gc labels.

Mark: the live set starts from roots and follows references.

* Roots: resources of every lease that has not expired (``containerd.io/gc.expire`` in the future or
  absent; ``containerd.io/gc.flat`` leases protect their resources without following them), content and
  snapshots labelled ``containerd.io/gc.root``, and whatever an added ``Source`` says (the images
  projection adds its image targets through ``GarbageCollector.add_source``; containers their snapshots).
* References: a content's or snapshot's labels ``containerd.io/gc.ref.content`` and
  ``containerd.io/gc.ref.content.<anything>`` (value: a digest in the same namespace) and
  ``containerd.io/gc.ref.snapshot.<snapshotter>`` or ``...<snapshotter>/<anything>`` (value: a key);
  a snapshot references its parent.

Sweep: expired leases are deleted (``lease.deleted``), then every namespace's content rows not marked are
deleted (``content.deleted``, cause ``gc``), then blob files no namespace holds are removed through the
``content.blob_removal_requested`` → ``content.blob_removed`` bracket (so a file goes only after its event
committed), then, when an ``ingest_expiry_ns`` is given, ingests idle for longer that no live lease holds
and no writer has locked are aborted. A run that removed anything ends with ``gc.collected``.

Snapshots: committed snapshots that nothing marks (no image's config labels their chain, no container
uses them or a child of theirs, no lease holds them) are removed leaves first, through the snapshot
service (``snapshot.remove_requested`` → ``snapshot.removed``, cause ``gc``), each re-checked unmarked
inside the removal's transaction. Active snapshots and views are left alone (a client's own work), and so
is any snapshot younger than ``SNAPSHOT_GRACE_NS``: an unpack commits layers before the image that will
hold them is labelled.

Scheduling (``run_scheduler``): a collection runs shortly after something that can free space was
journaled (an image, lease, container or snapshot deleted, an image re-pointed) — several such events
within ``DEBOUNCE_S`` make one run — and every ``PERIOD_S`` for expired leases.

Design choices: the content deletions are decided inside the journal's write transaction (the mark is
recomputed there), so a lease or a reference added concurrently is never lost; the cheap first pass is a
plain read and a run with nothing to do appends nothing. Snapshots are marked (for their references to
content) but not swept here: the snapshotter service sweeps its own with ``marked`` from ``mark()``.
Ingests are never collected without an expiry: a resumable ingest is the client's to finish or abort.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast

from engine.errors import EngineError, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from engine.events.journal import Journal
from engine.events.projection import Projection
from engine.events.types import Envelope, Event
from engine.images.content import LocalStore, digests
from engine.services import content as _content
from engine.services import leases as _leases
from engine.services.content import ContentDeleted, ContentService, backend_ref
from engine.services.leases import LABEL_FLAT, LeaseDeleted, LeaseService, expired

log = logging.getLogger(__name__)

LABEL_ROOT = "containerd.io/gc.root"
LABEL_REF_CONTENT = "containerd.io/gc.ref.content"
LABEL_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
ORPHAN_INGEST_GRACE_NS = 60 * 1_000_000_000
SNAPSHOT_GRACE_NS = 60 * 1_000_000_000
DEBOUNCE_S = 0.5
PERIOD_S = 300.0
# what can leave something collectable behind (a collection's own events are not triggers)
TRIGGERS = frozenset({"image.deleted", "image.updated", "lease.deleted", "container.deleted", "snapshot.removed",
                      "lease.resource_deleted"})

Node = tuple[str, str, str]
"""(kind, namespace, key): ("content", ns, digest), ("snapshots/<name>", ns, key), ("ingests", ns, ref)."""


class GcCollected(Event, frozen=True):
    """The summary of a collection that removed something (each removal has its own event before it)."""

    TYPE: ClassVar[str] = "gc.collected"
    content: int = 0
    blobs: int = 0
    leases: int = 0
    ingests: int = 0
    snapshots: int = 0
    duration_ns: int = 0


def _no_apply(env: Envelope, tx: sqlite3.Cursor) -> None:
    return None


PROJECTION = Projection(name="gc", tables=(), events=(GcCollected,), apply=_no_apply)


class Source(Protocol):
    """Adds roots and references to the mark; called with the transaction's cursor (read only)."""

    def roots(self, tx: sqlite3.Cursor, now_ns: int) -> Iterable[tuple[Node, bool]]:
        """(node, follow): follow=False marks the node without following its references (flat leases)."""
        ...

    def refs(self, tx: sqlite3.Cursor, node: Node) -> Iterable[Node]: ...


def label_refs(namespace: str, labels: dict[str, str]) -> Iterator[Node]:
    """The nodes that containerd's gc.ref labels point at."""
    for key, value in labels.items():
        if key == LABEL_REF_CONTENT or key.startswith(LABEL_REF_CONTENT + "."):
            with contextlib.suppress(InvalidArgument):
                yield ("content", namespace, digests.validate(value))
        elif key.startswith(LABEL_REF_SNAPSHOT):
            snapshotter = key[len(LABEL_REF_SNAPSHOT):].split("/", 1)[0]
            if snapshotter and value:
                yield (f"snapshots/{snapshotter}", namespace, value)


def _table_exists(tx: sqlite3.Cursor, name: str) -> bool:
    return tx.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


class ContentSource:
    """Content labelled gc.root is a root; content references what its gc.ref labels name."""

    def roots(self, tx: sqlite3.Cursor, now_ns: int) -> Iterable[tuple[Node, bool]]:
        for ns, dgst, labels in tx.execute("SELECT namespace, digest, labels FROM content").fetchall():
            if LABEL_ROOT in json.loads(labels):
                yield ("content", ns, dgst), True

    def refs(self, tx: sqlite3.Cursor, node: Node) -> Iterable[Node]:
        if node[0] != "content":
            return ()
        row = tx.execute("SELECT labels FROM content WHERE namespace = ? AND digest = ?", node[1:]).fetchone()
        return label_refs(node[1], json.loads(row[0])) if row else ()


class LeaseSource:
    """Every resource of a lease that has not expired is a root (not followed for gc.flat leases)."""

    def roots(self, tx: sqlite3.Cursor, now_ns: int) -> Iterable[tuple[Node, bool]]:
        leases = {(ns, i): json.loads(lb) for ns, i, lb in tx.execute("SELECT namespace, id, labels FROM leases")}
        for ns, lease, type_, id_ in tx.execute("SELECT namespace, lease, type, id FROM lease_resources").fetchall():
            labels = leases.get((ns, lease))
            if labels is None or expired(labels, now_ns):
                continue
            yield (type_, ns, id_), LABEL_FLAT not in labels

    def refs(self, tx: sqlite3.Cursor, node: Node) -> Iterable[Node]:
        return ()


class SnapshotSource:
    """Snapshots (the snapshots projection, when present): gc.root roots; parent and gc.ref references."""

    def roots(self, tx: sqlite3.Cursor, now_ns: int) -> Iterable[tuple[Node, bool]]:
        if not _table_exists(tx, "snapshots"):
            return
        for ns, sn, key, labels in tx.execute("SELECT namespace, snapshotter, key, labels FROM snapshots").fetchall():
            if LABEL_ROOT in json.loads(labels or "{}"):
                yield (f"snapshots/{sn}", ns, key), True

    def refs(self, tx: sqlite3.Cursor, node: Node) -> Iterable[Node]:
        kind, ns, key = node
        if not kind.startswith("snapshots/") or not _table_exists(tx, "snapshots"):
            return []
        sn = kind[len("snapshots/"):]
        row = tx.execute("SELECT parent, labels FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
                         (ns, sn, key)).fetchone()
        if row is None:
            return []
        out = list(label_refs(ns, json.loads(row[1] or "{}")))
        if row[0]:
            out.append((kind, ns, row[0]))
        return out


class ContainerSource:
    """Every containerd container's snapshot (its snapshotter and snapshot key) is a root."""

    def roots(self, tx: sqlite3.Cursor, now_ns: int) -> Iterable[tuple[Node, bool]]:
        if not _table_exists(tx, "containers"):
            return
        for ns, record in tx.execute("SELECT namespace, record FROM containers").fetchall():
            c = json.loads(record)
            if c.get("snapshotter") and c.get("snapshot_key"):
                yield (f"snapshots/{c['snapshotter']}", ns, c["snapshot_key"]), True

    def refs(self, tx: sqlite3.Cursor, node: Node) -> Iterable[Node]:
        return ()


def mark(tx: sqlite3.Cursor, now_ns: int, sources: Iterable[Source]) -> set[Node]:
    """Every node reachable from the roots of `sources`."""
    sources = list(sources)
    marked: set[Node] = set()
    stack: list[Node] = []
    for src in sources:
        for node, follow in src.roots(tx, now_ns):
            if node not in marked:
                marked.add(node)
                if follow:
                    stack.append(node)
    while stack:
        node = stack.pop()
        for src in sources:
            for ref in src.refs(tx, node):
                if ref not in marked:
                    marked.add(ref)
                    stack.append(ref)
    return marked


@dataclass
class GcReport:
    content: list[tuple[str, str]]  # (namespace, digest) records deleted
    blobs: list[str]  # blob files removed
    leases: list[tuple[str, str]]  # (namespace, id) expired leases deleted
    ingests: list[tuple[str, str]]  # (namespace, ref) stale ingests aborted
    snapshots: list[tuple[str, str, str]] = field(default_factory=list)  # (namespace, snapshotter, key) removed
    duration_ns: int = 0


class _Nothing(EngineError):
    """The transaction found nothing left to delete (no event is appended)."""


class GarbageCollector:
    """Runs collections; `add_source` lets images (targets) and containers (snapshots) add their roots."""

    def __init__(self, journal: Journal, content: ContentService, *, sources: Iterable[Source] | None = None,
                 ingest_expiry_ns: int | None = None) -> None:
        self.journal = journal
        self.content = content
        self.sources: list[Source] = list(sources) if sources is not None else [
            ContentSource(), LeaseSource(), SnapshotSource(), ContainerSource()]
        self.ingest_expiry_ns = ingest_expiry_ns
        self.snapshots: Any = None  # the SnapshotService, when snapshots are to be swept (set by the daemon)
        self.snapshot_grace_ns = SNAPSHOT_GRACE_NS
        self._lock = asyncio.Lock()

    def add_source(self, source: Source) -> None:
        self.sources.append(source)

    async def marked(self) -> set[Node]:
        """The live set now (a consistent read)."""
        now = time.time_ns()
        return await self.journal.run_read(lambda c: mark(c.cursor(), now, self.sources))  # type: ignore[return-value]

    async def collect(self, *, actor: str = "gc", ingest_expiry_ns: int | None = None) -> GcReport:
        async with self._lock:  # one collection at a time (requested ones and the scheduler's)
            start = time.monotonic_ns()
            expiry = ingest_expiry_ns if ingest_expiry_ns is not None else self.ingest_expiry_ns
            report = GcReport([], [], [], [])
            await self._expire_leases(actor, report)
            if self.snapshots is not None:
                await self._sweep_snapshots(actor, report)
            await self._sweep_content(actor, report)
            await self._sweep_blobs(actor, report)
            if expiry is not None:
                await self._sweep_ingests(actor, expiry, report)
            report.duration_ns = time.monotonic_ns() - start
            if report.content or report.blobs or report.leases or report.ingests or report.snapshots:
                await self.journal.append([GcCollected(content=len(report.content), blobs=len(report.blobs),
                                                       leases=len(report.leases), ingests=len(report.ingests),
                                                       snapshots=len(report.snapshots),
                                                       duration_ns=report.duration_ns)],
                                          namespace="", actor=actor, cause="gc")
            return report

    async def run_scheduler(self, *, debounce_s: float = DEBOUNCE_S, period_s: float = PERIOD_S) -> None:
        """Collect soon after something collectable was journaled, and periodically; runs until cancelled."""

        def wanted(env: Envelope) -> bool:
            return env.type in TRIGGERS and env.cause != "gc"

        sub = self.journal.subscribe(match=wanted, internal=True)
        it = sub.__aiter__()
        # one pending __anext__ at a time, never cancelled: cancelling it (asyncio.wait_for's timeout) would
        # close the subscription's generator and end the scheduler after its first run
        pending: asyncio.Task | None = None

        async def next_event(timeout: float) -> bool:
            nonlocal pending
            if pending is None:
                pending = asyncio.ensure_future(it.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=timeout)
            if not done:
                return False
            task, pending = pending, None
            task.result()  # StopAsyncIteration when the journal closed
            return True

        try:
            while True:
                if await next_event(period_s):
                    await asyncio.sleep(debounce_s)
                    while await next_event(0):  # what arrived meanwhile: one run for the burst
                        pass
                try:
                    await self.collect()
                except EngineError as err:
                    log.warning("scheduled garbage collection failed: %s", err)
                except Exception:
                    log.exception("scheduled garbage collection failed")
        except StopAsyncIteration:
            return
        finally:
            if pending is not None:
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)
            await sub.aclose()

    def _unmarked_snapshots(self, tx: sqlite3.Cursor, now_ns: int) -> list[tuple[str, str, str]]:
        if not _table_exists(tx, "snapshots"):
            return []
        live = mark(tx, now_ns, self.sources)
        parents = {(ns, sn, p) for ns, sn, p in tx.execute(
            "SELECT namespace, snapshotter, parent FROM snapshots WHERE parent != ''")}
        out = []
        for ns, sn, key, created in tx.execute(
                "SELECT namespace, snapshotter, key, created_ns FROM snapshots "
                "WHERE kind = 'committed' AND state = 'ready' ORDER BY namespace, snapshotter, key"):
            if (f"snapshots/{sn}", ns, key) in live or (ns, sn, key) in parents:
                continue
            if now_ns - created < self.snapshot_grace_ns:
                continue
            out.append((ns, sn, key))
        return out

    async def _sweep_snapshots(self, actor: str, report: GcReport) -> None:
        """Remove unmarked committed leaves; a parent becomes a leaf for the next round."""
        while True:
            now = time.time_ns()
            plan = cast(list[tuple[str, str, str]],
                        await self.journal.run_read(lambda c, now=now: self._unmarked_snapshots(c.cursor(), now)))
            removed = 0
            for ns, sn, key in plan:

                def still(tx: sqlite3.Cursor, node: tuple[str, str, str] = (ns, sn, key)) -> None:
                    if node not in self._unmarked_snapshots(tx, time.time_ns()):
                        raise _Nothing("snapshot is in use again")

                try:
                    await self.snapshots.remove(sn, key, namespace=ns, actor=actor, cause="gc", check=still)
                except (_Nothing, NotFound, FailedPrecondition, InvalidArgument):
                    continue
                report.snapshots.append((ns, sn, key))
                removed += 1
            if not removed:
                return

    async def _expire_leases(self, actor: str, report: GcReport) -> None:
        now = time.time_ns()
        rows = await self.journal.run_read(lambda c: c.execute(
            "SELECT namespace, id, labels FROM leases ORDER BY namespace, id").fetchall())
        for ns, id_, labels in rows:  # type: ignore[attr-defined]
            if not expired(json.loads(labels), now):
                continue

            def check(tx: sqlite3.Cursor, ns: str = ns, id_: str = id_) -> None:
                row = tx.execute("SELECT labels FROM leases WHERE namespace = ? AND id = ?", (ns, id_)).fetchone()
                if row is None or not expired(json.loads(row[0]), now):
                    raise _Nothing("lease changed")

            with contextlib.suppress(_Nothing):
                await self.journal.append([LeaseDeleted(id=id_)], namespace=ns, actor=actor, cause="gc", check=check)
                report.leases.append((ns, id_))

    def _unmarked_content(self, tx: sqlite3.Cursor, now: int) -> dict[str, list[str]]:
        live = mark(tx, now, self.sources)
        out: dict[str, list[str]] = {}
        for ns, dgst in tx.execute("SELECT namespace, digest FROM content ORDER BY namespace, digest").fetchall():
            if ("content", ns, dgst) not in live:
                out.setdefault(ns, []).append(dgst)
        return out

    async def _sweep_content(self, actor: str, report: GcReport) -> None:
        now = time.time_ns()
        plan = await self.journal.run_read(lambda c: self._unmarked_content(c.cursor(), now))
        for ns in plan:  # type: ignore[attr-defined]
            deleted: list[str] = []

            def decide(tx: sqlite3.Cursor, ns: str = ns, deleted: list[str] = deleted) -> list[Event]:
                deleted.clear()
                deleted.extend(self._unmarked_content(tx, time.time_ns()).get(ns, []))
                if not deleted:
                    raise _Nothing("nothing to collect")
                return [ContentDeleted(digest=d) for d in deleted]

            with contextlib.suppress(_Nothing):
                await self.journal.append(decide, namespace=ns, actor=actor, cause="gc")
                report.content += [(ns, d) for d in deleted]

    async def _sweep_blobs(self, actor: str, report: GcReport) -> None:
        """Remove blob files no namespace holds (deleted now or earlier, or left by a crash)."""

        def held(conn: sqlite3.Connection) -> tuple[set[str], set[str]]:
            rows = {r[0] for r in conn.execute("SELECT DISTINCT digest FROM content")}
            expected = {r[0] for r in conn.execute("SELECT expected FROM content_ingests WHERE expected != ''")}
            return rows, expected

        rows, expected = cast(tuple[set[str], set[str]], await self.journal.run_read(held))
        on_disk = [b.digest for b in self.content.store.walk()]
        for dgst in sorted(set(on_disk) - rows - expected):
            # an ingest expecting this digest may be between its rename and its event: recover() commits it
            if await self.content.release_blob(dgst, actor=actor, cause="gc"):
                report.blobs.append(dgst)

    async def _sweep_ingests(self, actor: str, expiry_ns: int, report: GcReport) -> None:
        now = time.time_ns()

        def q(conn: sqlite3.Connection) -> tuple[list[tuple[str, str, int]], set[Node]]:
            rows = conn.execute("SELECT namespace, ref, updated_ns FROM content_ingests").fetchall()
            return rows, mark(conn.cursor(), now, self.sources)

        rows, live = cast(tuple[list[tuple[str, str, int]], set[Node]], await self.journal.run_read(q))
        known = set()
        for ns, ref, updated in rows:
            known.add(self.content.store.ingest_path(backend_ref(ns, ref)).name)
            if ("ingests", ns, ref) in live:
                continue
            try:
                st = self.content.store.status(backend_ref(ns, ref))
                updated = max(updated, st.updated_ns, _mtime_ns(self.content.store.ingest_path(backend_ref(ns, ref))))
            except NotFound:
                pass
            if now - updated < expiry_ns:
                continue
            try:
                await self.content.abort(ns, ref, actor=actor, cause="gc")
                report.ingests.append((ns, ref))
            except (Unavailable, NotFound):  # a writer holds it, or it went meanwhile
                continue
        for path in self.content.store.ingest_dirs():  # directories whose ingest_started never committed
            if path.name in known or now - _mtime_ns(path) < max(expiry_ns, ORPHAN_INGEST_GRACE_NS):
                continue
            with contextlib.suppress(Unavailable, OSError):
                self.content.store.remove_ingest_dir(path)
                log.info("removed ingest directory %s that had no record", path)


def _mtime_ns(path: os.PathLike[str] | str) -> int:
    try:
        newest = os.stat(path).st_mtime_ns
        data = os.path.join(path, "data")
        return max(newest, os.stat(data).st_mtime_ns) if os.path.exists(data) else newest
    except FileNotFoundError:
        return 0


@dataclass
class ContentServices:
    """The content store's services as the daemon holds them."""

    content: ContentService
    leases: LeaseService
    gc: GarbageCollector


async def open_content_services(journal: Journal, root: str | os.PathLike[str], *, actor: str,
                                ingest_expiry_ns: int | None = None) -> ContentServices:
    """Build the services over ``<root>/content`` and resolve what a crash left (``ContentService.recover``)."""
    store = LocalStore(Path(root) / "content")
    content = ContentService(journal, store)
    gc = GarbageCollector(journal, content, ingest_expiry_ns=ingest_expiry_ns)
    leases = LeaseService(journal, collect=gc.collect)
    done = await content.recover(actor=actor)
    if any(done.values()):
        log.warning("content store recovery: %s", done)
    return ContentServices(content, leases, gc)


__all__ = ["PROJECTIONS", "ContentServices", "GarbageCollector", "GcCollected", "GcReport", "Node", "Source",
           "label_refs", "mark", "open_content_services"]

# The projections of the content store, its leases and its collector, in the order they apply.
PROJECTIONS: tuple[Projection, ...] = (_leases.PROJECTION, _content.PROJECTION, PROJECTION)
