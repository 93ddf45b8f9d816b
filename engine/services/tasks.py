"""containerd tasks: a container's running instance, driven through its shim, as a journal projection.

``TaskService`` is the local implementation of containerd's Tasks service. Its events and the
``tasks``/``task_execs`` projection are in task_events.py; recovery after a daemon restart is in
task_recovery.py. Layout on disk (all derived from the config's two roots):

* bundle: ``<exec-root>/bundles/<ns>/<id>/`` with ``config.json`` (the container's spec, as stored)
  and ``rootfs/`` (the rootfs mounts mounted on it, when any are given);
* shim socket: ``<exec-root>/shims/<ns>/<id>.sock``; shim state dir: ``<root>/shims/<ns>/<id>``
  (the shim's ``exit.json`` and, for the in-process runtime, ``runtime/`` — the runtime's state).

Design choices:

* Commands on one task are serialised by a per-(namespace, id) ``asyncio.Lock``; reads are SELECTs
  and never wait for it. Validation that depends on state runs inside the journal's transaction
  (``check``), so a refused command appends nothing and touches nothing.
* Each shim has one client and one *pump*: a background task reading the shim's event stream and
  journaling what the daemon must never miss (exits, OOM kills) with the shim's event number, then
  acknowledging it to the shim. A resubscribe after a restart starts after the last recorded number,
  and the projection refuses a number it already has, so nothing is recorded twice or lost.
* Outcomes that a short process can overtake (``task.started`` after ``task.exited``) cannot move a
  task backwards: the projection only moves ``created → running``.
* ``wait`` follows the journal, not the shim: it answers from the projection, and across a restart.
* The OCI runtime is the service's (``runtime``: a binary such as runc, or "" for the in-process engine
  runtime); ``create(options=...)`` (containerd's runc options) chooses the runtime binary (``binary_name``)
  and its state root (``root``/<namespace>), and
  ``checkpoint`` is Unimplemented.
* ``fault(point)``: with ``ENGINE_FAULT_TASKS=<point>`` in the environment the process SIGKILLs itself
  there (create:requested, create:spawned, create:created, start:requested, start:started,
  delete:requested, delete:deleted), so tests can crash the daemon on either side of every side effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import (
    AlreadyExists,
    EngineError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    Unimplemented,
)
from engine.events.journal import Journal
from engine.runtime.shim.client import ShimClient, shim_argv, spawn_from_fork_server, spawn_shim
from engine.services import task_events as te
from engine.services.namespaces import validate_name
from engine.services.task_events import ExecProcess, Task, read_all, read_task  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from engine.config import Config
    from engine.services.containers import ContainerService

log = logging.getLogger(__name__)
PROJECTION = te.PROJECTION
Key = tuple[str, str]
FAULT_ENV = "ENGINE_FAULT_TASKS"  # e.g. "start:started": die after the shim started the task, before the outcome
_FAULT = os.environ.get(FAULT_ENV, "")


def _need(tx: sqlite3.Cursor, ns: str, cid: str) -> Task:
    t = read_task(tx, ns, cid)
    if t is None:
        raise NotFound(f"task {cid!r} in namespace {ns!r}: not found")
    return t


def runtime_of(options: Any, namespace: str, default: str) -> tuple[str, str]:
    """(OCI runtime binary, its state root) from containerd's runc options: ``binary_name`` (a path, or a
    name looked up on PATH) and ``root`` (the runtime's state lives under ``<root>/<namespace>``, as
    containerd's runc shim keeps it); ("", "") is the in-process engine runtime in the shim's state dir."""
    if not isinstance(options, dict):
        return default, ""
    runtime = default
    binary = options.get("binary_name") or ""
    if binary:
        path = binary if os.path.isabs(binary) else shutil.which(binary)
        if not path or not os.access(path, os.X_OK):
            raise InvalidArgument(f"runtime binary {binary!r}: not found or not executable")
        runtime = path
    root = options.get("root") or ""
    return runtime, (os.path.join(root, namespace) if root else "")


class TaskService:
    """containerd's Tasks service, over shims; see the module docstring."""

    def __init__(self, journal: Journal, containers: ContainerService, config: Config, *, runtime: str = "",
                 fork_server: str = "", shim_executable: str = "") -> None:
        self.journal, self.containers, self.config = journal, containers, config
        self.runtime = runtime  # an OCI runtime binary (runc, crun); "" = the in-process engine runtime
        self.fork_server = fork_server
        self.shim_executable = shim_executable
        self.forker: Any = None  # the daemon's ShimForker (engine/services/shim_forker.py), when it runs one
        self._locks: dict[Key, asyncio.Lock] = {}
        self._clients: dict[Key, ShimClient] = {}
        self._pumps: dict[Key, asyncio.Task] = {}
        # a start in flight: the pump holds that process's exit until the start's outcome is journaled,
        # so a process that exits at once still reads started-then-exited in the journal
        self._starting: dict[tuple[str, str, str], asyncio.Event] = {}
        self._deleting: set[Key] = set()
        self._listed: asyncio.Event | None = None  # set once recovery knows which tasks it must look at
        self._recovering: dict[Key, asyncio.Event] = {}
        self.recovery: asyncio.Task | None = None

    # ---- paths ----------------------------------------------------------------------------------
    def bundle_dir(self, ns: str, cid: str) -> Path:
        return Path(self.config.exec_root) / "bundles" / ns / cid

    def shim_socket(self, ns: str, cid: str) -> Path:
        return Path(self.config.exec_root) / "shims" / ns / f"{cid}.sock"

    def state_dir(self, ns: str, cid: str) -> Path:
        return Path(self.config.root) / "shims" / ns / cid

    # ---- plumbing -------------------------------------------------------------------------------
    def _lock(self, key: Key) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _ready(self, key: Key) -> None:
        """Wait until recovery has dealt with this task (commands only; reads never wait)."""
        if self._listed is not None:
            await self._listed.wait()
            ev = self._recovering.get(key)
            if ev is not None:
                await ev.wait()

    @contextlib.asynccontextmanager
    async def _command(self, key: Key) -> AsyncIterator[None]:
        """Wait for the task's recovery (outside the lock: recovery takes it), then hold its lock."""
        await self._ready(key)
        async with self._lock(key):
            yield

    async def _append(self, key: Key, events: Any, *, actor: str, cause: str = "api", check: Any = None) -> list:
        return await self.journal.append(events, namespace=key[0], actor=actor, cause=cause, check=check)

    async def _client(self, key: Key, t: Task) -> ShimClient:
        c = self._clients.get(key)
        if c is not None and c.connected:
            return c
        c = await ShimClient.connect(t.shim_socket)
        self._clients[key] = c
        return c

    def start_pump(self, key: Key, client: ShimClient, after: int, backlog_until: int = 0) -> asyncio.Event:
        """Follow the shim's events after `after`; the returned Event is set once the backlog is journaled."""
        old = self._pumps.pop(key, None)
        if old is not None:
            old.cancel()
        caught_up = asyncio.Event()
        if backlog_until <= after:
            caught_up.set()
        self._pumps[key] = asyncio.get_running_loop().create_task(
            self._pump(key, client, after, backlog_until, caught_up))
        return caught_up

    async def _stop_pump(self, key: Key) -> None:
        pump = self._pumps.pop(key, None)
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    async def _pump(self, key: Key, client: ShimClient, after: int, backlog_until: int,
                    caught_up: asyncio.Event) -> None:
        """Journal the shim's exits and OOM kills in order; events up to `backlog_until` were missed."""
        try:
            async for ev in client.events(after=after):
                cause = "recover" if ev["seq"] <= backlog_until else "shim"
                try:
                    recorded = await self.record_shim_event(key, ev, cause=cause)
                except EngineError as err:  # the journal refused (closing, sealed): the shim keeps the event
                    log.warning("task %s/%s: shim event %d not recorded: %s", key[0], key[1], ev["seq"], err)
                    return
                if recorded:  # only what the journal holds is acknowledged, so a resubscribe gets the rest
                    with contextlib.suppress(EngineError):
                        await client.ack(ev["seq"])
                if ev["seq"] >= backlog_until:
                    caught_up.set()
        except Unavailable as err:
            caught_up.set()  # recovery holds the lock while it waits for the backlog
            if key in self._deleting:
                return
            log.warning("task %s/%s: shim connection lost: %s", key[0], key[1], err)
            from engine.services.task_recovery import shim_gone

            self._pumps.pop(key, None)
            async with self._lock(key):
                await shim_gone(self, key, cause="shim")
        except Exception:
            log.exception("task %s/%s: event pump failed", *key)
        finally:
            caught_up.set()

    async def record_shim_event(self, key: Key, ev: dict, *, cause: str) -> bool:
        """Journal an exit or OOM kill from the shim; False for the kinds the journal does not keep."""
        cid, seq, exec_id = key[1], ev["seq"], ev.get("exec_id", "")
        out: te.Event | None = None
        if ev["type"] == "exit" and not exec_id:
            out = te.TaskExited(container_id=cid, pid=ev["pid"], exit_status=ev["exit_status"],
                                exited_at=ev["exited_at"], shim_seq=seq)
        elif ev["type"] == "exit":
            out = te.TaskExecExited(container_id=cid, exec_id=exec_id, pid=ev["pid"], exit_status=ev["exit_status"],
                                    exited_at=ev["exited_at"], shim_seq=seq)
        elif ev["type"] == "oom":
            out = te.TaskOOM(container_id=cid, oom_kills=ev.get("oom_kills", 0), shim_seq=seq)
        if out is None:
            return False
        gate = self._starting.get((*key, exec_id)) if ev["type"] == "exit" else None
        if gate is not None:
            await gate.wait()
        with contextlib.suppress(te.Duplicate):
            await self._append(key, [out], actor="shim", cause=cause)
        return True

    # ---- commands --------------------------------------------------------------------------------
    async def create(self, namespace: str, container_id: str, *, rootfs_mounts: Sequence[Any] = (), stdin: str = "",
                     stdout: str = "", stderr: str = "", terminal: bool = False, checkpoint: str | None = None,
                     options: Any = None, log: dict | None = None, open_stdin: bool = False, actor: str) -> Task:
        """Write the bundle, mount the rootfs, start a shim and create the container's init in it.

        `log` ({path, max_size, max_file}) makes the shim write the output itself in Docker's json-file
        format, so nothing printed while the daemon is down is lost. `open_stdin` gives the process a stdin
        pipe that ``write_stdin`` feeds (Docker's ``-i`` without a FIFO of the client's).
        """
        validate_name(namespace)
        if checkpoint:
            raise Unimplemented("creating a task from a checkpoint is not supported")
        c = await self.containers.get(namespace, container_id)
        if c.spec is None or not c.spec.value:
            raise InvalidArgument(f"container {container_id!r} has no spec")
        try:
            spec = json.loads(c.spec.value)
        except ValueError as err:
            raise InvalidArgument(f"container {container_id!r}: the spec is not JSON: {err}") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("process"), dict):
            raise InvalidArgument(f"container {container_id!r}: the spec has no process")
        mounts = tuple(te.RootfsMount(m.type, m.source, tuple(m.options)) for m in rootfs_mounts)
        key = (namespace, container_id)
        bundle, sock, state = self.bundle_dir(*key), self.shim_socket(*key), self.state_dir(*key)
        runtime, runtime_root = runtime_of(options, namespace, self.runtime)

        def check(tx: sqlite3.Cursor) -> None:
            if read_task(tx, namespace, container_id) is not None:
                raise AlreadyExists(f"task {container_id!r}: already exists")

        async with self._command(key):
            await self._append(key, [te.TaskCreateRequested(
                container_id=container_id, bundle=str(bundle), shim_socket=str(sock), state_dir=str(state),
                mounts=mounts, stdin=stdin, stdout=stdout, stderr=stderr, terminal=terminal,
                log_path=str((log or {}).get("path", "")))], actor=actor, check=check)
            fault("create:requested")
            try:
                from engine.services.task_recovery import write_bundle

                await asyncio.get_running_loop().run_in_executor(None, write_bundle, bundle, c.spec.value, mounts)
                argv = shim_argv(container_id, namespace, str(sock), str(state), runtime=runtime,
                                 runtime_root=runtime_root, log=os.path.join(self.config.exec_root, "shim.log"))
                if self.forker is not None:
                    shim_pid = await self.forker.spawn(argv)
                else:
                    shim_pid = await (spawn_from_fork_server(self.fork_server, argv) if self.fork_server
                                      else spawn_shim(argv, self.shim_executable))
                fault("create:spawned")
                client = await ShimClient.connect(str(sock))
                self._clients[key] = client
                res = await client.create(str(bundle), stdin=stdin, stdout=stdout, stderr=stderr, terminal=terminal,
                                          open_stdin=bool(stdin) or open_stdin, log=log)
            except BaseException as err:
                from engine.services.task_recovery import teardown

                stale = self._clients.pop(key, None)
                await teardown(self, key, stale, str(bundle), str(state), str(sock), mounts)
                await self._append(key, [te.TaskCreateFailed(container_id=container_id, error=str(err) or repr(err))],
                                   actor=actor)
                if isinstance(err, EngineError) or not isinstance(err, Exception):
                    raise
                raise Unavailable(f"create task {container_id!r}: {err}") from err
            fault("create:created")
            await self._append(key, [te.TaskCreated(container_id=container_id, pid=res["pid"], shim_pid=shim_pid)],
                               actor=actor)
            self.start_pump(key, client, 0)
            return await self.get(namespace, container_id)

    async def start(self, namespace: str, container_id: str, exec_id: str = "", *, actor: str) -> int:
        """Start the init (or an added exec); returns its pid."""
        key = (namespace, container_id)

        def check(tx: sqlite3.Cursor) -> None:
            t = _need(tx, namespace, container_id)
            if not exec_id:
                if t.status != te.CREATED:
                    raise FailedPrecondition(f"task {container_id!r} is {t.status}: it can only be started once")
                return
            e = next((e for e in t.execs if e.exec_id == exec_id), None)
            if e is None:
                raise NotFound(f"exec {exec_id!r} in task {container_id!r}: not found")
            if e.status != te.CREATED:
                raise FailedPrecondition(f"exec {exec_id!r} is {e.status}: it can only be started once")
            if t.status != te.RUNNING:
                raise FailedPrecondition(f"cannot start an exec in a {t.status} task {container_id!r}")

        async with self._command(key):
            await self._append(key, [te.TaskStartRequested(container_id=container_id, exec_id=exec_id)], actor=actor,
                               check=check)
            gate = self._starting[(*key, exec_id)] = asyncio.Event()
            try:
                try:
                    t = await self.get(namespace, container_id)
                    fault("start:requested")
                    res = await (await self._client(key, t)).start(exec_id)
                    fault("start:started")
                except EngineError as err:
                    await self._append(key, [te.TaskStartFailed(container_id=container_id, exec_id=exec_id,
                                                                error=str(err))], actor=actor)
                    raise
                ev: te.Event = (te.TaskExecStarted(container_id=container_id, exec_id=exec_id, pid=res["pid"])
                                if exec_id else te.TaskStarted(container_id=container_id, pid=res["pid"]))
                await self._append(key, [ev], actor=actor)
                return int(res["pid"])
            finally:
                self._starting.pop((*key, exec_id), None)
                gate.set()

    async def _live(self, key: Key, what: str, *, allow: tuple[str, ...] = (te.CREATED, te.RUNNING, te.PAUSED)
                    ) -> tuple[Task, ShimClient]:
        t = await self.get(*key)
        if t.status not in allow:
            raise FailedPrecondition(f"cannot {what} a {t.status} task {key[1]!r}")
        return t, await self._client(key, t)

    async def kill(self, namespace: str, container_id: str, signal: int = 15, *, all: bool = False,  # noqa: A002
                   exec_id: str = "", actor: str) -> None:
        key = (namespace, container_id)
        async with self._command(key):
            t = await self.get(namespace, container_id)
            if t.status == te.STOPPED and not all and not exec_id:
                raise NotFound(f"task {container_id!r}: process already finished")
            _, client = await self._live(key, "kill", allow=(te.CREATED, te.RUNNING, te.PAUSED, te.STOPPED))
            await client.kill(signal, exec_id, all)
            await self._append(key, [te.TaskKilled(container_id=container_id, signal=signal, all=all,
                                                   exec_id=exec_id)], actor=actor)

    async def pause(self, namespace: str, container_id: str, *, actor: str) -> None:
        await self._simple(namespace, container_id, "pause", te.TaskPaused, actor, allow=(te.RUNNING,))

    async def resume(self, namespace: str, container_id: str, *, actor: str) -> None:
        await self._simple(namespace, container_id, "resume", te.TaskResumed, actor, allow=(te.PAUSED,))

    async def _simple(self, ns: str, cid: str, what: str, event: type, actor: str, allow: tuple[str, ...]) -> None:
        key = (ns, cid)
        async with self._command(key):
            _, client = await self._live(key, what, allow=allow)
            await getattr(client, what)()
            await self._append(key, [event(container_id=cid)], actor=actor)

    async def update(self, namespace: str, container_id: str, resources: dict, *, actor: str) -> None:
        if not isinstance(resources, dict):
            raise InvalidArgument("resources must be an object (OCI linux.resources)")
        key = (namespace, container_id)
        async with self._command(key):
            _, client = await self._live(key, "update", allow=(te.CREATED, te.RUNNING, te.PAUSED))
            await client.update(resources)
            await self._append(key, [te.TaskUpdated(container_id=container_id, resources=resources)], actor=actor)

    async def exec(self, namespace: str, container_id: str, exec_id: str, spec: dict, *, stdin: str = "",
                   stdout: str = "", stderr: str = "", terminal: bool = False, actor: str) -> None:
        """Add an exec process (an OCI process spec); start it with ``start(..., exec_id)``."""
        validate_name(exec_id)
        if not isinstance(spec, dict) or not spec.get("args"):
            raise InvalidArgument("exec spec must be an OCI process with args")
        key = (namespace, container_id)
        async with self._command(key):
            t = await self.get(namespace, container_id)
            if any(e.exec_id == exec_id for e in t.execs):
                raise AlreadyExists(f"exec {exec_id!r} already exists in task {container_id!r}")
            _, client = await self._live(key, "exec in", allow=(te.CREATED, te.RUNNING, te.PAUSED))
            await client.exec(exec_id, {**spec, "terminal": terminal}, stdin=stdin, stdout=stdout, stderr=stderr,
                              open_stdin=bool(stdin))
            await self._append(key, [te.TaskExecAdded(container_id=container_id, exec_id=exec_id)], actor=actor)

    async def resize_pty(self, namespace: str, container_id: str, width: int, height: int,
                         exec_id: str = "") -> None:
        _, client = await self._live((namespace, container_id), "resize the terminal of")
        await client.resize_pty(width, height, exec_id)

    async def attach(self, namespace: str, container_id: str, exec_id: str = "", *,
                     ready: asyncio.Event | None = None) -> AsyncIterator[tuple[int, bytes]]:
        """The process's output from now on as (1 stdout | 2 stderr, bytes) — raw pty bytes on 1 for a
        terminal — until the process's output ends (or its shim goes). Each attach is its own shim
        connection, so any number can follow one process at once; NotFound for an unknown task or exec.
        `ready` is set once the shim registered this reader (a start can wait for it: nothing is missed)."""
        client: ShimClient | None = None
        try:
            t = await self.get(namespace, container_id)
            if exec_id and not any(e.exec_id == exec_id for e in t.execs):
                raise NotFound(f"exec {exec_id!r} in task {container_id!r}: not found")
            if t.status not in (te.CREATED, te.RUNNING, te.PAUSED, te.STOPPED):
                return
            try:
                client = await ShimClient.connect(t.shim_socket)
            except Unavailable:
                if (await self.get(namespace, container_id)).status == te.STOPPED:
                    return  # the output ended with the shim
                raise
        finally:
            if client is None and ready is not None:
                ready.set()  # nothing to follow: nobody should wait for this reader
        try:
            async for item in client.attach(exec_id, ready=ready):
                yield item
        except Unavailable as err:  # the shim went: its output ended
            log.info("task %s/%s: attach ended: %s", namespace, container_id, err)
        finally:
            await client.close()

    async def write_stdin(self, namespace: str, container_id: str, data: bytes, exec_id: str = "") -> None:
        """Feed the process's stdin (a task created with stdin or ``open_stdin``); ``close_io`` ends it."""
        _, client = await self._live((namespace, container_id), "write to the stdin of")
        client.write_stdin(data, exec_id)
        await client.drain()

    async def close_io(self, namespace: str, container_id: str, exec_id: str = "") -> None:
        _, client = await self._live((namespace, container_id), "close the stdin of")
        await client.close_io(exec_id)

    async def pids(self, namespace: str, container_id: str) -> list[dict]:
        _, client = await self._live((namespace, container_id), "list the processes of")
        return await client.pids()

    async def metrics(self, namespace: str, container_id: str) -> dict:
        _, client = await self._live((namespace, container_id), "read the metrics of")
        return await client.stats()

    async def delete(self, namespace: str, container_id: str, exec_id: str = "", *, actor: str) -> Task:
        """Delete an exec process, or the task: collect the exit, end the shim, unmount, remove the bundle."""
        key = (namespace, container_id)
        async with self._command(key):
            t = await self.get(namespace, container_id)
            if exec_id:
                e = next((e for e in t.execs if e.exec_id == exec_id), None)
                if e is None:
                    raise NotFound(f"exec {exec_id!r} in task {container_id!r}: not found")
                if e.status == te.RUNNING:
                    raise FailedPrecondition(f"cannot delete a running exec {exec_id!r}")
                res = await (await self._client(key, t)).delete(exec_id)
                await self._append(key, [te.TaskExecDeleted(container_id=container_id, exec_id=exec_id,
                                                            exit_status=res.get("exit_status", 0))], actor=actor)
                return await self.get(namespace, container_id)

            def check(tx: sqlite3.Cursor) -> None:
                cur = _need(tx, namespace, container_id)
                if cur.status not in (te.CREATED, te.STOPPED):
                    raise FailedPrecondition(f"cannot delete a {cur.status} task {container_id!r}: kill it first")
                running = [e.exec_id for e in cur.execs if e.status == te.RUNNING]
                if running:
                    raise FailedPrecondition(f"cannot delete task {container_id!r}: exec processes are running")

            await self._append(key, [te.TaskDeleteRequested(container_id=container_id)], actor=actor, check=check)
            fault("delete:requested")
            from engine.services.task_recovery import finish_delete

            return await finish_delete(self, key, actor=actor, cause="api")

    # ---- reads --------------------------------------------------------------------------------------
    async def get(self, namespace: str, container_id: str) -> Task:
        t = await self.journal.run_read(lambda conn: read_task(conn, namespace, container_id))
        if t is None:
            raise NotFound(f"task {container_id!r} in namespace {namespace!r}: not found")
        return t  # type: ignore[return-value]

    async def list(self, namespace: str | None = None) -> list[Task]:
        return await self.journal.run_read(lambda conn: read_all(conn, namespace))  # type: ignore[return-value]

    async def wait(self, namespace: str, container_id: str, exec_id: str = "") -> tuple[int, int]:
        """(exit_status, exited_at) once the process has exited, as the journal records it."""
        types = {"task.exec_exited"} if exec_id else {"task.exited", "task.vanished", "task.deleted"}
        sub = self.journal.subscribe(internal=True, match=lambda env: env.namespace == namespace and env.subject == container_id
                                     and env.type in types)
        try:
            while True:
                t = await self.get(namespace, container_id)
                if exec_id:
                    e = next((e for e in t.execs if e.exec_id == exec_id), None)
                    if e is None:
                        raise NotFound(f"exec {exec_id!r} in task {container_id!r}: not found")
                    if e.status == te.STOPPED:
                        return e.exit_status, e.exited_at
                elif t.status == te.STOPPED or (t.status == te.DELETING and t.pending == te.STOPPED):
                    return t.exit_status, t.exited_at
                try:
                    env = await sub.__anext__()
                except StopAsyncIteration:
                    raise Unavailable("the journal closed while waiting for the task") from None
                if isinstance(env.event, te.TaskDeleted):
                    return env.event.exit_status, env.event.exited_at
        finally:
            await sub.aclose()

    # ---- life cycle ---------------------------------------------------------------------------------
    def start_recovery(self) -> asyncio.Task:
        """Begin recovery in the background (DESIGN §2.5); commands on a task wait for its turn."""
        from engine.services.task_recovery import recover

        self._listed = asyncio.Event()
        self.recovery = asyncio.get_running_loop().create_task(recover(self))
        return self.recovery

    async def close(self) -> None:
        """Stop following shims (they keep running); the next daemon recovers them."""
        if self.recovery is not None and not self.recovery.done():
            self.recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.recovery
        for key in list(self._pumps):
            await self._stop_pump(key)
        for c in self._clients.values():
            await c.close()
        self._clients.clear()


def fault(point: str) -> None:
    """Fault injection for the restart tests: SIGKILL this process at `point` when FAULT_ENV names it."""
    if _FAULT and point == _FAULT:
        os.kill(os.getpid(), signal.SIGKILL)

