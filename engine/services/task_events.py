"""Task events, the ``tasks`` / ``task_execs`` projection and its reads (the service lives in tasks.py).

Every side effect of the tasks service is bracketed (DESIGN §2.4):

* ``task.create_requested`` (bundle, shim paths, mounts, stdio) → ``task.created{pid, shim_pid}`` |
  ``task.create_failed{error}`` (the row goes: the container may try again).
* ``task.start_requested{exec_id}`` → ``task.started{pid}`` / ``task.exec_started{exec_id, pid}`` |
  ``task.start_failed{exec_id, error}``.
* ``task.delete_requested`` → ``task.deleted{pid, exit_status, exited_at}`` (the row goes) |
  ``task.delete_failed{error}`` (back to the status before; kept in ``pending`` meanwhile).

Outcomes that come from the shim carry the shim's event number (``shim_seq``): ``task.exited``,
``task.exec_exited``, ``task.oom_killed``. The projection keeps the highest one (``tasks.shim_seq``), so a
returning daemon resubscribes after it, and an event already recorded is refused (``Duplicate``).
``task.vanished`` (DESIGN's ``task.lost``; every type ends in -ed) is an exit the shim could not report: exit
status 255. The rest are
plain outcomes of calls with no state to resolve after a crash: ``task.killed``, ``task.paused``,
``task.resumed``, ``task.updated``, ``task.exec_added``, ``task.exec_deleted``; and
``task.orphan_cleaned`` records that recovery removed a shim, bundle or state dir no row knew.

Every event's subject is the container id; the namespace is the envelope's.
"""

from __future__ import annotations

import sqlite3
from typing import ClassVar

import msgspec

from engine.errors import Conflict
from engine.events.projection import Projection
from engine.events.types import Envelope, Event

CREATING, CREATED, RUNNING, PAUSED, STOPPED, DELETING = "creating", "created", "running", "paused", "stopped", "deleting"
LOST_EXIT_STATUS = 255


class Duplicate(Conflict):
    """A shim event the journal already holds (seen again after a resubscribe)."""


class RootfsMount(msgspec.Struct, frozen=True):
    type: str
    source: str
    options: tuple[str, ...] = ()


class _TaskEvent(Event, frozen=True):
    SUBJECT: ClassVar[str] = "container_id"
    container_id: str


class TaskCreateRequested(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.create_requested"
    bundle: str
    shim_socket: str
    state_dir: str
    mounts: tuple[RootfsMount, ...] = ()
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    log_path: str = ""


class TaskCreated(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.created"
    pid: int
    shim_pid: int = 0


class TaskCreateFailed(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.create_failed"
    error: str


class TaskStartRequested(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.start_requested"
    exec_id: str = ""


class TaskStarted(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.started"
    pid: int


class TaskStartFailed(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.start_failed"
    error: str
    exec_id: str = ""


class TaskExited(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.exited"
    pid: int
    exit_status: int
    exited_at: int
    shim_seq: int = 0


class TaskLost(_TaskEvent, frozen=True):
    """DESIGN §2.5's ``task.lost`` (types must end in -ed): the shim vanished without an exit status."""

    TYPE: ClassVar[str] = "task.vanished"
    reason: str
    pid: int = 0
    exit_status: int = LOST_EXIT_STATUS


class TaskOOM(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.oom_killed"
    oom_kills: int = 0
    shim_seq: int = 0


class TaskKilled(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.killed"
    signal: int
    all: bool = False
    exec_id: str = ""


class TaskPaused(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.paused"


class TaskResumed(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.resumed"


class TaskUpdated(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.updated"
    resources: dict = {}


class TaskExecAdded(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.exec_added"
    exec_id: str


class TaskExecStarted(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.exec_started"
    exec_id: str
    pid: int


class TaskExecExited(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.exec_exited"
    exec_id: str
    pid: int
    exit_status: int
    exited_at: int
    shim_seq: int = 0


class TaskExecDeleted(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.exec_deleted"
    exec_id: str
    exit_status: int = 0


class TaskDeleteRequested(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.delete_requested"


class TaskDeleteFailed(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.delete_failed"
    error: str


class TaskDeleted(_TaskEvent, frozen=True):
    TYPE: ClassVar[str] = "task.deleted"
    pid: int = 0
    exit_status: int = 0
    exited_at: int = 0


class TaskOrphanCleaned(_TaskEvent, frozen=True):
    """Recovery removed what no task row knew: a live shim, a state dir, a socket, a bundle."""

    TYPE: ClassVar[str] = "task.orphan_cleaned"
    removed: tuple[str, ...] = ()


_mounts_enc = msgspec.json.Encoder()


def apply(env: Envelope, tx: sqlite3.Cursor) -> None:  # noqa: C901 (one branch per event type)
    ev, ns, t = env.event, env.namespace, env.time_ns
    if not isinstance(ev, _TaskEvent):
        return
    cid = ev.container_id
    where = " WHERE namespace = ? AND id = ?"
    if isinstance(ev, TaskCreateRequested):
        tx.execute(
            "INSERT INTO tasks(namespace, id, status, bundle, shim_socket, state_dir, mounts, stdin, stdout, stderr,"
            " terminal, created_ns, updated_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (ns, cid, CREATING, ev.bundle, ev.shim_socket, ev.state_dir, _mounts_enc.encode(ev.mounts).decode(),
             ev.stdin, ev.stdout, ev.stderr, int(ev.terminal), t, t))
    elif isinstance(ev, TaskCreated):
        tx.execute("UPDATE tasks SET status = ?, pid = ?, shim_pid = ?, updated_ns = ?" + where,
                   (CREATED, ev.pid, ev.shim_pid, t, ns, cid))
    elif isinstance(ev, (TaskCreateFailed, TaskDeleted)):
        tx.execute("DELETE FROM tasks" + where, (ns, cid))
        tx.execute("DELETE FROM task_execs" + where, (ns, cid))
    elif isinstance(ev, TaskStartRequested):
        tx.execute("UPDATE tasks SET pending = ?, updated_ns = ?" + where,
                   (f"start:{ev.exec_id}" if ev.exec_id else "start", t, ns, cid))
    elif isinstance(ev, TaskStarted):  # an exit recorded first (a short process) stays
        tx.execute("UPDATE tasks SET status = CASE WHEN status = ? THEN ? ELSE status END, pending = '', pid = ?,"
                   " updated_ns = ?" + where, (CREATED, RUNNING, ev.pid, t, ns, cid))
    elif isinstance(ev, TaskStartFailed):
        tx.execute("UPDATE tasks SET pending = '', updated_ns = ?" + where, (t, ns, cid))
    elif isinstance(ev, TaskExited):
        _check_seq(tx, ns, cid, ev.shim_seq)
        tx.execute("UPDATE tasks SET status = CASE WHEN status = ? THEN status ELSE ? END,"
                   " pending = CASE WHEN status = 'deleting' THEN 'stopped' ELSE '' END,"
                   " exit_status = ?, exited_at = ?, shim_seq = max(shim_seq, ?), updated_ns = ?" + where,
                   (DELETING, STOPPED, ev.exit_status, ev.exited_at, ev.shim_seq, t, ns, cid))
    elif isinstance(ev, TaskLost):
        tx.execute("UPDATE tasks SET status = CASE WHEN status = ? THEN status ELSE ? END,"
                   " pending = CASE WHEN status = 'deleting' THEN 'stopped' ELSE '' END,"
                   " exit_status = ?, exited_at = ?, updated_ns = ?" + where,
                   (DELETING, STOPPED, ev.exit_status, t, t, ns, cid))
    elif isinstance(ev, TaskOOM):
        _check_seq(tx, ns, cid, ev.shim_seq)
        tx.execute("UPDATE tasks SET shim_seq = max(shim_seq, ?), updated_ns = ?" + where, (ev.shim_seq, t, ns, cid))
    elif isinstance(ev, TaskPaused):
        tx.execute("UPDATE tasks SET status = ?, updated_ns = ?" + where + " AND status = ?", (PAUSED, t, ns, cid, RUNNING))
    elif isinstance(ev, TaskResumed):
        tx.execute("UPDATE tasks SET status = ?, updated_ns = ?" + where + " AND status = ?", (RUNNING, t, ns, cid, PAUSED))
    elif isinstance(ev, (TaskKilled, TaskUpdated)):
        tx.execute("UPDATE tasks SET updated_ns = ?" + where, (t, ns, cid))
    elif isinstance(ev, TaskExecAdded):
        tx.execute("INSERT INTO task_execs(namespace, id, exec_id, status) VALUES (?,?,?,?)",
                   (ns, cid, ev.exec_id, CREATED))
    elif isinstance(ev, TaskExecStarted):
        tx.execute("UPDATE tasks SET pending = '', updated_ns = ?" + where, (t, ns, cid))
        tx.execute("UPDATE task_execs SET status = CASE WHEN status = ? THEN ? ELSE status END, pid = ?" + where
                   + " AND exec_id = ?", (CREATED, RUNNING, ev.pid, ns, cid, ev.exec_id))
    elif isinstance(ev, TaskExecExited):
        _check_seq(tx, ns, cid, ev.shim_seq)
        tx.execute("UPDATE tasks SET shim_seq = max(shim_seq, ?), updated_ns = ?" + where, (ev.shim_seq, t, ns, cid))
        tx.execute("UPDATE task_execs SET status = ?, exit_status = ?, exited_at = ?" + where + " AND exec_id = ?",
                   (STOPPED, ev.exit_status, ev.exited_at, ns, cid, ev.exec_id))
    elif isinstance(ev, TaskExecDeleted):
        tx.execute("DELETE FROM task_execs" + where + " AND exec_id = ?", (ns, cid, ev.exec_id))
    elif isinstance(ev, TaskDeleteRequested):
        tx.execute("UPDATE tasks SET status = ?, pending = status, updated_ns = ?" + where, (DELETING, t, ns, cid))
    elif isinstance(ev, TaskDeleteFailed):  # back to the status before the request
        tx.execute("UPDATE tasks SET status = pending, pending = '', updated_ns = ?" + where + " AND status = ?",
                   (t, ns, cid, DELETING))


def _check_seq(tx: sqlite3.Cursor, ns: str, cid: str, seq: int) -> None:
    if not seq:
        return
    row = tx.execute("SELECT shim_seq FROM tasks WHERE namespace = ? AND id = ?", (ns, cid)).fetchone()
    if row is not None and row[0] >= seq:
        raise Duplicate(f"shim event {seq} of task {cid} is already recorded")


PROJECTION = Projection(
    name="tasks",
    tables=("tasks", "task_execs"),
    events=(TaskCreateRequested, TaskCreated, TaskCreateFailed, TaskStartRequested, TaskStarted, TaskStartFailed,
            TaskExited, TaskLost, TaskOOM, TaskKilled, TaskPaused, TaskResumed, TaskUpdated, TaskExecAdded,
            TaskExecStarted, TaskExecExited, TaskExecDeleted, TaskDeleteRequested, TaskDeleteFailed, TaskDeleted,
            TaskOrphanCleaned),
    apply=apply,
    namespaced_tables=("tasks",),
)


# ---- reads (SELECTs on the projection) ----------------------------------------------------------------
class ExecProcess(msgspec.Struct, frozen=True):
    exec_id: str
    status: str
    pid: int = 0
    exit_status: int = 0
    exited_at: int = 0


class Task(msgspec.Struct, frozen=True, kw_only=True):
    namespace: str
    id: str
    status: str
    pid: int = 0
    exit_status: int = 0
    exited_at: int = 0
    pending: str = ""
    bundle: str = ""
    shim_socket: str = ""
    state_dir: str = ""
    shim_pid: int = 0
    shim_seq: int = 0
    mounts: tuple[RootfsMount, ...] = ()
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    execs: tuple[ExecProcess, ...] = ()


_COLS = ("namespace, id, status, pid, exit_status, exited_at, pending, bundle, shim_socket, state_dir, shim_pid,"
         " shim_seq, mounts, stdin, stdout, stderr, terminal")
_mounts_dec = msgspec.json.Decoder(tuple[RootfsMount, ...])


def _from_row(conn: sqlite3.Connection | sqlite3.Cursor, r: tuple) -> Task:
    execs = tuple(ExecProcess(*e) for e in conn.execute(
        "SELECT exec_id, status, pid, exit_status, exited_at FROM task_execs WHERE namespace = ? AND id = ?"
        " ORDER BY exec_id", (r[0], r[1])))
    return Task(namespace=r[0], id=r[1], status=r[2], pid=r[3], exit_status=r[4], exited_at=r[5], pending=r[6],
                bundle=r[7], shim_socket=r[8], state_dir=r[9], shim_pid=r[10], shim_seq=r[11],
                mounts=_mounts_dec.decode(r[12]), stdin=r[13], stdout=r[14], stderr=r[15], terminal=bool(r[16]),
                execs=execs)


def read_task(conn: sqlite3.Connection | sqlite3.Cursor, ns: str, cid: str) -> Task | None:
    r = conn.execute(f"SELECT {_COLS} FROM tasks WHERE namespace = ? AND id = ?", (ns, cid)).fetchone()
    return _from_row(conn, r) if r else None


def read_all(conn: sqlite3.Connection, ns: str | None = None) -> list[Task]:
    sql = f"SELECT {_COLS} FROM tasks" + (" WHERE namespace = ?" if ns is not None else "") + " ORDER BY namespace, id"
    return [_from_row(conn, r) for r in conn.execute(sql, (ns,) if ns is not None else ()).fetchall()]
