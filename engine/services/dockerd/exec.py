"""Docker exec instances (``docker exec``): create, start (attached or detached), resize, inspect.

A Docker exec is a configuration (Cmd, Env, User, WorkingDir, Privileged, Tty, Attach*, DetachKeys,
ConsoleSize) that becomes a process in the container's task when started. The process itself is the
tasks service's: ``tasks.exec`` adds it to the shim, ``tasks.start`` starts it, and the tasks service
journals ``task.exec_added``/``task.exec_started``/``task.exec_exited`` (namespace ``moby``), which is
what Docker reports as ``exec_start`` and ``exec_die``. This module journals only what the tasks service
cannot know: ``docker_exec.created`` (Docker's ``exec_create``, with the command) and
``docker_exec.detached`` (the detach keys were typed).

Design choices:

* Exec instances live in memory, as in dockerd (its exec store is not persisted either); after a daemon
  restart an old exec id is unknown (404), and its journaled events remain.
* The process's stdio are FIFOs that this service creates and opens *before* the process is added, the
  way containerd's clients (dockerd among them) do: output produced before anyone reads is held by the
  FIFO and the shim, so nothing is lost between start and attach, and stdin EOF is closing our end.
* The exit code is taken from the journal (``tasks.wait``); a stream ends only after the exit is known,
  so the CLI's ``GET /exec/{id}/json`` right after the stream closes already sees ``ExitCode``.
* A resize waits (up to 10 s, as dockerd) until the start has settled: the CLI sends its first resize as
  soon as it is attached, before or while the start runs, and a window changed then would be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from engine.errors import Conflict, EngineError, InvalidArgument, NotFound
from engine.events.types import Event
from engine.services.dockerd import rootfs

if TYPE_CHECKING:
    from engine.services import Services

log = logging.getLogger(__name__)
NAMESPACE = "moby"
RESIZE_WAIT = 10.0  # seconds a resize waits for the exec's start (dockerd's)
STDOUT, STDERR = 1, 2


class DockerExecCreated(Event, frozen=True):
    """``docker exec`` made an exec instance (Docker's ``exec_create: <cmd>``)."""

    TYPE: ClassVar[str] = "docker_exec.created"
    SUBJECT: ClassVar[str] = "container_id"
    container_id: str
    exec_id: str
    cmd: list[str]
    tty: bool = False
    user: str = ""
    privileged: bool = False
    working_dir: str = ""


class DockerExecDetached(Event, frozen=True):
    """The client typed the detach keys on an attached exec (Docker's ``exec_detach``)."""

    TYPE: ClassVar[str] = "docker_exec.detached"
    SUBJECT: ClassVar[str] = "container_id"
    container_id: str
    exec_id: str


@dataclass
class DockerExec:
    id: str
    container_id: str
    config: dict[str, Any]
    created_ns: int = 0
    started: bool = False
    running: bool = False
    pid: int = 0
    exit_code: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # the start's outcome is known
    io: ExecIO | None = None

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    def inspect(self) -> dict[str, Any]:
        """Docker's ExecInspect shape (``GET /exec/{id}/json``)."""
        cmd = list(self.config.get("Cmd") or [])
        return {
            "CanRemove": False,
            "ContainerID": self.container_id,
            "DetachKeys": self.config.get("DetachKeys") or "",
            "ExitCode": self.exit_code,
            "ID": self.id,
            "OpenStderr": bool(self.config.get("AttachStderr")),
            "OpenStdin": bool(self.config.get("AttachStdin")),
            "OpenStdout": bool(self.config.get("AttachStdout")),
            "ProcessConfig": {"arguments": cmd[1:], "entrypoint": cmd[0] if cmd else "",
                              "privileged": bool(self.config.get("Privileged")), "tty": self.tty,
                              "user": self.config.get("User") or ""},
            "Running": self.running,
            "Pid": self.pid,
        }


class ExecIO:
    """Our ends of an exec's FIFOs: output as (stream, bytes) until both streams end, and stdin."""

    def __init__(self, directory: str, *, stdin: bool, stderr: bool) -> None:
        self.dir = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.paths: dict[str, str] = {}
        self._fds: dict[int, int] = {}  # our read fd -> stream
        self.stdin_fd = -1
        try:
            for name, stream in (("stdout", STDOUT), ("stderr", STDERR)):
                if name == "stderr" and not stderr:
                    continue
                path = os.path.join(directory, name)
                os.mkfifo(path, 0o600)
                self.paths[name] = path
                self._fds[os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)] = stream
            if stdin:
                path = os.path.join(directory, "stdin")
                os.mkfifo(path, 0o600)
                self.paths["stdin"] = path
                # read-write: opening never waits for the shim, and closing it is the process's EOF
                self.stdin_fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise
        self._stdin_buf = bytearray()
        self._stdin_closing = False

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """Read once the shim has opened the FIFOs (after tasks.exec): EOF then means the process's end."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[tuple[int, bytes | None]] = asyncio.Queue()

        def reader(fd: int) -> None:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)
            q.put_nowait((self._fds[fd], data or None))

        for fd in self._fds:
            loop.add_reader(fd, reader, fd)
        open_streams = len(self._fds)
        try:
            while open_streams:
                stream, data = await q.get()
                if data is None:
                    open_streams -= 1
                    continue
                yield stream, data
        finally:
            for fd in self._fds:
                loop.remove_reader(fd)

    def write_stdin(self, data: bytes) -> None:
        if self.stdin_fd < 0 or self._stdin_closing:
            return
        self._stdin_buf += data
        self._flush()

    def _flush(self) -> None:
        while self._stdin_buf and self.stdin_fd >= 0:
            try:
                n = os.write(self.stdin_fd, self._stdin_buf[:65536])
            except BlockingIOError:
                asyncio.get_running_loop().call_later(0.01, self._flush)
                return
            except OSError:
                self._stdin_buf.clear()
                break
            del self._stdin_buf[:n]
        if self._stdin_closing and not self._stdin_buf and self.stdin_fd >= 0:
            os.close(self.stdin_fd)
            self.stdin_fd = -1

    def close_stdin(self) -> None:
        """EOF on the process's stdin once what was written is delivered."""
        self._stdin_closing = True
        self._flush()

    def close(self) -> None:
        loop = None
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
        for fd in list(self._fds):
            if loop is not None:
                loop.remove_reader(fd)
            os.close(fd)
        self._fds.clear()
        if self.stdin_fd >= 0:
            os.close(self.stdin_fd)
            self.stdin_fd = -1
        shutil.rmtree(self.dir, ignore_errors=True)


def _env_merge(base: list[str], extra: list[str]) -> list[str]:
    out = {e.partition("=")[0]: e for e in base}
    for e in extra:
        out[e.partition("=")[0]] = e
    return list(out.values())


def normalise_config(body: Any) -> dict[str, Any]:
    """Docker's ExecConfig, checked: Cmd a non-empty list of strings, Env a list, the rest typed."""
    if not isinstance(body, dict):
        raise InvalidArgument("invalid exec config: expected a JSON object")
    cmd = body.get("Cmd")
    if isinstance(cmd, str):
        cmd = [cmd]
    if not cmd:
        raise InvalidArgument("No exec command specified")
    if not isinstance(cmd, list) or not all(isinstance(c, str) for c in cmd):
        raise InvalidArgument("invalid exec config: Cmd must be a list of strings")
    env = body.get("Env") or []
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise InvalidArgument("invalid exec config: Env must be a list of strings")
    cfg: dict[str, Any] = {"Cmd": cmd, "Env": env}
    for key in ("User", "WorkingDir", "DetachKeys"):
        v = body.get(key) or ""
        if not isinstance(v, str):
            raise InvalidArgument(f"invalid exec config: {key} must be a string")
        cfg[key] = v
    for key in ("Privileged", "Tty", "AttachStdin", "AttachStdout", "AttachStderr"):
        cfg[key] = bool(body.get(key))
    size = body.get("ConsoleSize")
    if size is not None:
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(x, int) and x >= 0 for x in size)):
            raise InvalidArgument("invalid exec config: ConsoleSize must be [height, width]")
        cfg["ConsoleSize"] = size
    if cfg["WorkingDir"] and not cfg["WorkingDir"].startswith("/"):
        raise InvalidArgument(f"the working directory '{cfg['WorkingDir']}' is invalid, it needs to be an absolute path")
    return cfg


class DockerExecService:
    """Exec instances of Docker containers over the tasks service (see the module docstring)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.execs: dict[str, DockerExec] = {}
        # no exec outlives its daemon: FIFOs a killed daemon left are garbage
        if services.config is not None:
            shutil.rmtree(os.path.join(services.config.exec_root, "docker-exec"), ignore_errors=True)

    # ---- helpers ------------------------------------------------------------------------------------
    async def require_running(self, cid: str) -> Any:
        assert self.services.tasks is not None
        try:
            t = await self.services.tasks.get(NAMESPACE, cid)
        except NotFound:
            raise Conflict(f"container {cid} is not running") from None
        if t.status == "paused":
            raise Conflict(f"Container {cid} is paused, unpause the container before exec")
        if t.status != "running":
            raise Conflict(f"container {cid} is not running")
        return t

    def get(self, exec_id: str) -> DockerExec:
        e = self.execs.get(exec_id)
        if e is None:
            # Docker also accepts a unique prefix? It does not: exec ids are looked up exactly
            raise NotFound(f"No such exec instance: {exec_id}")
        return e

    # ---- commands -----------------------------------------------------------------------------------
    async def create(self, container_id: str, body: Any, *, actor: str) -> DockerExec:
        """A new exec instance in a running container (`container_id` already resolved to the full id)."""
        cfg = normalise_config(body)
        await self.require_running(container_id)
        e = DockerExec(id=secrets.token_hex(32), container_id=container_id, config=cfg, created_ns=time.time_ns())
        await self.services.journal.append([DockerExecCreated(
            container_id=container_id, exec_id=e.id, cmd=cfg["Cmd"], tty=cfg["Tty"], user=cfg["User"],
            privileged=cfg["Privileged"], working_dir=cfg["WorkingDir"])], namespace=NAMESPACE, actor=actor)
        self.execs[e.id] = e
        self._forget_old()
        return e

    def _forget_old(self) -> None:
        """Exited instances are kept for inspection; the oldest beyond 1000 are dropped."""
        if len(self.execs) <= 1000:
            return
        done = sorted((e for e in self.execs.values() if e.exit_code is not None), key=lambda e: e.created_ns)
        for e in done[: len(self.execs) - 1000]:
            self.execs.pop(e.id, None)

    def check_startable(self, e: DockerExec) -> None:
        if e.running:
            raise Conflict(f"Error: Exec command {e.id} is already running")
        if e.started:
            raise Conflict(f"Error: Exec command {e.id} has already run")

    async def start(self, exec_id: str, *, detach: bool, console_size: list[int] | None = None,
                    actor: str) -> DockerExec:
        """Start the process; unless `detach`, ``e.io`` is then its stdio (read ``e.io.output()``).

        Whether the process has a terminal is the create's ``Tty``; the start's ``Tty`` only chooses the
        stream's framing (dockerd's rule), which is the API layer's business."""
        assert self.services.tasks is not None and self.services.containers is not None
        tasks = self.services.tasks
        e = self.get(exec_id)
        self.check_startable(e)
        t = await self.require_running(e.container_id)
        e.started = True
        cfg = e.config
        if console_size:
            cfg["ConsoleSize"] = console_size
        try:
            spec = await self._process_spec(e, t)
            io = None
            if not detach:
                io = ExecIO(os.path.join(self.services.config.exec_root, "docker-exec", e.id),
                            stdin=cfg["AttachStdin"], stderr=not e.tty)
            e.io = io
            await tasks.exec(NAMESPACE, e.container_id, e.id, spec, stdin=io.paths.get("stdin", "") if io else "",
                             stdout=io.paths.get("stdout", "") if io else "",
                             stderr=io.paths.get("stderr", "") if io else "", terminal=e.tty, actor=actor)
            e.pid = await tasks.start(NAMESPACE, e.container_id, e.id, actor=actor)
        except EngineError as err:
            # it has run, and failed to: dockerd's codes for a command not found (127) or not runnable (126)
            msg = str(err).lower()
            cmd0 = (cfg["Cmd"] or [""])[0].lower()
            e.exit_code = 127 if cmd0 in msg and ("no such file" in msg or "not found" in msg) else 126
            e.done.set()
            e.settled.set()
            if e.io is not None:
                e.io.close()
                e.io = None
            raise
        except BaseException:
            e.started = False
            if e.io is not None:
                e.io.close()
                e.io = None
            raise
        e.running = True
        try:
            size = cfg.get("ConsoleSize")
            if e.tty and size and size[0] and size[1]:
                with contextlib.suppress(EngineError):
                    await tasks.resize_pty(NAMESPACE, e.container_id, size[1], size[0], e.id)
        finally:
            e.settled.set()  # after the start's own size, so a resize that waited is not overwritten by it
        asyncio.get_running_loop().create_task(self._reap(e, actor))
        return e

    async def _reap(self, e: DockerExec, actor: str) -> None:
        assert self.services.tasks is not None
        try:
            code, _ = await self.services.tasks.wait(NAMESPACE, e.container_id, e.id)
            e.exit_code = code
        except EngineError as err:  # the task went away with the exec in it
            log.info("exec %s: %s", e.id[:12], err)
            e.exit_code = 137 if e.exit_code is None else e.exit_code
        finally:
            e.running = False
            e.done.set()
        with contextlib.suppress(EngineError):
            await self.services.tasks.delete(NAMESPACE, e.container_id, e.id, actor=actor)

    async def detached(self, e: DockerExec, *, actor: str) -> None:
        await self.services.journal.append([DockerExecDetached(container_id=e.container_id, exec_id=e.id)],
                                           namespace=NAMESPACE, actor=actor)

    async def resize(self, exec_id: str, height: int, width: int) -> None:
        assert self.services.tasks is not None
        e = self.get(exec_id)
        try:  # (a start cut short leaves it unsettled: the exec can be started again)
            await asyncio.wait_for(e.settled.wait(), RESIZE_WAIT)
        except TimeoutError:
            raise EngineError("timeout waiting for exec session ready") from None
        if not e.running:
            raise Conflict(f"exec {exec_id} is not running")
        if not e.tty:
            return  # as containerd's shim: resizing a process without a terminal does nothing
        await self.services.tasks.resize_pty(NAMESPACE, e.container_id, width, height, exec_id)

    async def _process_spec(self, e: DockerExec, t: Any) -> dict[str, Any]:
        """The exec's OCI process: the container's, with the exec's args, env, cwd, user, tty, caps."""
        assert self.services.containers is not None
        c = await self.services.containers.get(NAMESPACE, e.container_id)
        spec = json.loads(c.spec.value) if c.spec is not None and c.spec.value else {}
        base = dict(spec.get("process") or {})
        cfg = e.config
        proc: dict[str, Any] = {k: v for k, v in base.items() if k not in ("consoleSize", "terminal")}
        proc["args"] = list(cfg["Cmd"])
        proc["env"] = _env_merge(list(base.get("env") or []), cfg["Env"])
        proc["cwd"] = cfg["WorkingDir"] or base.get("cwd") or "/"
        proc["terminal"] = e.tty
        if cfg["User"]:
            root = os.path.join(t.bundle, "rootfs") if t.bundle else ""
            uid, gid, extra = await asyncio.get_running_loop().run_in_executor(
                None, rootfs.lookup_user, root, cfg["User"])
            proc["user"] = {"uid": uid, "gid": gid, **({"additionalGids": extra} if extra else {})}
        if cfg["Privileged"]:
            from engine.services.dockerd.spec import host_capabilities

            allcaps = host_capabilities()  # all the daemon may hand out (its own bounding set)
            proc["capabilities"] = {k: allcaps for k in ("bounding", "effective", "permitted")}
            proc.pop("apparmorProfile", None)
            proc.pop("selinuxLabel", None)
        size = cfg.get("ConsoleSize")
        if e.tty and size and size[0] and size[1]:
            proc["consoleSize"] = {"height": size[0], "width": size[1]}
        return proc


