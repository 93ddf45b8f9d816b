"""The shim's task: the container's init and its exec'd processes, their lifecycle and events.

Statuses follow containerd's task API: ``created`` → ``running`` (``paused``) → ``stopped``.
Every change the daemon must not miss is an event ``{"seq", "type", "time", "id", "exec_id", ...}``
kept in order until the daemon acknowledges it (``Ack(seq)``), so a daemon that was away
resubscribes with the last sequence number it saw and gets the rest.  Types: ``create``,
``start``, ``exit``, ``oom``, ``exec_added``, ``exec_started``, ``paused``, ``resumed``,
``delete`` (an exec process removed).

The init's exit status and time are written to ``<state-dir>/exit.json`` as soon as it is
reaped: temp file, fsync, rename, fsync of the directory, so a crash of the shim cannot leave
a half-written record.  The ``exit`` event itself goes out once the process's output has been
drained (up to 2 s, in case a background process keeps the pipe open), so a client that sees
the exit has also seen every byte of output.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from engine.runtime.shim.procio import ProcIO

CREATED, RUNNING, PAUSED, STOPPED = "created", "running", "paused", "stopped"
DRAIN_TIMEOUT = 2.0


def write_durable(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Proc:
    def __init__(self, exec_id: str, io: ProcIO, spec: dict | None = None) -> None:
        self.exec_id = exec_id
        self.io = io
        self.spec = spec
        self.pid = 0
        self.status = CREATED
        self.exit_status = -1
        self.exited_at = 0
        self.exit_reported = False
        self.waiters: list[Callable[[dict], None]] = []

    def exit_info(self) -> dict:
        return {"pid": self.pid, "exit_status": self.exit_status, "exited_at": self.exited_at}


class Events:
    """Numbered events kept until acknowledged; past ``MAX_KEPT`` the oldest non-exit ones go
    (an exit is never dropped: it is what a returning daemon most needs)."""

    MAX_KEPT = 4096

    def __init__(self, cid: str, namespace: str) -> None:
        self.cid, self.namespace = cid, namespace
        self.seq = 0
        self.kept: list[dict] = []
        self.subscribers: list = []  # connections

    def emit(self, type_: str, exec_id: str = "", **fields) -> dict:
        self.seq += 1
        ev = {"seq": self.seq, "type": type_, "time": time.time_ns(), "id": self.cid, "exec_id": exec_id}
        ev.update(fields)
        self.kept.append(ev)
        if len(self.kept) > self.MAX_KEPT:
            for i, old in enumerate(self.kept):
                if old["type"] != "exit":
                    del self.kept[i]
                    break
        for conn in list(self.subscribers):
            conn.send_event(ev)
        return ev

    def since(self, after: int) -> list[dict]:
        return [e for e in self.kept if e["seq"] > after]

    def ack(self, seq: int) -> int:
        self.kept = [e for e in self.kept if e["seq"] > seq]
        return len(self.kept)


def status_code(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 255


class Task:
    """The container and its processes; the server calls these from its handlers."""

    def __init__(self, loop, backend, cid: str, namespace: str, state_dir: str) -> None:
        self.loop, self.backend, self.cid, self.state_dir = loop, backend, cid, state_dir
        self.events = Events(cid, namespace)
        self.init: Proc | None = None
        self.execs: dict[str, Proc] = {}
        self.bundle = ""
        self.log = None
        self.oom_fd = -1
        self.oom_count = 0
        self.cgroup = None
        self.deleted = False

    # -- lookups --------------------------------------------------------------------------
    def proc(self, exec_id: str) -> Proc:
        if not exec_id:
            if self.init is None:
                raise NotFound("task not created")
            return self.init
        p = self.execs.get(exec_id)
        if p is None:
            raise NotFound(f"exec {exec_id} not found in task {self.cid}")
        return p

    def by_pid(self, pid: int) -> Proc | None:
        if self.init is not None and self.init.pid == pid:
            return self.init
        for p in self.execs.values():
            if p.pid == pid and p.status != STOPPED:
                return p
        return None

    def status(self, p: Proc) -> str:
        if p is self.init and p.status == RUNNING:
            try:
                if self.backend.state(self.cid).get("status") == PAUSED:
                    return PAUSED
            except Exception:  # noqa: BLE001 (the runtime's view is a refinement only)
                pass
        return p.status

    # -- reaping ----------------------------------------------------------------------------
    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            p = self.by_pid(pid)
            if p is not None and p.status != STOPPED:
                self._exited(p, status_code(status))

    def _exited(self, p: Proc, code: int) -> None:
        p.status = STOPPED
        p.exit_status = code
        p.exited_at = time.time_ns()
        if p is self.init:
            write_durable(
                os.path.join(self.state_dir, "exit.json"),
                json.dumps({"id": self.cid, **p.exit_info()}).encode(),
            )
        if p.io.drained:
            self._report_exit(p)
        else:
            p.io.on_drained = lambda: self._report_exit(p)
            self.loop.call_later(DRAIN_TIMEOUT, lambda: self._drain_timeout(p))

    def _drain_timeout(self, p: Proc) -> None:
        if not p.exit_reported:
            p.io.stop_reading()
            self._report_exit(p)

    def _report_exit(self, p: Proc) -> None:
        if p.exit_reported:
            return
        p.exit_reported = True
        if p is self.init:
            self.check_oom()
            if self.log is not None:
                self.log.flush()
        self.events.emit("exit", p.exec_id, **p.exit_info())
        waiters, p.waiters = p.waiters, []
        for w in waiters:
            w(p.exit_info())

    # -- oom -------------------------------------------------------------------------------
    def watch_oom(self) -> None:
        import selectors

        try:
            self.cgroup = self.backend.cgroup(self.cid)
            if self.cgroup is None:
                return
            self.oom_count = self.cgroup.oom_kill_count()
            self.oom_fd = self.cgroup.oom_event_fd()
        except Exception:  # noqa: BLE001 (no memory controller: no OOM events)
            self.cgroup = None
            return
        self.loop.add(self.oom_fd, selectors.EVENT_READ, self._on_oom_fd)

    def _on_oom_fd(self, _mask: int) -> None:
        try:
            os.read(self.oom_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            self.stop_oom()
            return
        self.check_oom()

    def check_oom(self) -> None:
        if self.cgroup is None:
            return
        try:
            n = self.cgroup.oom_kill_count()
        except Exception:  # noqa: BLE001 (the cgroup went away)
            return
        if n > self.oom_count:
            self.oom_count = n
            self.events.emit("oom", "", oom_kills=n)

    def stop_oom(self) -> None:
        if self.oom_fd >= 0:
            self.loop.remove(self.oom_fd)
            os.close(self.oom_fd)
            self.oom_fd = -1

    # -- checks shared by the handlers -------------------------------------------------------
    def require_created(self) -> Proc:
        return self.proc("")

    def check_exec_allowed(self, exec_id: str) -> None:
        if not exec_id:
            raise InvalidArgument("exec id must not be empty")
        if exec_id in self.execs:
            raise AlreadyExists(f"exec {exec_id} already exists in task {self.cid}")
        init = self.require_created()
        if init.status == STOPPED:
            raise FailedPrecondition(f"cannot exec in a stopped task {self.cid}")
