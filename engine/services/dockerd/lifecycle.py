"""A Docker container's life: start, stop, kill, restart, pause/unpause, wait, remove, prune; the exit monitor.

The process is the tasks service's (namespace ``moby``, task id = container id); this module decides what
Docker means by each verb and journals what only Docker knows (record.py's events).

* **start** regenerates the spec (dockerd builds it at start too: a ``docker update`` or a user looked up
  in the image's /etc/passwd takes effect), creates the working directory in the rootfs when missing,
  mounts the volumes, then ``tasks.create`` (the rootfs mounts of the snapshot; the shim writes the
  json-file log itself, or holds the pty with ``Tty``) and ``tasks.start``. A failure is journaled as
  ``docker_container.start_failed`` with Docker's exit code (127 not found, 126 not executable, else 128)
  and the task is deleted again.
* **stop** journals ``stop_requested`` (the restart policy then leaves the container alone), sends the
  stop signal, waits ``t`` seconds (``StopTimeout``, else 10), then SIGKILL; ``docker_container.stopped``
  once it has exited (Docker's ``stop`` event). **kill** journals ``kill_requested`` and signals.
* **The exit monitor** (monitor.py) follows the journal's exits in ``moby``: it deletes the exited task,
  detaches the network, unmounts volumes, then applies ``AutoRemove`` or the restart policy.
* **wait** answers from the journal: ``not-running`` at once when not running, ``next-exit`` at the
  next exit, ``removed`` at ``docker_container.removed``.
* Commands on one container hold a per-id lock; reads never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal as _signal
from typing import TYPE_CHECKING, Any

from engine.errors import Conflict, EngineError, FailedPrecondition, InvalidArgument, NotFound
from engine.filters import docker_labels_match
from engine.services.containers import OCI_SPEC_TYPE_URL, AnyBlob, Container
from engine.services.dockerd import hostconfig, netattach
from engine.services.dockerd import mounts as mountmod
from engine.services.dockerd import record as rec
from engine.services.dockerd import spec as specmod
from engine.services.dockerd.monitor import EXIT_TYPES as _EXIT_TYPES
from engine.services.dockerd.monitor import ExitMonitor
from engine.services.dockerd.record import NAMESPACE, DockerContainer

if TYPE_CHECKING:
    from engine.services import Services

log = logging.getLogger(__name__)
DEFAULT_STOP_TIMEOUT = 10
ATTACH_WAIT_S = 2.0
ATTACH_GRACE_S = 0.05
_FAULT = os.environ.get("ENGINE_FAULT_DOCKER", "")


class NotModified(EngineError):
    """Docker's 304: start of a running container, stop of a stopped one."""

    http_status = 304


def _exit_code_for(err: str) -> int:
    low = err.lower()
    if "permission denied" in low or "is a directory" in low or "not executable" in low:
        return 126
    if "no such file" in low or "not found" in low:
        return 127
    return 128


class Lifecycle(ExitMonitor):
    def __init__(self, services: Services) -> None:
        self.services = services
        self._locks: dict[str, asyncio.Lock] = {}
        self._monitor: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self._restart_delay: dict[str, float] = {}
        self._restart_pending: set[str] = set()  # a scheduled restart is waiting: one exit, one restart
        self._attaching: dict[str, set[asyncio.Event]] = {}  # attach_pending: start waits for these

    def lock(self, cid: str) -> asyncio.Lock:
        lk = self._locks.get(cid)
        if lk is None:
            lk = self._locks[cid] = asyncio.Lock()
        return lk

    async def _append(self, events: list[Any], *, actor: str, cause: str = "api", check: Any = None) -> None:
        await self.services.journal.append(events, namespace=NAMESPACE, actor=actor, cause=cause, check=check)

    async def _task(self, cid: str) -> Any:
        assert self.services.tasks is not None
        try:
            return await self.services.tasks.get(NAMESPACE, cid)
        except NotFound:
            return None

    # ---- start ----------------------------------------------------------------------------------------
    def attach_pending(self, cid: str) -> asyncio.Event:
        """For an attach that will follow the container's output (``docker run`` attaches, then starts): the
        caller sets the returned event once its reader is registered with the shim and calls ``attach_done``
        when it ends. A start waits (at most ATTACH_WAIT_S) between creating the task and starting its process
        until every pending attach is set, so the first bytes the process writes reach the client."""
        ev = asyncio.Event()
        self._attaching.setdefault(cid, set()).add(ev)
        return ev

    def attach_done(self, cid: str, ev: asyncio.Event) -> None:
        ev.set()
        waiting = self._attaching.get(cid)
        if waiting is not None:
            waiting.discard(ev)
            if not waiting:
                del self._attaching[cid]

    async def _await_attaches(self, cid: str) -> None:
        waiting = self._attaching.get(cid)
        pending = [e for e in waiting or () if not e.is_set()]
        if pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ATTACH_WAIT_S):
                    await asyncio.gather(*(e.wait() for e in pending))
        elif waiting is None and await self.services.journal.run_read(lambda conn: _attached_since_stop(conn, cid)):
            # stop-gap while the attach endpoint does not register (attach_pending): a client attached since
            # the container last stopped is given a moment to reach the shim before the process runs
            await asyncio.sleep(ATTACH_GRACE_S)

    async def start(self, cid: str, *, actor: str, cause: str = "api") -> None:
        c = await self.resolve(cid)  # type: ignore[attr-defined]
        async with self.lock(c.id):
            try:
                await self._start_locked(c.id, actor=actor, cause=cause)
            except NotModified:
                raise
            except EngineError:
                if c.host_config.get("AutoRemove"):  # docker run --rm whose start failed leaves nothing
                    with contextlib.suppress(EngineError):
                        await self._remove_locked(c.id, force=True, volumes=True, actor=actor, cause="auto-remove")
                raise

    async def _start_locked(self, cid: str, *, actor: str, cause: str = "api") -> None:
        s = self.services
        assert s.tasks is not None and s.containers is not None and s.snapshots is not None
        c: DockerContainer = await self.get(cid)  # type: ignore[attr-defined]
        st = c.state.status
        if st == rec.PAUSED:
            raise Conflict("cannot start a paused container, try unpause instead")
        if st in (rec.REMOVING, rec.DEAD):
            raise Conflict("container is marked for removal and cannot be started")
        if st == rec.RUNNING:
            raise NotModified("container already started")
        t = await self._task(cid)
        if t is not None:
            if t.status in ("running", "paused"):
                raise NotModified("container already started")
            # stopped, or created and never started (a daemon died between the task's create and its start):
            # the Docker container is not running, so the old task goes and a fresh one is made
            if t.status == "created":
                with contextlib.suppress(EngineError):
                    await s.tasks.kill(NAMESPACE, cid, 9, all=True, actor=actor)
            await s.tasks.delete(NAMESPACE, cid, actor=actor)
        # endpoints a start left when the daemon died half-way (attached, then no task): not running now,
        # so whatever network state the container has is stale
        await netattach.stop(s, cid, actor=actor)
        try:
            netns = await netattach.start(s, c, actor=actor)
        except EngineError as err:
            await self._append([rec.DockerContainerStartFailed(id=cid, error=str(err)[:1024], exit_code=128)],
                               actor=actor, cause=cause)
            raise
        try:
            spec = await self._spec_at_start(c, actor=actor, netns=netns)
            rc = await s.containers.get(NAMESPACE, cid)
            blob = json.dumps(spec).encode()
            if rc.spec is None or rc.spec.value != blob:
                await s.containers.update(NAMESPACE, Container(id=cid, spec=AnyBlob(OCI_SPEC_TYPE_URL, blob),
                                                                runtime=rc.runtime, snapshotter=rc.snapshotter),
                                          ["spec"], actor=actor)
            mounts = await s.snapshots.mounts(c.snapshotter, cid, namespace=NAMESPACE)
            lc = c.host_config.get("LogConfig") or {}
            logopt = None
            if c.log_path:
                opts = lc.get("Config") or {}
                logopt = {"path": c.log_path,
                          "max_size": hostconfig.log_max_size(opts["max-size"]) if opts.get("max-size") else -1,
                          "max_file": int(opts.get("max-file") or 1)}
            await s.tasks.create(NAMESPACE, cid, rootfs_mounts=mounts, terminal=bool(c.config.get("Tty")),
                                 log=logopt, open_stdin=bool(c.config.get("OpenStdin")),
                                 options=runtime_options(s.config, c.host_config.get("Runtime") or ""), actor=actor)
        except EngineError as err:
            await netattach.stop(s, cid, actor=actor)
            await self._append([rec.DockerContainerStartFailed(id=cid, error=str(err)[:1024],
                                                               exit_code=_exit_code_for(str(err)))],
                               actor=actor, cause=cause)
            raise _start_error(err) from err
        await self._await_attaches(cid)  # the clients attached before the start see every byte
        try:
            await s.tasks.start(NAMESPACE, cid, actor=actor)
        except EngineError as err:
            with contextlib.suppress(EngineError):
                await s.tasks.delete(NAMESPACE, cid, actor=actor)
            await netattach.stop(s, cid, actor=actor)
            await self._append([rec.DockerContainerStartFailed(id=cid, error=str(err)[:1024],
                                                               exit_code=_exit_code_for(str(err)))],
                               actor=actor, cause=cause)
            raise _start_error(err) from err

    async def _spec_at_start(self, c: DockerContainer, *, actor: str, netns: str | None = None) -> dict[str, Any]:
        s = self.services
        ctx = specmod.Context(cgroup_parent=s.config.cgroup_parent, netns_path=netns or "")
        user = c.config.get("User") or ""
        wd = c.config.get("WorkingDir") or ""
        if user or (wd and wd != "/"):
            from engine.services.dockerd import rootfs

            async with rootfs.mounted(s, c.id) as root:
                if user:
                    try:
                        ctx.uid, ctx.gid, extra = await asyncio.to_thread(rootfs.lookup_user, root, user)
                    except NotFound as err:
                        raise InvalidArgument(str(err)) from None
                    ctx.additional_gids = extra
                if wd:
                    host = rootfs.resolve(root, wd)
                    if not os.path.isdir(host):
                        await asyncio.to_thread(os.makedirs, host, 0o755, True)
                        with contextlib.suppress(OSError):
                            os.chown(host, ctx.uid, ctx.gid)
        for g in c.host_config.get("GroupAdd") or []:
            if g.isdigit():
                ctx.additional_gids.append(int(g))
        if c.host_config.get("Init"):
            ctx.init_path = s.config.init_path or shutil.which("tini-static") or "/usr/bin/tini-static"
        net = c.host_config.get("NetworkMode") or ""
        if net.startswith("container:"):
            other = await self._task(net[len("container:"):])
            if other is None or other.status != "running":
                raise Conflict(f"cannot join network of a non running container: {net[len('container:'):]}")
            ctx.netns_path = f"/proc/{other.pid}/ns/net"
        for m in c.mounts:
            p = mountmod.MountPoint(**m)
            if p.type == "volume":
                assert s.volumes is not None
                p.source = await s.volumes.mount(p.name, c.id, destination=p.destination, read_write=p.rw,
                                                 actor=actor)
                if "nocopy" not in p.mode.split(","):
                    await self._copy_up(c, p, actor=actor)
            ctx.mounts.append(p.oci())
        return specmod.build(c, ctx)

    async def _copy_up(self, c: DockerContainer, p: mountmod.MountPoint, *, actor: str) -> None:
        """Docker's copy-up: an empty volume mounted where the image has content gets that content first."""
        s = self.services
        assert s.volumes is not None
        if await asyncio.to_thread(lambda: bool(os.listdir(p.source))):
            return
        from engine.services.dockerd import rootfs

        async with rootfs.mounted(s, c.id) as root:
            try:
                src = rootfs.resolve(root, p.destination)
            except EngineError:
                return
            if os.path.isdir(src):
                from pathlib import Path

                await s.volumes.populate(p.name, Path(src), container=c.id, actor=actor)

    # ---- signals --------------------------------------------------------------------------------------
    async def kill(self, ref: str, sig: str = "", *, actor: str) -> None:
        c = await self.resolve(ref)  # type: ignore[attr-defined]
        signum = hostconfig.parse_signal(sig) if sig else int(_signal.SIGKILL)
        async with self.lock(c.id):
            c = await self.get(c.id)  # type: ignore[attr-defined]
            if not c.state.running:
                raise Conflict(f"container {c.id} is not running")
            await self._append([rec.DockerContainerKillRequested(id=c.id, signal=signum)], actor=actor)
            if signum != _signal.SIGKILL:
                await self._signal(c, signum, actor=actor)
                return
            waiter = asyncio.ensure_future(self._wait_exit(c.id))  # dockerd's SIGKILL kill waits for the exit
            try:
                await self._signal(c, signum, actor=actor)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, 30)
            finally:
                waiter.cancel()
            await self._delete_exited_task(c.id, actor=actor)

    async def _signal(self, c: DockerContainer, signum: int, *, actor: str) -> None:
        assert self.services.tasks is not None
        try:
            await self.services.tasks.kill(NAMESPACE, c.id, signum, actor=actor)
        except NotFound:
            return  # already exited
        if c.state.status == rec.PAUSED and signum == _signal.SIGKILL:
            with contextlib.suppress(EngineError):
                await self.services.tasks.resume(NAMESPACE, c.id, actor=actor)

    async def stop(self, ref: str, *, timeout: int | None = None, sig: str = "", actor: str) -> None:
        c = await self.resolve(ref)  # type: ignore[attr-defined]
        async with self.lock(c.id):
            await self._stop_locked(c.id, timeout=timeout, sig=sig, actor=actor)

    async def _stop_locked(self, cid: str, *, timeout: int | None, sig: str, actor: str) -> None:
        c: DockerContainer = await self.get(cid)  # type: ignore[attr-defined]
        if not c.state.running:
            if c.state.status == rec.RESTARTING:
                await self._append([rec.DockerContainerStopRequested(id=cid, signal=15),
                                    rec.DockerContainerStopped(id=cid)], actor=actor)
                return
            raise NotModified("container already stopped")
        signum = hostconfig.parse_signal(sig or c.config.get("StopSignal") or "SIGTERM")
        if timeout is None:
            timeout = c.config.get("StopTimeout")
            timeout = DEFAULT_STOP_TIMEOUT if timeout is None else timeout
        await self._append([rec.DockerContainerStopRequested(id=cid, signal=signum, timeout=timeout)], actor=actor)
        waiter = asyncio.ensure_future(self._wait_exit(cid))
        try:
            await self._signal(c, signum, actor=actor)
            if c.state.status == rec.PAUSED:
                with contextlib.suppress(EngineError):
                    assert self.services.tasks is not None
                    await self.services.tasks.resume(NAMESPACE, cid, actor=actor)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), None if timeout < 0 else timeout)
            except TimeoutError:
                await self._signal(await self.get(cid), int(_signal.SIGKILL), actor=actor)  # type: ignore[attr-defined]
                await asyncio.wait_for(asyncio.shield(waiter), 30)
        finally:
            waiter.cancel()
        await self._delete_exited_task(cid, actor=actor)  # settled before `docker stop` returns, as dockerd
        await self._append([rec.DockerContainerStopped(id=cid)], actor=actor)

    async def _wait_exit(self, cid: str) -> None:
        """Until the container's state is no longer running (its task exited)."""
        j = self.services.journal
        sub = j.subscribe(internal=True, match=lambda env: env.namespace == NAMESPACE and env.subject == cid
                          and env.type in (*_EXIT_TYPES, "docker_container.removed"))
        try:
            while True:
                c = await self.services.journal.run_read(lambda conn: rec.read(conn, cid))
                if c is None or not c.state.running:  # type: ignore[attr-defined]
                    return
                await sub.__anext__()
        finally:
            await sub.aclose()

    async def _delete_exited_task(self, cid: str, *, actor: str) -> None:
        t = await self._task(cid)
        if t is not None and t.status == "stopped":
            assert self.services.tasks is not None
            with contextlib.suppress(NotFound, FailedPrecondition):
                await self.services.tasks.delete(NAMESPACE, cid, actor=actor)
        if t is None or t.status == "stopped":
            await netattach.stop(self.services, cid, actor=actor)

    async def restart(self, ref: str, *, timeout: int | None = None, sig: str = "", actor: str) -> None:
        c = await self.resolve(ref)  # type: ignore[attr-defined]
        async with self.lock(c.id):
            with contextlib.suppress(NotModified):
                await self._stop_locked(c.id, timeout=timeout, sig=sig, actor=actor)
            with contextlib.suppress(NotModified):
                await self._start_locked(c.id, actor=actor)
            await self._append([rec.DockerContainerRestarted(id=c.id)], actor=actor)

    async def pause(self, ref: str, *, actor: str) -> None:
        c = await self.resolve(ref)  # type: ignore[attr-defined]
        async with self.lock(c.id):
            c = await self.get(c.id)  # type: ignore[attr-defined]
            if c.state.status == rec.PAUSED:
                raise Conflict(f"container {c.id} is already paused")
            if c.state.status == rec.RESTARTING:
                raise Conflict(f"Container {c.id} is restarting, wait until the container is running")
            if c.state.status != rec.RUNNING:
                raise Conflict(f"container {c.id} is not running")
            assert self.services.tasks is not None
            await self.services.tasks.pause(NAMESPACE, c.id, actor=actor)

    async def unpause(self, ref: str, *, actor: str) -> None:
        c = await self.resolve(ref)  # type: ignore[attr-defined]
        async with self.lock(c.id):
            c = await self.get(c.id)  # type: ignore[attr-defined]
            if c.state.status != rec.PAUSED:
                raise Conflict(f"Container {c.id} is not paused")
            assert self.services.tasks is not None
            await self.services.tasks.resume(NAMESPACE, c.id, actor=actor)

    # ---- wait -----------------------------------------------------------------------------------------
    async def wait(self, cid: str, condition: str = "not-running") -> tuple[int, str | None]:
        """(exit code, error) per Docker's wait conditions; `cid` is a full id.

        As with dockerd, whose state turns to exited only once containerd's task is deleted, an exit is
        reported after the exit monitor has deleted the task: a client that goes on to export, copy
        from or remove the container finds it settled."""
        if condition in ("", None):
            condition = "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: \"{condition}\"")
        j = self.services.journal
        types = (*_EXIT_TYPES, "docker_container.removed", "docker_container.create_failed")
        sub = j.subscribe(internal=True, match=lambda env: env.namespace == NAMESPACE and env.subject == cid
                          and env.type in types)
        try:
            c = await j.run_read(lambda conn: rec.read(conn, cid))
            if c is None:
                raise NotFound(f"No such container: {cid}")
            last = c.state.exit_code  # type: ignore[attr-defined]
            if condition == "not-running" and not c.state.running:  # type: ignore[attr-defined]
                await self._settled(cid)
                return last, None
            async for env in sub:
                ev = env.event
                if env.type in _EXIT_TYPES:
                    last = ev.exit_status  # type: ignore[attr-defined]
                    if condition != "removed":
                        await self._settled(cid)
                        return last, None
                elif env.type in ("docker_container.removed", "docker_container.create_failed"):
                    return last, None
            raise EngineError("the journal closed while waiting")
        finally:
            await sub.aclose()

    async def _settled(self, cid: str, timeout: float = 10) -> None:
        """Until the container's exited task is deleted (or it runs again, or `timeout`)."""
        j = self.services.journal
        sub = j.subscribe(internal=True, match=lambda env: env.namespace == NAMESPACE and env.subject == cid
                          and env.type in ("task.deleted", "task.started", "docker_container.removed"))
        try:
            t = await self._task(cid)
            if t is None or t.status in ("created", "running", "paused"):
                return
            with contextlib.suppress(TimeoutError, StopAsyncIteration):
                async with asyncio.timeout(timeout):
                    await sub.__anext__()
        finally:
            await sub.aclose()

    # ---- remove ---------------------------------------------------------------------------------------
    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False, link: bool = False,
                     actor: str) -> None:
        if link:
            raise InvalidArgument("legacy container links are not supported by engine")
        c = await self.resolve(ref)  # type: ignore[attr-defined]
        async with self.lock(c.id):
            await self._remove_locked(c.id, force=force, volumes=volumes, actor=actor, shown=ref)

    async def _remove_locked(self, cid: str, *, force: bool, volumes: bool, actor: str, cause: str = "api",
                             shown: str = "") -> None:
        s = self.services
        assert s.tasks is not None and s.containers is not None and s.snapshots is not None
        c: DockerContainer = await self.get(cid)  # type: ignore[attr-defined]
        if c.state.status == rec.REMOVING:
            raise Conflict(f"removal of container {cid} is already in progress")
        if c.state.running and c.state.status != rec.RESTARTING:
            if not force:
                why = "container is paused and must be unpaused first" if c.state.paused else \
                    "container is running: stop the container before removing or force remove"
                raise Conflict(f'cannot remove container "{shown or c.short_name}": {why}')
            await self._append([rec.DockerContainerKillRequested(id=cid, signal=9)], actor=actor, cause=cause)
            waiter = asyncio.ensure_future(self._wait_exit(cid))
            try:
                await self._signal(c, int(_signal.SIGKILL), actor=actor)
                await asyncio.wait_for(waiter, 30)
            finally:
                waiter.cancel()

        def check(tx: Any) -> None:
            cur = rec.read(tx, cid)
            if cur is None:
                raise NotFound(f"No such container: {cid}")
            if cur.state.status == rec.REMOVING:
                raise Conflict(f"removal of container {cid} is already in progress")

        await self._append([rec.DockerContainerRemoveRequested(id=cid)], actor=actor, cause=cause, check=check)
        if _FAULT == "remove:requested":  # crash tests: the intent journaled, nothing removed yet
            os.kill(os.getpid(), _signal.SIGKILL)
        try:
            t = await self._task(cid)
            if t is not None:
                if t.status in ("running", "paused", "created"):
                    with contextlib.suppress(EngineError):
                        await s.tasks.kill(NAMESPACE, cid, 9, all=True, actor=actor)
                    with contextlib.suppress(EngineError):
                        await asyncio.wait_for(s.tasks.wait(NAMESPACE, cid), 10)
                await s.tasks.delete(NAMESPACE, cid, actor=actor)
            await self._unmount_volumes(c, actor=actor)
            await netattach.stop(s, cid, actor=actor)
            with contextlib.suppress(NotFound):
                await s.containers.delete(NAMESPACE, cid, actor=actor)
            with contextlib.suppress(NotFound):
                await s.snapshots.remove(c.snapshotter, cid, namespace=NAMESPACE, actor=actor)
            if s.volumes is not None and c.volumes:
                await s.volumes.dereference_all(cid, actor=actor, remove_anonymous=volumes)
            if c.directory:
                await asyncio.to_thread(shutil.rmtree, c.directory, True)
        except EngineError as err:
            await self._append([rec.DockerContainerRemoveFailed(id=cid, error=str(err)[:1024])], actor=actor,
                               cause=cause)
            raise
        await self._append([rec.DockerContainerRemoved(id=cid)], actor=actor, cause=cause)

    async def _unmount_volumes(self, c: DockerContainer, *, actor: str) -> None:
        if self.services.volumes is None:
            return
        for name in c.volumes:
            with contextlib.suppress(EngineError):
                await self.services.volumes.unmount(name, c.id, actor=actor)

    async def prune(self, *, until_ns: int = 0, labels: list[str] | None = None,
                    actor: str) -> tuple[list[str], int]:
        removed, reclaimed = [], 0
        for c in await self.list():  # type: ignore[attr-defined]
            if c.state.running or c.state.status == rec.REMOVING:
                continue
            if until_ns and c.created >= until_ns:
                continue
            if not docker_labels_match(c.config.get("Labels") or {}, labels or []):
                continue
            size = 0
            with contextlib.suppress(EngineError):
                assert self.services.snapshots is not None
                size = (await self.services.snapshots.usage(c.snapshotter, c.id, namespace=NAMESPACE)).size
            try:
                async with self.lock(c.id):
                    await self._remove_locked(c.id, force=False, volumes=False, actor=actor)
            except (Conflict, NotFound):
                continue
            removed.append(c.id)
            reclaimed += size
        await self._append([rec.DockerContainersPruned(removed=removed, reclaimed=reclaimed)], actor=actor)
        return removed, reclaimed


def _attached_since_stop(conn: Any, cid: str) -> bool:
    """Whether a client attached (``docker_stream.attached``) since the container was created or last exited."""
    row = conn.execute("SELECT max(seq) FROM events WHERE subject = ? AND namespace = ? AND type IN"
                       " ('docker_container.created', 'task.exited', 'task.vanished')", (cid, NAMESPACE)).fetchone()
    since = row[0] or 0
    return conn.execute("SELECT 1 FROM events WHERE subject = ? AND namespace = ? AND seq > ? AND"
                        " type = 'docker_stream.attached' LIMIT 1", (cid, NAMESPACE, since)).fetchone() is not None


BUILTIN_RUNTIMES = ("engine", "io.containerd.runc.v2")


def runtime_options(cfg: Any, name: str) -> dict[str, str] | None:
    """The tasks service's runc options for Docker's ``--runtime NAME``: None for engine's in-process runtime,
    else the binary of a configured runtime (``--add-runtime``/daemon.json ``runtimes``) or of runc/crun on
    PATH; Docker's error for any other name."""
    name = name or cfg.default_runtime
    if name in BUILTIN_RUNTIMES:
        return None
    path = (cfg.runtimes.get(name) or {}).get("path") or (shutil.which(name) if name in ("runc", "crun") else None)
    if not path:
        raise InvalidArgument(f"unknown or invalid runtime name: {name}")
    return {"binary_name": path}


def _start_error(err: EngineError) -> EngineError:
    msg = str(err)
    if isinstance(err, (InvalidArgument, Conflict, NotModified)):
        return err
    if _exit_code_for(msg) in (126, 127):
        return InvalidArgument(f"failed to create task for container: {msg}")
    if isinstance(err, FailedPrecondition):
        return Conflict(msg)
    return err
