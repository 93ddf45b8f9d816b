"""containerd's Snapshots service over the journal: metadata in the ``snapshots`` projection, files in a backend.

Vocabulary and rules follow containerd (core/snapshots, core/metadata/snapshot.go): Prepare makes an active
snapshot called `key` over a committed `parent`, View a read-only one, Commit turns an active `key` into a
committed `name`, Remove refuses a snapshot that still has children (FailedPrecondition), Update changes
labels only (field paths ``labels`` / ``labels.<k>``), Usage of an active snapshot is measured on its upper
dir and that of a committed one is fixed at commit, Walk filters with containerd's filter syntax. Rows are
per containerd namespace; backing ids are per snapshotter and never reused.

Side effects on disk are bracketed by events, so a crash at any point is found by ``recover``:

    snapshot.prepare_requested  (row 'preparing')  → mkdir/copy → snapshot.prepared (row 'ready')
                                                                 | snapshot.prepare_failed (row gone)
    snapshot.remove_requested   (row 'removing')   → rm -r      → snapshot.removed (row gone)
    snapshot.committed, snapshot.labels_updated    metadata only

``recover`` deletes the directories of 'preparing' rows (prepare_failed), finishes 'removing' rows
(removed), removes the active ``extract-…`` snapshots of an unpack the daemon lost (removed), drops rows
whose directories vanished (removed, reason ``missing``, children first), deletes directories that no
row names, and empties the backends' staging directories (engine/images/unpacker.py). ``apply`` never
reads the filesystem, so the table is rebuilt by replay.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import msgspec

from engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from engine.events.journal import Journal
from engine.events.projection import Projection
from engine.events.types import Envelope, Event
from engine.images.snapshots import Backend, Info, Kind, Mount, Usage
from engine.images.snapshots.filters import compile_filters, matches
from engine.services.namespaces import validate_name

_enc = msgspec.json.Encoder()
_dec_labels = msgspec.json.Decoder(dict[str, str])
MAX_LABEL = 4096


class SnapshotPrepareRequested(Event, frozen=True):
    """Intent: an active snapshot (kind active) or a view (kind view) is about to get directories `sid`."""

    TYPE: ClassVar[str] = "snapshot.prepare_requested"
    SUBJECT: ClassVar[str] = "key"
    snapshotter: str
    key: str
    sid: str
    kind: str
    parent: str = ""
    labels: dict[str, str] = {}


class SnapshotPrepared(Event, frozen=True):
    TYPE: ClassVar[str] = "snapshot.prepared"
    SUBJECT: ClassVar[str] = "key"
    snapshotter: str
    key: str
    sid: str


class SnapshotPrepareFailed(Event, frozen=True):
    TYPE: ClassVar[str] = "snapshot.prepare_failed"
    SUBJECT: ClassVar[str] = "key"
    snapshotter: str
    key: str
    sid: str
    error: str = ""


class SnapshotCommitted(Event, frozen=True):
    """The active snapshot `key` became the committed snapshot `name` (same directories, now immutable)."""

    TYPE: ClassVar[str] = "snapshot.committed"
    SUBJECT: ClassVar[str] = "name"
    snapshotter: str
    key: str
    name: str
    sid: str
    labels: dict[str, str] = {}
    size: int = 0
    inodes: int = 0


class SnapshotRemoveRequested(Event, frozen=True):
    TYPE: ClassVar[str] = "snapshot.remove_requested"
    SUBJECT: ClassVar[str] = "key"
    snapshotter: str
    key: str
    sid: str


class SnapshotRemoved(Event, frozen=True):
    """The row is gone; `reason` is '' for a removal that was asked for, 'missing' when recovery found no files."""

    TYPE: ClassVar[str] = "snapshot.removed"
    SUBJECT: ClassVar[str] = "key"
    snapshotter: str
    key: str
    sid: str
    reason: str = ""


class SnapshotLabelsUpdated(Event, frozen=True):
    """The snapshot's labels after the update (the whole set)."""

    TYPE: ClassVar[str] = "snapshot.labels_updated"
    SUBJECT: ClassVar[str] = "key"
    snapshotter: str
    key: str
    labels: dict[str, str] = {}


EVENTS = (SnapshotPrepareRequested, SnapshotPrepared, SnapshotPrepareFailed, SnapshotCommitted,
          SnapshotRemoveRequested, SnapshotRemoved, SnapshotLabelsUpdated)


def apply(env: Envelope, tx: sqlite3.Cursor) -> None:
    ev, ns, now = env.event, env.namespace, env.time_ns
    if isinstance(ev, SnapshotPrepareRequested):
        tx.execute("INSERT INTO snapshots(namespace, snapshotter, key, sid, kind, parent, labels, state, created_ns,"
                   " updated_ns) VALUES (?,?,?,?,?,?,?,'preparing',?,?)",
                   (ns, ev.snapshotter, ev.key, ev.sid, ev.kind, ev.parent, _enc.encode(ev.labels).decode(), now,
                    now))
        tx.execute("INSERT INTO snapshot_ids(snapshotter, last) VALUES (?, ?) ON CONFLICT(snapshotter)"
                   " DO UPDATE SET last = max(last, excluded.last)", (ev.snapshotter, int(ev.sid)))
    elif isinstance(ev, SnapshotPrepared):
        tx.execute("UPDATE snapshots SET state = 'ready', updated_ns = ? WHERE namespace = ? AND snapshotter = ?"
                   " AND key = ?", (now, ns, ev.snapshotter, ev.key))
    elif isinstance(ev, (SnapshotPrepareFailed, SnapshotRemoved)):
        tx.execute("DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
                   (ns, ev.snapshotter, ev.key))
    elif isinstance(ev, SnapshotCommitted):
        tx.execute("UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, size = ?, inodes = ?,"
                   " created_ns = ?, updated_ns = ? WHERE namespace = ? AND snapshotter = ? AND key = ?",
                   (ev.name, _enc.encode(ev.labels).decode(), ev.size, ev.inodes, now, now, ns, ev.snapshotter,
                    ev.key))
    elif isinstance(ev, SnapshotRemoveRequested):
        tx.execute("UPDATE snapshots SET state = 'removing', updated_ns = ? WHERE namespace = ? AND snapshotter = ?"
                   " AND key = ?", (now, ns, ev.snapshotter, ev.key))
    elif isinstance(ev, SnapshotLabelsUpdated):
        tx.execute("UPDATE snapshots SET labels = ?, updated_ns = ? WHERE namespace = ? AND snapshotter = ?"
                   " AND key = ?", (_enc.encode(ev.labels).decode(), now, ns, ev.snapshotter, ev.key))


PROJECTION = Projection(name="snapshots", tables=("snapshots", "snapshot_ids"), events=EVENTS, apply=apply,
                        namespaced_tables=("snapshots",))


@dataclass(frozen=True)
class _Row:
    key: str
    sid: str
    kind: Kind
    parent: str
    labels: dict[str, str]
    state: str
    size: int
    inodes: int
    created_ns: int
    updated_ns: int

    def info(self) -> Info:
        return Info(kind=self.kind, name=self.key, parent=self.parent, labels=self.labels,
                    created_ns=self.created_ns, updated_ns=self.updated_ns)


_COLS = "key, sid, kind, parent, labels, state, size, inodes, created_ns, updated_ns"


def _mk(r: tuple) -> _Row:
    return _Row(r[0], r[1], Kind(r[2]), r[3], _dec_labels.decode(r[4]), r[5], r[6], r[7], r[8], r[9])


def _get(db: sqlite3.Cursor | sqlite3.Connection, ns: str, sn: str, key: str) -> _Row | None:
    r = db.execute(f"SELECT {_COLS} FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
                   (ns, sn, key)).fetchone()
    return _mk(r) if r else None


def _ready(db: sqlite3.Cursor | sqlite3.Connection, ns: str, sn: str, key: str) -> _Row:
    row = _get(db, ns, sn, key)
    if row is None or row.state != "ready":
        raise NotFound(f"snapshot {key} does not exist")
    return row


def _chain(db: sqlite3.Cursor | sqlite3.Connection, ns: str, sn: str, parent: str) -> list[str]:
    """Backing ids of `parent` and its ancestors, nearest first."""
    ids = []
    while parent:
        row = _get(db, ns, sn, parent)
        if row is None:
            raise NotFound(f"parent snapshot {parent} does not exist")
        ids.append(row.sid)
        parent = row.parent
    return ids


def validate_key(key: str, what: str = "key") -> str:
    if not key:
        raise InvalidArgument(f"snapshot {what} must not be empty")
    if len(key.encode()) > 4096 or "\x00" in key:
        raise InvalidArgument(f"invalid snapshot {what} {key[:64]!r}")
    return key


def validate_labels(labels: dict[str, str] | None) -> dict[str, str]:
    for k, v in (labels or {}).items():
        if not k:
            raise InvalidArgument("label key must not be empty")
        if len(k.encode()) + len(v.encode()) > MAX_LABEL:
            raise InvalidArgument(f"label {k[:64]!r}: key and value greater than maximum size ({MAX_LABEL} bytes)")
    return dict(labels or {})


@dataclass
class RecoveryReport:
    prepares_undone: list[str] = field(default_factory=list)   # "<ns>/<snapshotter>/<key>"
    removals_finished: list[str] = field(default_factory=list)
    missing_dropped: list[str] = field(default_factory=list)
    orphan_dirs_removed: list[str] = field(default_factory=list)  # "<snapshotter>/<sid>"
    staged_removed: list[str] = field(default_factory=list)  # layers extracted for an unpack the daemon lost
    extractions_removed: list[str] = field(default_factory=list)  # active "extract-…" snapshots of such an unpack


class SnapshotService:
    """Local implementation of containerd's Snapshots service for several snapshotters (by name)."""

    def __init__(self, journal: Journal, backends: dict[str, Backend]) -> None:
        self.journal = journal
        self.backends = backends

    def backend(self, snapshotter: str, namespace: str | None = None) -> Backend:
        """The named backend; also checks the containerd namespace name when one is given."""
        if namespace is not None:
            validate_name(namespace)
        try:
            return self.backends[snapshotter]
        except KeyError:
            raise NotFound(f"snapshotter {snapshotter!r} is not configured") from None

    def staging_dir(self, snapshotter: str) -> str | None:
        """Where the unpacker may extract layers before their snapshots exist (None: one by one)."""
        return self.backend(snapshotter).staging_dir()

    async def _read(self, fn):  # type: ignore[no-untyped-def]
        return await self.journal.run_read(fn)

    # ---- creating --------------------------------------------------------------------------------

    async def prepare(self, snapshotter: str, key: str, parent: str = "", labels: dict[str, str] | None = None,
                      *, namespace: str, actor: str) -> list[Mount]:
        return await self._create(snapshotter, Kind.ACTIVE, key, parent, labels, namespace, actor)

    async def view(self, snapshotter: str, key: str, parent: str = "", labels: dict[str, str] | None = None,
                   *, namespace: str, actor: str) -> list[Mount]:
        return await self._create(snapshotter, Kind.VIEW, key, parent, labels, namespace, actor)

    async def _create(self, sn: str, kind: Kind, key: str, parent: str, labels: dict[str, str] | None,
                      ns: str, actor: str) -> list[Mount]:
        be = self.backend(sn, ns)
        validate_key(key)
        labels = validate_labels(labels)
        chain: list[str] = []

        def decide(tx: sqlite3.Cursor) -> list[Event]:
            if _get(tx, ns, sn, key) is not None:
                raise AlreadyExists(f"snapshot {key}: already exists")
            if parent:
                prow = _get(tx, ns, sn, parent)
                if prow is None or prow.state != "ready":
                    raise NotFound(f"parent snapshot {parent} does not exist")
                if prow.kind is not Kind.COMMITTED:
                    raise InvalidArgument(f"parent {parent} is not a committed snapshot")
                chain.extend(_chain(tx, ns, sn, parent))
            r = tx.execute("SELECT last FROM snapshot_ids WHERE snapshotter = ?", (sn,)).fetchone()
            sid = str((r[0] if r else 0) + 1)
            return [SnapshotPrepareRequested(snapshotter=sn, key=key, sid=sid, kind=kind.value, parent=parent,
                                             labels=labels)]

        envs = await self.journal.append(decide, namespace=ns, actor=actor)
        sid = envs[0].event.sid  # type: ignore[attr-defined]
        try:
            await asyncio.to_thread(be.create, sid, kind, chain)
        except BaseException as err:
            await asyncio.shield(self._undo_prepare(be, sn, key, sid, ns, actor, err))
            raise
        await self.journal.append([SnapshotPrepared(snapshotter=sn, key=key, sid=sid)], namespace=ns, actor=actor)
        return be.mounts(sid, kind, chain)

    async def _undo_prepare(self, be: Backend, sn: str, key: str, sid: str, ns: str, actor: str,
                            err: BaseException) -> None:
        await asyncio.to_thread(be.remove, sid)
        await self.journal.append([SnapshotPrepareFailed(snapshotter=sn, key=key, sid=sid, error=str(err)[:1024])],
                                  namespace=ns, actor=actor)

    # ---- reading ---------------------------------------------------------------------------------

    async def mounts(self, snapshotter: str, key: str, *, namespace: str) -> list[Mount]:
        be = self.backend(snapshotter, namespace)

        def q(conn: sqlite3.Connection) -> tuple[_Row, list[str]]:
            row = _ready(conn, namespace, snapshotter, key)
            return row, _chain(conn, namespace, snapshotter, row.parent)

        row, chain = await self._read(q)
        if row.kind is Kind.COMMITTED:
            raise FailedPrecondition(f"snapshot {key} is committed: mounts are for active snapshots and views")
        return be.mounts(row.sid, row.kind, chain)

    async def stat(self, snapshotter: str, key: str, *, namespace: str) -> Info:
        self.backend(snapshotter, namespace)
        row = await self._read(lambda c: _ready(c, namespace, snapshotter, key))
        return row.info()

    async def usage(self, snapshotter: str, key: str, *, namespace: str) -> Usage:
        be = self.backend(snapshotter, namespace)
        row = await self._read(lambda c: _ready(c, namespace, snapshotter, key))
        if row.kind is Kind.COMMITTED:
            return Usage(size=row.size, inodes=row.inodes)
        return await asyncio.to_thread(be.usage, row.sid)

    async def walk(self, snapshotter: str, *filters: str, namespace: str) -> list[Info]:
        self.backend(snapshotter, namespace)
        compiled = compile_filters(filters)

        def q(conn: sqlite3.Connection) -> list[_Row]:
            return [_mk(r) for r in conn.execute(
                f"SELECT {_COLS} FROM snapshots WHERE namespace = ? AND snapshotter = ? AND state = 'ready'"
                " ORDER BY key", (namespace, snapshotter))]

        return [r.info() for r in await self._read(q) if matches(r.info(), compiled)]

    # ---- changing --------------------------------------------------------------------------------

    async def commit(self, snapshotter: str, name: str, key: str, labels: dict[str, str] | None = None, *,
                     namespace: str, actor: str) -> None:
        be = self.backend(snapshotter, namespace)
        validate_key(name, "name")
        labels = validate_labels(labels)
        row = await self._read(lambda c: _ready(c, namespace, snapshotter, key))
        if row.kind is not Kind.ACTIVE:
            raise FailedPrecondition(f"snapshot {key} is not active: only active snapshots can be committed")
        usage = await asyncio.to_thread(be.usage, row.sid)

        def decide(tx: sqlite3.Cursor) -> list[Event]:
            cur = _ready(tx, namespace, snapshotter, key)
            if cur.kind is not Kind.ACTIVE or cur.sid != row.sid:
                raise FailedPrecondition(f"snapshot {key} changed while committing")
            if _get(tx, namespace, snapshotter, name) is not None:
                raise AlreadyExists(f"snapshot {name}: already exists")
            return [SnapshotCommitted(snapshotter=snapshotter, key=key, name=name, sid=row.sid, labels=labels,
                                      size=usage.size, inodes=usage.inodes)]

        await self.journal.append(decide, namespace=namespace, actor=actor)

    async def update(self, snapshotter: str, key: str, labels: dict[str, str] | None = None, *,
                     paths: Sequence[str] | None = None, namespace: str, actor: str) -> Info:
        self.backend(snapshotter, namespace)
        validate_labels(labels)
        out: list[Info] = []

        def decide(tx: sqlite3.Cursor) -> list[Event]:
            row = _ready(tx, namespace, snapshotter, key)
            new = validate_labels(_update_labels(row.labels, labels or {}, paths))
            out.append(Info(kind=row.kind, name=row.key, parent=row.parent, labels=new, created_ns=row.created_ns,
                            updated_ns=row.updated_ns))
            return [SnapshotLabelsUpdated(snapshotter=snapshotter, key=key, labels=new)]

        envs = await self.journal.append(decide, namespace=namespace, actor=actor)
        i = out[-1]
        return Info(kind=i.kind, name=i.name, parent=i.parent, labels=i.labels, created_ns=i.created_ns,
                    updated_ns=envs[0].time_ns)

    async def remove(self, snapshotter: str, key: str, *, namespace: str, actor: str, cause: str = "api",
                     check: Callable[[sqlite3.Cursor], None] | None = None) -> None:
        """Remove a snapshot (a committed one only without children). `check` runs inside the journal's
        transaction first and may refuse by raising (the garbage collector re-checks its mark there)."""
        be = self.backend(snapshotter, namespace)
        sids: list[str] = []

        def decide(tx: sqlite3.Cursor) -> list[Event]:
            if check is not None:
                check(tx)
            row = _ready(tx, namespace, snapshotter, key)
            if row.kind is Kind.COMMITTED and tx.execute(
                    "SELECT 1 FROM snapshots WHERE namespace = ? AND snapshotter = ? AND parent = ? LIMIT 1",
                    (namespace, snapshotter, key)).fetchone():
                raise FailedPrecondition(f"cannot remove snapshot {key}: it has children")
            sids.append(row.sid)
            return [SnapshotRemoveRequested(snapshotter=snapshotter, key=key, sid=row.sid)]

        await self.journal.append(decide, namespace=namespace, actor=actor, cause=cause)
        await asyncio.to_thread(be.remove, sids[0])
        await self.journal.append([SnapshotRemoved(snapshotter=snapshotter, key=key, sid=sids[0])],
                                  namespace=namespace, actor=actor, cause=cause)

    # ---- recovery --------------------------------------------------------------------------------

    async def recover(self, *, actor: str = "engine") -> RecoveryReport:
        """Resolve every intent without an outcome, and make rows and directories agree (see module doc)."""
        rep = RecoveryReport()
        rows: list[tuple] = await self._read(lambda c: c.execute(
            "SELECT namespace, snapshotter, key, sid, state, parent FROM snapshots").fetchall())
        for ns, sn, key, sid, state, _parent in rows:
            be = self.backends.get(sn)
            if be is None:
                continue
            tag = f"{ns}/{sn}/{key}"
            if state == "preparing":
                await asyncio.to_thread(be.remove, sid)
                await self.journal.append([SnapshotPrepareFailed(snapshotter=sn, key=key, sid=sid,
                                                                 error="interrupted")],
                                          namespace=ns, actor=actor, cause="recover")
                rep.prepares_undone.append(tag)
            elif state == "removing":
                await asyncio.to_thread(be.remove, sid)
                await self.journal.append([SnapshotRemoved(snapshotter=sn, key=key, sid=sid)], namespace=ns,
                                          actor=actor, cause="recover")
                rep.removals_finished.append(tag)
        # an unpack's half-filled layer ("extract-<id> <chain id>", labelled with the chain it was to become,
        # as containerd's unpacker names them): no unpack outlives the daemon, and recovery runs before
        # the API serves, so nobody is filling it any more
        lost: list[tuple[str, str, str]] = await self._read(lambda c: c.execute(
            "SELECT namespace, snapshotter, key FROM snapshots WHERE state = 'ready' AND kind = 'active' AND "
            "key LIKE 'extract-%' AND json_extract(labels, '$.\"containerd.io/snapshot.ref\"') IS NOT NULL"
        ).fetchall())
        for ns, sn, key in lost:
            if sn in self.backends:
                await self.remove(sn, key, namespace=ns, actor=actor, cause="recover")
                rep.extractions_removed.append(f"{ns}/{sn}/{key}")
        gone_keys = set(lost)
        rows = [r for r in rows if (r[0], r[1], r[2]) not in gone_keys]
        # rows whose directories are gone: drop them and everything above them, children first
        rows = [r for r in rows if r[4] == "ready"]
        gone = {(ns, sn, key) for ns, sn, key, sid, _, _ in rows
                if sn in self.backends and not self.backends[sn].exists(sid)}
        changed = True
        while changed:
            changed = False
            for ns, sn, key, _sid, _, parent in rows:
                if (ns, sn, key) not in gone and parent and (ns, sn, parent) in gone:
                    gone.add((ns, sn, key))
                    changed = True
        by_parent = {(r[0], r[1], r[2]): r for r in rows}
        ordered = sorted(gone, key=lambda k: -_depth(by_parent, k))
        for ns, sn, key in ordered:
            sid = by_parent[(ns, sn, key)][3]
            await asyncio.to_thread(self.backends[sn].remove, sid)
            await self.journal.append([SnapshotRemoved(snapshotter=sn, key=key, sid=sid, reason="missing")],
                                      namespace=ns, actor=actor, cause="recover")
            rep.missing_dropped.append(f"{ns}/{sn}/{key}")
        # directories no row names
        known: set[tuple[str, str]] = set(await self._read(lambda c: c.execute(
            "SELECT snapshotter, sid FROM snapshots").fetchall()))
        for sn, be in self.backends.items():
            for sid in be.ids_on_disk():
                if (sn, sid) not in known:
                    await asyncio.to_thread(be.remove, sid)
                    rep.orphan_dirs_removed.append(f"{sn}/{sid}")
            staging = be.staging_dir()
            for name in os.listdir(staging) if staging else ():
                await asyncio.to_thread(shutil.rmtree, os.path.join(staging, name), True)
                rep.staged_removed.append(f"{sn}/{name}")
        return rep


def _depth(rows: dict[tuple[str, str, str], tuple], k: tuple[str, str, str]) -> int:
    d = 0
    while k in rows and rows[k][5]:
        k = (k[0], k[1], rows[k][5])
        d += 1
    return d


def _update_labels(current: dict[str, str], labels: dict[str, str], paths: Sequence[str] | None) -> dict[str, str]:
    """containerd's field paths: none or ``labels`` replace the set, ``labels.<k>`` sets or clears one key."""
    if not paths:
        return dict(labels)
    out = dict(current)
    for path in paths:
        if path == "labels":
            out = dict(labels)
        elif path.startswith("labels."):
            k = path[len("labels."):]
            if labels.get(k, ""):
                out[k] = labels[k]
            else:
                out.pop(k, None)
        else:
            raise InvalidArgument(f"cannot update {path!r} field on snapshot")
    return out


__all__ = ["EVENTS", "PROJECTION", "RecoveryReport", "SnapshotService", "compile_filters", "matches"]
