"""The journal: append with group commit, projections in the same transaction, a live bus, readers.

Writes go through one writer thread that owns the write connection. ``append`` hands a request (events,
envelope fields, an optional precondition check) to it and awaits the result. The thread takes every
request that is waiting, runs them in ONE transaction (group commit), each inside its own SAVEPOINT so a
refused request (its check or an ``apply`` raised) rolls back alone, commits, and only then hands the
envelopes back to the event loop, which resolves the callers and publishes to the live bus in seq order.

Each row carries ``hash = sha256(prev_hash || msgpack([seq, time_ns, namespace, type, subject, actor,
cause, schema, payload]))``; the first row's prev_hash is 32 zero bytes. time_ns never goes backwards
(it is max(now, previous)), so time ranges map to seq ranges.

Reads use their own connections (WAL readers never block the writer). ``subscribe`` registers on the bus
*before* it reads the backlog, then drops live events whose seq it has already yielded: no gap, no
duplicate. A subscriber that falls more than ``queue_size`` events behind is switched back to reading
from the database until it catches up, so a slow reader costs memory never beyond its queue.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from engine import store
from engine.errors import DataLoss, EngineError, InvalidArgument, Unavailable
from engine.events.projection import Projections
from engine.events.types import Envelope, Event, decode_payload, encode_payload, validate_actor

log = logging.getLogger(__name__)

GENESIS = bytes(32)
CHECKPOINT_EVERY = 200  # commits between background checkpoints (and at least every CHECKPOINT_SECONDS)
CHECKPOINT_SECONDS = 1.0
Check = Callable[[sqlite3.Cursor], None]
Decide = Callable[[sqlite3.Cursor], Sequence[Event]]
Match = Callable[[Envelope], bool]
_pack = msgspec.msgpack.Encoder().encode
_COLUMNS = "seq, time_ns, namespace, type, subject, actor, cause, schema, payload, prev_hash, hash"


def row_hash(prev_hash: bytes, seq: int, time_ns: int, namespace: str, type_: str, subject: str,
             actor: str, cause: str, schema: int, payload: bytes) -> bytes:
    body = _pack([seq, time_ns, namespace, type_, subject, actor, cause, schema, payload])
    return hashlib.sha256(prev_hash + body).digest()


def envelope_from_row(row: tuple) -> Envelope:
    seq, time_ns, namespace, type_, subject, actor, cause, schema, payload, prev_hash, hash_ = row
    return Envelope(seq, time_ns, namespace, type_, subject, actor, cause, schema,
                    decode_payload(type_, schema, payload), prev_hash, hash_)


@dataclass
class _Request:
    events: Sequence[Event] | Decide
    namespace: str
    actor: str
    cause: str
    check: Check | None
    future: asyncio.Future
    result: list[Envelope] | BaseException | None = None


@dataclass(eq=False)
class _Subscriber:
    match: Match | None
    queue: asyncio.Queue
    lagged: bool = False
    internal: bool = False  # the daemon's own (gc, waits): not an events listener of a client


@dataclass
class JournalStats:
    batches: int = 0
    events: int = 0
    largest_batch: int = 0


class Journal:
    """Append-only event log with projections, group commit and live subscriptions."""

    def __init__(self, path: str | Path, projections: Projections, *, synchronous: str = "normal",
                 queue_size: int = 10_000) -> None:
        self.path = Path(path)
        self.projections = projections
        self.synchronous = synchronous
        self.queue_size = queue_size
        self.stats = JournalStats()
        self.last_seq = 0  # last seq delivered to the loop (published on the bus)
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._subscribers: set[_Subscriber] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._sealed_for: str | None = None
        self._readers: list[sqlite3.Connection] = []
        self._reader_lock: asyncio.Lock | None = None
        # writer-thread state
        self._w_conn: sqlite3.Connection | None = None
        self._w_seq = 0
        self._w_hash = GENESIS
        self._w_time = 0
        self._w_commits = 0
        self._ckpt_wake = threading.Event()
        self._ckpt_stop = False
        self._ckpt_thread: threading.Thread | None = None

    # ---- life cycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Open, migrate, catch every projection up to the journal, and start the writer thread."""
        self._loop = asyncio.get_running_loop()
        self._reader_lock = asyncio.Lock()
        conn = store.connect(self.path, synchronous=self.synchronous)
        try:
            store.migrate(conn)
            row = conn.execute("SELECT seq, time_ns, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
            if row:
                self._w_seq, self._w_time, self._w_hash = row
            self._catch_up(conn)
        except BaseException:
            conn.close()
            raise
        # Checkpoints are moved off the commit path: the writer never checkpoints on its own (that put a
        # multi-ms stall on every ~1000th commit), a second thread copies the WAL back in the background.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        self._w_conn = conn
        self.last_seq = self._w_seq
        self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
        self._thread.start()
        self._ckpt_thread = threading.Thread(target=self._checkpointer, name="journal-checkpoint", daemon=True)
        self._ckpt_thread.start()

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """Replay into any projection whose recorded position is behind the journal (a new projection)."""
        positions = dict(conn.execute("SELECT name, seq FROM projection_positions"))
        for proj in self.projections.all:
            pos = positions.get(proj.name, 0)
            if pos >= self._w_seq:
                continue
            log.info("projection %s is at seq %d of %d: replaying", proj.name, pos, self._w_seq)
            conn.execute("BEGIN IMMEDIATE")
            try:
                tx = conn.cursor()
                types = {cls.TYPE for cls in proj.events}
                for row in conn.execute(f"SELECT {_COLUMNS} FROM events WHERE seq > ? ORDER BY seq", (pos,)):
                    if row[3] in types:
                        proj.apply(envelope_from_row(row), tx)
                tx.execute("INSERT OR REPLACE INTO projection_positions(name, seq) VALUES (?, ?)",
                           (proj.name, self._w_seq))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def seal(self, *, allow_actor: str) -> None:
        """From now on only `allow_actor` may append (the daemon's last words on shutdown)."""
        self._sealed_for = allow_actor

    async def close(self) -> None:
        """Finish every queued append, stop the writer, checkpoint the WAL and close."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._requests.put(None)
            self._ckpt_stop = True
            self._ckpt_wake.set()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._ckpt_thread.join)
            await loop.run_in_executor(None, self._thread.join)
        for conn in self._readers:
            conn.close()
        self._readers.clear()
        for sub in list(self._subscribers):
            sub.queue.put_nowait(None)

    # ---- appending ----------------------------------------------------------------------------

    async def append(self, events: Sequence[Event] | Decide, *, namespace: str, actor: str, cause: str = "api",
                     check: Check | None = None) -> list[Envelope]:
        """Append events atomically (all or none), after `check(tx)` passes inside the same transaction.

        `events` may be a function of the transaction that decides them there, for a command whose
        events depend on the current state (an update that merges labels).
        """
        if self._closed or self._loop is None:
            raise Unavailable("the journal is closed")
        if not events:
            raise InvalidArgument("nothing to append")
        validate_actor(actor)
        if self._sealed_for is not None and actor != self._sealed_for:
            raise Unavailable("the daemon is shutting down")
        fut = self._loop.create_future()
        self._requests.put(_Request(events, namespace, actor, cause, check, fut))
        return await fut

    def _writer(self) -> None:
        conn = self._w_conn
        assert conn is not None
        stop = False
        while not stop:
            first = self._requests.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < 4096:
                try:
                    nxt = self._requests.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._commit_batch(conn, batch)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    def _checkpointer(self) -> None:
        """Copy the WAL back into the database now and then, without blocking the writer (PASSIVE)."""
        conn = store.connect(self.path, synchronous=self.synchronous)
        try:
            while not self._ckpt_stop:
                self._ckpt_wake.wait(CHECKPOINT_SECONDS)
                self._ckpt_wake.clear()
                if self._ckpt_stop:
                    break
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as err:
                    log.warning("background checkpoint failed: %s", err)
        finally:
            conn.close()

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Request]) -> None:
        start = (self._w_seq, self._w_hash, self._w_time)
        try:
            conn.execute("BEGIN IMMEDIATE")
            tx = conn.cursor()
            for req in batch:
                req.result = self._apply_request(tx, req)
            if self._w_seq != start[0]:
                tx.execute("UPDATE projection_positions SET seq = ?", (self._w_seq,))
                if tx.rowcount < len(self.projections.all):
                    tx.executemany("INSERT OR IGNORE INTO projection_positions(name, seq) VALUES (?, ?)",
                                   [(p.name, self._w_seq) for p in self.projections.all])
            conn.execute("COMMIT")
            self._w_commits += 1
            if self._w_commits % CHECKPOINT_EVERY == 0:
                self._ckpt_wake.set()
        except BaseException as err:  # the commit itself failed: nothing of this batch is durable
            log.exception("journal commit failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._w_seq, self._w_hash, self._w_time = start
            fail = err if isinstance(err, EngineError) else Unavailable(f"journal write failed: {err}")
            for req in batch:
                req.result = fail
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver, batch)

    def _apply_request(self, tx: sqlite3.Cursor, req: _Request) -> list[Envelope] | BaseException:
        saved = (self._w_seq, self._w_hash, self._w_time)
        tx.execute("SAVEPOINT req")
        try:
            if req.check is not None:
                req.check(tx)
            events = req.events(tx) if callable(req.events) else req.events
            if not events:
                raise InvalidArgument("nothing to append")
            out = []
            for ev in events:
                seq = self._w_seq + 1
                now = max(time.time_ns(), self._w_time)
                payload = encode_payload(ev)
                subject = ev.subject
                h = row_hash(self._w_hash, seq, now, req.namespace, ev.TYPE, subject, req.actor, req.cause,
                             ev.SCHEMA, payload)
                tx.execute(f"INSERT INTO events({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                           (seq, now, req.namespace, ev.TYPE, subject, req.actor, req.cause, ev.SCHEMA,
                            payload.decode(), self._w_hash, h))
                env = Envelope(seq, now, req.namespace, ev.TYPE, subject, req.actor, req.cause, ev.SCHEMA, ev,
                               self._w_hash, h)
                self.projections.apply(env, tx)
                self._w_seq, self._w_hash, self._w_time = seq, h, now
                out.append(env)
            tx.execute("RELEASE req")
            return out
        except Exception as err:
            tx.execute("ROLLBACK TO req")
            tx.execute("RELEASE req")
            self._w_seq, self._w_hash, self._w_time = saved
            if isinstance(err, EngineError):
                return err
            if isinstance(err, sqlite3.IntegrityError):
                return DataLoss(f"projection constraint failed: {err}")
            log.exception("append failed")
            return EngineError(f"append failed: {err}")

    def _deliver(self, batch: list[_Request]) -> None:
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        for req in batch:
            res = req.result
            if isinstance(res, BaseException):
                if not req.future.done():
                    req.future.set_exception(res)
                continue
            assert res is not None
            for env in res:
                self.stats.events += 1
                self.last_seq = env.seq
                self._publish(env)
            if not req.future.done():
                req.future.set_result(res)

    def _publish(self, env: Envelope) -> None:
        for sub in self._subscribers:
            if sub.lagged or (sub.match is not None and not sub.match(env)):
                continue
            try:
                sub.queue.put_nowait(env)
            except asyncio.QueueFull:
                sub.lagged = True

    # ---- reading ------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        if self._readers:
            return self._readers.pop()
        return store.connect(self.path, readonly=True)

    async def run_read(self, fn: Callable[[sqlite3.Connection], object]) -> object:
        """Run fn(conn) on a read connection in a worker thread (a consistent WAL snapshot per call)."""
        if self._closed:
            raise Unavailable("the journal is closed")
        conn = self._reader()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, _in_read_tx, conn, fn)
        finally:
            if len(self._readers) < 4 and not self._closed:
                self._readers.append(conn)
            else:
                conn.close()

    async def read(self, *, after_seq: int = 0, limit: int = 1000, where: str = "",
                   params: Sequence[object] = ()) -> list[Envelope]:
        """Events with seq > after_seq in order, at most `limit`; `where` is an extra SQL condition."""
        sql = f"SELECT {_COLUMNS} FROM events WHERE seq > ?{' AND ' + where if where else ''} ORDER BY seq LIMIT ?"
        args = (after_seq, *params, limit)

        def q(conn: sqlite3.Connection) -> list[Envelope]:
            return [envelope_from_row(r) for r in conn.execute(sql, args)]

        return await self.run_read(q)  # type: ignore[return-value]

    async def history(self, *, after_seq: int = 0, where: str = "", params: Sequence[object] = (),
                      match: Match | None = None) -> AsyncIterator[Envelope]:
        """The committed events after `after_seq`, in order, then stop (no live part)."""
        last = after_seq
        while True:
            batch = await self.read(after_seq=last, limit=1000, where=where, params=params)
            for env in batch:
                last = env.seq
                if match is None or match(env):
                    yield env
            if len(batch) < 1000:
                return

    async def seq_before_time(self, time_ns: int) -> int:
        """The last seq whose time is before time_ns (0 if none): where a `since` time starts."""

        def q(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT max(seq) FROM events WHERE time_ns < ?", (time_ns,)).fetchone()
            return row[0] or 0

        return await self.run_read(q)  # type: ignore[return-value]

    def subscribe(self, *, after_seq: int | None = None, match: Match | None = None,
                  where: str = "", params: Sequence[object] = (), internal: bool = False) -> Subscription:
        """Every event after `after_seq` (None: from now on) that `match`es, then live ones, forever.

        The subscription is registered on the bus when this returns (before any backlog is read), so
        a caller may tell its client "subscribed" and nothing committed from then on is missed.
        `where`/`params` narrow the backlog in SQL (they must agree with `match`, which filters both).
        """
        sub = _Subscriber(match, asyncio.Queue(self.queue_size), internal=internal)
        self._subscribers.add(sub)
        last = self.last_seq if after_seq is None else after_seq
        backlog = after_seq is not None and after_seq < self.last_seq
        return Subscription(self, sub, self._follow(sub, last, backlog, where, params))

    async def _follow(self, sub: _Subscriber, last: int, need_backlog: bool, where: str,
                      params: Sequence[object]) -> AsyncIterator[Envelope]:
        try:
            while True:
                if need_backlog:
                    sub.lagged = False
                    backlog = self.history(after_seq=last, where=where, params=params, match=sub.match)
                    try:
                        async for env in backlog:
                            last = env.seq
                            yield env
                    finally:
                        await backlog.aclose()
                    need_backlog = False
                env = await sub.queue.get()
                if env is None:  # the journal closed
                    return
                if sub.lagged:  # fell behind: drop the queue and read from the database instead
                    while not sub.queue.empty():
                        sub.queue.get_nowait()
                    need_backlog = True
                    continue
                if env.seq <= last:
                    continue
                last = env.seq
                yield env
        finally:
            self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        """Clients' subscriptions (Docker /events, containerd Events.Subscribe, the journal API), not the
        daemon's own."""
        return sum(1 for s in self._subscribers if not s.internal)


class Subscription:
    """An async iterator of envelopes, registered on the bus from creation until `aclose()`."""

    def __init__(self, journal: Journal, sub: _Subscriber, gen: AsyncIterator[Envelope]) -> None:
        self._journal = journal
        self._sub = sub
        self._gen = gen

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Envelope:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        self._journal._subscribers.discard(self._sub)
        await self._gen.aclose()  # type: ignore[attr-defined]


def _in_read_tx(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], object]) -> object:
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        conn.execute("COMMIT")
