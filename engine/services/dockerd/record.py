"""The Docker container record: its events, the ``docker_containers`` projection and its reads.

A Docker container (namespace ``moby``) is what dockerd keeps in ``config.v2.json`` + ``hostconfig.json``:
the name, the image as given and its ID, Docker's ``Config`` and ``HostConfig`` (normalised JSON), the
command, the paths of its log and its /etc files, and ``State``. The containerd container record and
the task are the containers/tasks services'; this record is the Docker view over them.

Events (namespace ``moby``, subject the container id):

* ``docker_container.create_requested`` (the whole record: the name is reserved at once, the row is
  ``creating`` and invisible) → ``docker_container.created`` | ``docker_container.create_failed`` (the row
  goes; what the create made was removed first, in reverse order).
* ``docker_container.renamed``, ``docker_container.updated`` (the HostConfig after the update),
  ``docker_container.stop_requested`` / ``docker_container.kill_requested`` (Docker's
  HasBeenManuallyStopped: the restart policy leaves it alone), ``docker_container.stopped`` (Docker's
  ``stop``), ``docker_container.restarted`` (Docker's ``restart``), ``docker_container.start_failed``
  (State.Error and the exit code Docker gives a start that failed), ``docker_container.restart_scheduled``
  (the restart policy will start it again: ``restarting``, RestartCount + 1),
  ``docker_container.remove_requested`` (``removing``) → ``docker_container.removed`` (the row goes) |
  ``docker_container.remove_failed`` (``dead``, as dockerd marks a container it could not remove).

The running state is not journaled twice: this projection also applies the tasks service's events of
namespace ``moby`` (``task.started`` → running, ``task.exited``/``task.vanished`` → exited with the
code and time, ``task.oom_killed`` → OOMKilled, ``task.paused``/``task.resumed``), for ids it has a row
for; a containerd container made with ``ctr -n moby`` has none and is left alone.
"""

from __future__ import annotations

import sqlite3
from typing import Any, ClassVar

import msgspec

from engine.events.projection import Projection
from engine.events.types import Envelope, Event
from engine.services import task_events as te

NAMESPACE = "moby"
CREATING, CREATED, RUNNING, PAUSED, RESTARTING, REMOVING, EXITED, DEAD = (
    "creating", "created", "running", "paused", "restarting", "removing", "exited", "dead")


class State(msgspec.Struct, kw_only=True):
    status: str = CREATED
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: int = 0  # ns since the epoch; 0 = never
    finished_at: int = 0
    oom_killed: bool = False
    manually_stopped: bool = False

    @property
    def running(self) -> bool:
        """Docker's State.Running: true while paused or restarting too."""
        return self.status in (RUNNING, PAUSED, RESTARTING)

    @property
    def paused(self) -> bool:
        return self.status == PAUSED


class DockerContainer(msgspec.Struct, kw_only=True):
    id: str
    name: str  # "/name"
    created: int = 0  # ns
    image: str = ""  # as the client gave it
    image_id: str = ""  # "sha256:<config digest>"
    image_ref: str = ""  # the image record's name in namespace moby
    config: dict[str, Any] = {}
    host_config: dict[str, Any] = {}
    path: str = ""
    args: list[str] = []
    restart_count: int = 0
    state: State = msgspec.field(default_factory=State)
    log_path: str = ""
    hostname_path: str = ""
    hosts_path: str = ""
    resolv_path: str = ""
    directory: str = ""  # <root>/containers/<id>
    snapshotter: str = "overlayfs"
    volumes: list[str] = []  # names of the volumes it references
    mounts: list[dict[str, Any]] = []  # spec.MountPoint fields: binds, volumes, tmpfs (inspect's Mounts)
    networking: dict[str, Any] = {}  # the create's NetworkingConfig (EndpointsConfig: aliases, static IPs)
    namespace: str = NAMESPACE

    @property
    def short_name(self) -> str:
        return self.name.lstrip("/")


class _Ev(Event, frozen=True):
    SUBJECT: ClassVar[str] = "id"
    id: str


class DockerContainerCreateRequested(_Ev, frozen=True):
    TYPE: ClassVar[str] = "docker_container.create_requested"
    container: DockerContainer


class DockerContainerCreated(_Ev, frozen=True):
    TYPE: ClassVar[str] = "docker_container.created"
    name: str
    image: str
    labels: dict[str, str] = {}
    mounts: list[dict[str, Any]] = []
    volumes: list[str] = []


class DockerContainerCreateFailed(_Ev, frozen=True):
    TYPE: ClassVar[str] = "docker_container.create_failed"
    error: str


class DockerContainerRenamed(_Ev, frozen=True):
    TYPE: ClassVar[str] = "docker_container.renamed"
    name: str
    old_name: str


class DockerContainerUpdated(_Ev, frozen=True):
    TYPE: ClassVar[str] = "docker_container.updated"
    host_config: dict[str, Any]


class DockerContainerStopRequested(_Ev, frozen=True):
    TYPE: ClassVar[str] = "docker_container.stop_requested"
    signal: int
    timeout: int = -1


class DockerContainerKillRequested(_Ev, frozen=True):
    TYPE: ClassVar[str] = "docker_container.kill_requested"
    signal: int


class DockerContainerStopped(_Ev, frozen=True):
    TYPE: ClassVar[str] = "docker_container.stopped"


class DockerContainerRestarted(_Ev, frozen=True):
    TYPE: ClassVar[str] = "docker_container.restarted"


class DockerContainerStartFailed(_Ev, frozen=True):
    TYPE: ClassVar[str] = "docker_container.start_failed"
    error: str
    exit_code: int = 128


class DockerContainerRestartScheduled(_Ev, frozen=True):
    TYPE: ClassVar[str] = "docker_container.restart_scheduled"
    restart_count: int
    delay_ms: int = 0


class DockerContainerRemoveRequested(_Ev, frozen=True):
    TYPE: ClassVar[str] = "docker_container.remove_requested"


class DockerContainerRemoveFailed(_Ev, frozen=True):
    TYPE: ClassVar[str] = "docker_container.remove_failed"
    error: str


class DockerContainerRemoved(_Ev, frozen=True):
    TYPE: ClassVar[str] = "docker_container.removed"


class DockerContainersPruned(Event, frozen=True):
    """``docker container prune`` (Docker's ``prune`` event, attribute ``reclaimed``)."""

    TYPE: ClassVar[str] = "docker_container.pruned"
    SUBJECT: ClassVar[str] = ""
    removed: list[str] = []
    reclaimed: int = 0


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(DockerContainer)
_OWN = (DockerContainerCreateRequested, DockerContainerCreated, DockerContainerCreateFailed, DockerContainerRenamed,
        DockerContainerUpdated, DockerContainerStopRequested, DockerContainerKillRequested, DockerContainerStopped,
        DockerContainerRestarted, DockerContainerStartFailed, DockerContainerRestartScheduled,
        DockerContainerRemoveRequested, DockerContainerRemoveFailed, DockerContainerRemoved, DockerContainersPruned)
_TASK = (te.TaskStarted, te.TaskExited, te.TaskLost, te.TaskOOM, te.TaskPaused, te.TaskResumed)


def _load(tx: sqlite3.Cursor, ns: str, cid: str) -> DockerContainer | None:
    row = tx.execute("SELECT record FROM docker_containers WHERE namespace = ? AND id = ?", (ns, cid)).fetchone()
    return _dec.decode(row[0]) if row else None


def _save(tx: sqlite3.Cursor, c: DockerContainer, t: int) -> None:
    tx.execute("UPDATE docker_containers SET name = ?, status = ?, record = ?, updated_ns = ?"
               " WHERE namespace = ? AND id = ?", (c.name, c.state.status, _enc.encode(c).decode(), t,
                                                   c.namespace, c.id))


def apply(env: Envelope, tx: sqlite3.Cursor) -> None:  # noqa: C901 (one branch per event type)
    ev, ns, t = env.event, env.namespace, env.time_ns
    if isinstance(ev, DockerContainerCreateRequested):
        new = msgspec.structs.replace(ev.container, created=t, namespace=ns, state=State(status=CREATING))
        tx.execute("INSERT INTO docker_containers(namespace, id, name, status, record, created_ns, updated_ns)"
                   " VALUES (?,?,?,?,?,?,?)", (ns, new.id, new.name, CREATING, _enc.encode(new).decode(), t, t))
        return
    if isinstance(ev, (DockerContainerCreateFailed, DockerContainerRemoved)):
        tx.execute("DELETE FROM docker_containers WHERE namespace = ? AND id = ?", (ns, ev.id))
        return
    if isinstance(ev, DockerContainersPruned):
        return
    cid = ev.id if isinstance(ev, _Ev) else getattr(ev, "container_id", "")
    if ns != NAMESPACE and not isinstance(ev, _Ev):
        return
    found = _load(tx, ns, cid)
    if found is None:
        return
    c = found
    s = c.state
    if isinstance(ev, DockerContainerCreated):
        s.status, c.mounts, c.volumes = CREATED, list(ev.mounts), list(ev.volumes)
    elif isinstance(ev, DockerContainerRenamed):
        c.name = ev.name
    elif isinstance(ev, DockerContainerUpdated):
        c.host_config = ev.host_config
    elif isinstance(ev, (DockerContainerStopRequested, DockerContainerKillRequested)):
        s.manually_stopped = True
    elif isinstance(ev, DockerContainerStartFailed):
        s.error, s.exit_code = ev.error, ev.exit_code
        if s.status == RESTARTING:
            s.status = EXITED
        s.finished_at = t if s.status == EXITED else s.finished_at
    elif isinstance(ev, DockerContainerStopped):
        if s.status == RESTARTING:
            s.status = EXITED
    elif isinstance(ev, DockerContainerRestartScheduled):
        s.status, c.restart_count = RESTARTING, ev.restart_count
    elif isinstance(ev, DockerContainerRemoveRequested):
        s.status = REMOVING
    elif isinstance(ev, DockerContainerRemoveFailed):
        s.status, s.error = DEAD, ev.error
    elif isinstance(ev, te.TaskStarted):
        if s.status in (CREATED, EXITED, RESTARTING):  # an exit recorded first (a short process) stays
            s.status = RUNNING
        s.pid, s.started_at, s.error, s.oom_killed, s.manually_stopped = ev.pid, t, "", False, False
        if s.status == RUNNING:
            s.exit_code = 0
    elif isinstance(ev, (te.TaskExited, te.TaskLost)):
        if s.status == REMOVING:
            s.pid = 0
        else:
            s.status, s.pid = EXITED, 0
        s.exit_code = ev.exit_status
        s.finished_at = ev.exited_at if isinstance(ev, te.TaskExited) and ev.exited_at else t
    elif isinstance(ev, te.TaskOOM):
        s.oom_killed = True
    elif isinstance(ev, te.TaskPaused) and s.status == RUNNING:
        s.status = PAUSED
    elif isinstance(ev, te.TaskResumed) and s.status == PAUSED:
        s.status = RUNNING
    _save(tx, c, t)


PROJECTION = Projection(
    name="docker_containers",
    tables=("docker_containers",),
    events=(*_OWN, *_TASK),
    apply=apply,
    namespaced_tables=("docker_containers",),
)


# ---- reads ------------------------------------------------------------------------------------------
def read(conn: sqlite3.Connection | sqlite3.Cursor, cid: str, *, creating: bool = False) -> DockerContainer | None:
    row = conn.execute("SELECT record, status FROM docker_containers WHERE namespace = ? AND id = ?",
                       (NAMESPACE, cid)).fetchone()
    if row is None or (row[1] == CREATING and not creating):
        return None
    return _dec.decode(row[0])


def read_all(conn: sqlite3.Connection | sqlite3.Cursor) -> list[DockerContainer]:
    rows = conn.execute("SELECT record FROM docker_containers WHERE namespace = ? AND status != ?"
                        " ORDER BY created_ns DESC, id", (NAMESPACE, CREATING))
    return [_dec.decode(r[0]) for r in rows]


def read_creating(conn: sqlite3.Connection | sqlite3.Cursor) -> list[DockerContainer]:
    rows = conn.execute("SELECT record FROM docker_containers WHERE namespace = ? AND status = ?",
                        (NAMESPACE, CREATING))
    return [_dec.decode(r[0]) for r in rows]


def by_name(conn: sqlite3.Connection | sqlite3.Cursor, name: str) -> str | None:
    """The id holding `name` ("/x"), creating rows included (the name is taken from the request on)."""
    row = conn.execute("SELECT id FROM docker_containers WHERE namespace = ? AND name = ?",
                       (NAMESPACE, name)).fetchone()
    return row[0] if row else None


def lookup(conn: sqlite3.Connection | sqlite3.Cursor, ref: str) -> list[str]:
    """Docker's lookup order: full id, exact name, then unique id prefix (ids of all matches)."""
    row = conn.execute("SELECT id FROM docker_containers WHERE namespace = ? AND id = ? AND status != ?",
                       (NAMESPACE, ref, CREATING)).fetchone()
    if row:
        return [row[0]]
    name = ref if ref.startswith("/") else "/" + ref
    row = conn.execute("SELECT id FROM docker_containers WHERE namespace = ? AND name = ? AND status != ?",
                       (NAMESPACE, name, CREATING)).fetchone()
    if row:
        return [row[0]]
    if not ref or any(ch not in "0123456789abcdef" for ch in ref):
        return []
    rows = conn.execute("SELECT id FROM docker_containers WHERE namespace = ? AND id >= ? AND id < ? AND status != ?",
                        (NAMESPACE, ref, ref + "g", CREATING)).fetchall()
    return [r[0] for r in rows]
