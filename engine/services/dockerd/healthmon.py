"""The health-check runner: probes running containers that have a check and keeps ``State.Health``.

For every container in namespace ``moby`` whose effective check (health.py's ``merge`` of the
container's ``Config.Healthcheck``, which already carries the image's) is not ``NONE``, a probe task
runs while the container's task runs: every ``interval`` (``start_interval`` during the start period) it
runs the check as a Docker exec (so a probe is an ``exec_create``/``exec_start``/``exec_die`` in the
journal, as with dockerd), collects at most 4 KiB of output, and times out with exit code -1. A status
change is journaled as ``docker_container.health_status_changed`` (Docker's ``health_status: <status>``
event); the last 5 results are kept in memory for ``inspect``, as dockerd keeps them in its own
container store; after a daemon restart a running container starts again from ``starting``.

The runner follows the journal (an internal subscription): ``task.started`` starts a probe loop,
``task.exited``/``task.vanished``/``docker_container.removed`` end it. At daemon start it picks up the
containers already running.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from engine.errors import EngineError
from engine.events.types import Event
from engine.services.dockerd import health
from engine.services.dockerd.exec import DockerExecService

if TYPE_CHECKING:
    from engine.services import Services

log = logging.getLogger(__name__)
NAMESPACE = "moby"
ACTOR = "daemon"


class HealthStatusChanged(Event, frozen=True):
    """A container's health status changed (Docker's ``health_status: healthy|unhealthy|starting``)."""

    TYPE: ClassVar[str] = "docker_container.health_status_changed"
    SUBJECT: ClassVar[str] = "id"
    id: str
    status: str
    failing_streak: int = 0
    exit_code: int = 0
    output: str = ""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


class HealthMonitor:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.states: dict[str, health.Health] = {}
        self._probes: dict[str, asyncio.Task] = {}
        self._task: asyncio.Task | None = None

    def health_of(self, cid: str) -> dict[str, Any] | None:
        """``State.Health`` for inspect, or None for a container without a check."""
        h = self.states.get(cid)
        return h.docker() if h is not None else None

    def status_of(self, cid: str) -> str:
        """For ``docker ps``'s status column and the ``health`` filter: starting/healthy/unhealthy/none."""
        h = self.states.get(cid)
        return h.status if h is not None else health.NONE

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="health-monitor")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._probes.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._probes.clear()

    async def _follow(self) -> None:
        types = {"task.started", "task.exited", "task.vanished", "docker_container.removed"}
        sub = self.services.journal.subscribe(
            internal=True, match=lambda env: env.namespace == NAMESPACE and env.type in types)
        try:
            docker = getattr(self.services, "docker", None)
            if docker is not None:
                for c in await docker.list():
                    if c.state.status in ("running", "paused"):
                        self._begin(c)
            async for env in sub:
                cid = env.subject
                if env.type == "task.started":
                    if getattr(env.event, "exec_id", ""):
                        continue
                    with contextlib.suppress(EngineError):
                        self._begin(await self.services.docker.get(cid))  # type: ignore[attr-defined]
                else:
                    self._end(cid, forget=env.type == "docker_container.removed")
        finally:
            await sub.aclose()

    def _begin(self, c: Any) -> None:
        try:
            check = health.merge(None, (c.config or {}).get("Healthcheck"))
        except EngineError:
            check = None
        if check is None or c.id in self._probes:
            return
        self.states[c.id] = health.Health()
        self._probes[c.id] = asyncio.get_running_loop().create_task(self._probe_loop(c.id, check),
                                                                    name=f"health-{c.id[:12]}")

    def _end(self, cid: str, *, forget: bool) -> None:
        t = self._probes.pop(cid, None)
        if t is not None:
            t.cancel()
        if forget:
            self.states.pop(cid, None)

    async def _probe_loop(self, cid: str, check: health.Check) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        h = self.states[cid]
        try:
            while True:
                in_start = (loop.time() - started) * 1e9 < check.start_period_ns
                wait_ns = check.start_interval_ns if in_start and check.start_period_ns else check.interval_ns
                await asyncio.sleep(wait_ns / 1e9)
                in_start = (loop.time() - started) * 1e9 < check.start_period_ns
                result = await self._probe(cid, check)
                if result is None:  # the container is not running any more
                    return
                if h.record(check, result, in_start_period=in_start):
                    await self.services.journal.append([HealthStatusChanged(
                        id=cid, status=h.status, failing_streak=h.failing_streak, exit_code=result.exit_code,
                        output=result.output[:256])], namespace=NAMESPACE, actor=ACTOR, cause="healthcheck")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("health check of %s stopped", cid[:12])

    async def _probe(self, cid: str, check: health.Check) -> health.Result | None:
        execs = self.services.extra.get("docker_exec")  # the one exec store the API uses too
        if execs is None:
            execs = self.services.extra["docker_exec"] = DockerExecService(self.services)
        start = _now()
        try:
            e = await execs.create(cid, {"Cmd": check.argv(), "AttachStdout": True, "AttachStderr": True},
                                   actor=ACTOR)
            e = await execs.start(e.id, detach=False, actor=ACTOR)
        except EngineError as err:
            if "is not running" in str(err):
                return None
            return health.Result(start, _now(), -1, str(err))
        out = bytearray()

        async def collect() -> None:
            assert e.io is not None
            async for _stream, data in e.io.output():
                if len(out) < health.MAX_OUTPUT:
                    out.extend(data[: health.MAX_OUTPUT - len(out)])
            await e.done.wait()

        try:
            await asyncio.wait_for(collect(), check.timeout_ns / 1e9)
        except TimeoutError:
            with contextlib.suppress(EngineError):
                await self.services.tasks.kill(NAMESPACE, cid, 9, exec_id=e.id, actor=ACTOR)  # type: ignore[union-attr]
            return health.Result(start, _now(), -1,
                                 f"Health check exceeded timeout ({check.timeout_ns / 1e9:g}s)")
        finally:
            if e.io is not None:
                e.io.close()
        return health.Result(start, _now(), e.exit_code if e.exit_code is not None else -1,
                             out.decode(errors="replace"))
