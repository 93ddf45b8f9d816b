"""Container state: the status machine, and the state directory on disk.

Status machine (OCI runtime-spec "lifecycle", with runc's allowances)::

    creating --create ok--> created --start--> running --exit--> stopped
                               |                  | ^
                               |               pause resume
                               |                  v |
                               +---kill/exit--> stopped <-- paused (kill; exit)

``can_start`` / ``can_kill`` / ``can_delete`` / ``can_pause`` / ``can_resume`` / ``can_exec`` are
the only place these rules live.  runc deletes a *created* container without --force (it kills
the waiting init), so ``can_delete`` allows created too.

On disk, one directory per container under the root (``/run/engine-runtime/<id>``):
``state.json`` (written to a temp file, fsync-free, then renamed: readers never see half a
file, as crun) and ``exec.fifo`` while the container is created.  The status is not stored:
it is derived from the world each time (is the init alive, with the same start time? does the
FIFO still exist? is the cgroup frozen?), so a crashed runtime never leaves a stale status.
"""

from __future__ import annotations

import os

from engine.errors import NotFound
from engine.runtime import fastjson

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
STOPPED = "stopped"
PAUSED = "paused"

DEFAULT_ROOT = "/run/engine-runtime"
STATE_FILE = "state.json"
FIFO = "exec.fifo"


def can_start(status: str) -> bool:
    return status == CREATED


def can_kill(status: str) -> bool:
    return status in (CREATED, RUNNING, PAUSED)


def can_delete(status: str) -> bool:
    return status in (CREATED, STOPPED)


def can_pause(status: str) -> bool:
    return status in (CREATED, RUNNING)


def can_resume(status: str) -> bool:
    return status == PAUSED


def can_exec(status: str) -> bool:
    return status in (CREATED, RUNNING)


def proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/pid/stat), None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2 :].split()
    if not rest or rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


class Container:
    """One container's persisted state (the ``state.json`` fields) plus its directory."""

    __slots__ = ("id", "dir", "data")

    def __init__(self, container_id: str, directory: str, data: dict) -> None:
        self.id = container_id
        self.dir = directory
        self.data = data

    @property
    def pid(self) -> int:
        return int(self.data.get("pid") or 0)

    @property
    def bundle(self) -> str:
        return self.data.get("bundle", "")

    @property
    def config(self) -> dict:
        return self.data.get("config") or {}

    @property
    def cgroup_path(self) -> str:
        return self.data.get("cgroup_path", "")

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, FIFO)

    def alive(self) -> bool:
        pid = self.pid
        if pid <= 0:
            return False
        st = proc_start_time(pid)
        return st is not None and st == self.data.get("pid_start")

    def status(self, frozen=None) -> str:
        """Derive the status; ``frozen`` is a callable telling whether the cgroup is frozen."""
        if self.data.get("status") == CREATING:
            return CREATING if self.alive() else STOPPED
        if not self.alive():
            return STOPPED
        if os.path.exists(self.fifo):
            return CREATED
        if frozen is not None and frozen():
            return PAUSED
        return RUNNING

    def oci_state(self, status: str) -> dict:
        """The runtime-spec State object, in runc's field order."""
        out = {
            "ociVersion": self.data.get("ociVersion", ""),
            "id": self.id,
            "pid": self.pid if status != STOPPED else 0,
            "status": status,
            "bundle": self.bundle,
            "rootfs": self.data.get("rootfs", ""),
            "created": self.data.get("created", ""),
            "owner": "",
        }
        ann = self.config.get("annotations")
        if ann:
            out["annotations"] = ann
        return out

    def save(self) -> None:
        write_atomic(os.path.join(self.dir, STATE_FILE), fastjson.dumps(self.data).encode())


def write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def container_dir(root: str, container_id: str) -> str:
    return os.path.join(root, container_id)


def load(root: str, container_id: str) -> Container:
    d = container_dir(root, container_id)
    try:
        with open(os.path.join(d, STATE_FILE), "rb") as f:
            data = fastjson.loads(f.read())
    except (FileNotFoundError, NotADirectoryError) as e:
        raise NotFound("container does not exist") from e
    except ValueError as e:
        raise NotFound(f"container {container_id}: corrupt state: {e}") from e
    return Container(container_id, d, data)


def list_ids(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.isfile(os.path.join(root, n, STATE_FILE)))
