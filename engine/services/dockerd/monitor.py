"""The exit monitor of Docker containers, and what the daemon settles at start.

It follows the journal's ``task.exited``/``task.vanished`` in namespace ``moby`` (an internal
subscription). For each exit of a Docker container it deletes the exited task (as dockerd does: ``ctr -n
moby tasks ls`` is empty after an exit), detaches its network and unmounts its volumes, then applies
``AutoRemove`` or the restart policy (restart.py's rules: ``docker_container.restart_scheduled``, then a
start after the delay, unless the container was stopped by hand or removed meanwhile). At daemon start,
once the tasks' recovery has journaled what happened while the daemon was down, exited and restarting
containers get the same treatment (with the restart rules for a daemon start), and a removal cut by a
crash is finished.

A mixin of ``Lifecycle`` (lifecycle.py): it uses its lock, start, removal and task helpers.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from engine.errors import EngineError
from engine.services.dockerd import record as rec
from engine.services.dockerd import restart
from engine.services.dockerd.record import NAMESPACE

if TYPE_CHECKING:
    from engine.services import Services
    from engine.services.dockerd.record import DockerContainer

log = logging.getLogger(__name__)
EXIT_TYPES = ("task.exited", "task.vanished")
_EXIT_TYPES = EXIT_TYPES


class ExitMonitor:
    services: Services
    _monitor: asyncio.Task | None
    _background: set[asyncio.Task]
    _restart_delay: dict[str, float]
    _restart_pending: set[str]

    if TYPE_CHECKING:  # provided by Lifecycle / DockerContainerService
        def lock(self, cid: str) -> asyncio.Lock: ...
        async def list(self) -> builtins.list[DockerContainer]: ...
        async def _append(self, events: builtins.list[Any], *, actor: str, cause: str = "api", check: Any = None) -> None: ...
        async def _delete_exited_task(self, cid: str, *, actor: str) -> None: ...
        async def _unmount_volumes(self, c: DockerContainer, *, actor: str) -> None: ...
        async def _remove_locked(self, cid: str, *, force: bool, volumes: bool, actor: str, cause: str = "api",
                                 shown: str = "") -> None: ...
        async def _start_locked(self, cid: str, *, actor: str, cause: str = "api") -> None: ...

    def start_monitor(self) -> None:
        self._monitor = asyncio.get_running_loop().create_task(self._run_monitor(), name="docker-exit-monitor")

    async def close(self) -> None:
        for t in [self._monitor, *self._background]:
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def _run_monitor(self) -> None:
        j = self.services.journal
        sub = j.subscribe(internal=True, match=lambda env: env.namespace == NAMESPACE and env.type in _EXIT_TYPES)
        try:
            async for env in sub:
                self._spawn(self._on_exit(env.subject, env.time_ns))
        except EngineError as err:
            log.info("docker exit monitor stopped: %s", err)
        finally:
            await sub.aclose()

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    async def _on_exit(self, cid: str, exited_ns: int, *, at_daemon_start: bool = False) -> None:
        try:
            async with self.lock(cid):
                c = await self.services.journal.run_read(lambda conn: rec.read(conn, cid))
                if c is None or c.state.status in (rec.REMOVING, rec.DEAD):  # type: ignore[attr-defined]
                    return
                await self._delete_exited_task(cid, actor="daemon")
                if c.state.status in (rec.RUNNING, rec.PAUSED):  # type: ignore[attr-defined]
                    return  # started again meanwhile
                if cid in self._restart_pending:  # the exit monitor and the daemon-start pass saw the same exit
                    return
                await self._unmount_volumes(c, actor="daemon")  # type: ignore[arg-type]
                if c.host_config.get("AutoRemove") and not at_daemon_start:  # type: ignore[attr-defined]
                    await self._remove_locked(cid, force=False, volumes=True, actor="daemon", cause="auto-remove")
                    return
                pol = restart.parse(c.host_config.get("RestartPolicy"))  # type: ignore[attr-defined]
                st = c.state  # type: ignore[attr-defined]
                if not restart.should_restart(pol, exit_code=st.exit_code, restart_count=c.restart_count,  # type: ignore[attr-defined]
                                              manually_stopped=st.manually_stopped, at_daemon_start=at_daemon_start):
                    return
                ran = max(0.0, (st.finished_at - st.started_at) / 1e9) if st.started_at else 0.0
                delay = restart.next_delay(self._restart_delay.get(cid, 0.0), ran)
                self._restart_delay[cid] = delay
                await self._append([rec.DockerContainerRestartScheduled(
                    id=cid, restart_count=c.restart_count + 1, delay_ms=int(delay * 1000))],  # type: ignore[attr-defined]
                    actor="daemon", cause="restart-policy")
                self._restart_pending.add(cid)
            try:
                await asyncio.sleep(delay)
                async with self.lock(cid):
                    c = await self.services.journal.run_read(lambda conn: rec.read(conn, cid))
                    if c is None or c.state.status != rec.RESTARTING or c.state.manually_stopped:  # type: ignore[attr-defined]
                        return
                    with contextlib.suppress(EngineError):
                        await self._start_locked(cid, actor="daemon", cause="restart-policy")
            finally:
                self._restart_pending.discard(cid)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("container %s: handling its exit failed", cid[:12])

    async def recover_lifecycle(self, *, actor: str = "daemon") -> None:
        """After the tasks' recovery: settle exits journaled while nobody watched, apply restart policies."""
        s = self.services
        if s.tasks is not None and s.tasks.recovery is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(s.tasks.recovery)
        for c in await self.list():  # type: ignore[attr-defined]
            if c.state.status == rec.REMOVING:  # a removal cut by the stop: recorded as failed, then finished
                with contextlib.suppress(EngineError):
                    async with self.lock(c.id):
                        await self._append([rec.DockerContainerRemoveFailed(id=c.id, error="the daemon stopped "
                                                                            "during the removal")], actor=actor,
                                           cause="recover")
                        await self._remove_locked(c.id, force=True, volumes=False, actor=actor, cause="recover")
                continue
            if c.state.status in (rec.EXITED, rec.RESTARTING):
                self._spawn(self._on_exit(c.id, time.time_ns(), at_daemon_start=True))
