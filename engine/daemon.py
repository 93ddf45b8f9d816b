"""The composition root: config → journal → services → servers; signals; a clean shutdown.

One uvloop process. Start-up order: take the root's lock (a second daemon on the same root exits at once),
open and migrate the journal, record ``daemon.started`` (noting whether the previous run stopped
cleanly), then open the Docker API and containerd sockets. SIGTERM/SIGINT stop accepting, let requests in
flight finish, record ``daemon.stopped`` and close the journal; SIGHUP re-reads the config file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import engine
from engine.config import Config
from engine.errors import EngineError, Unavailable
from engine.events.journal import Journal
from engine.events.types import DaemonInitialized, DaemonReloaded, DaemonStarted, DaemonStopped
from engine.images.snapshots import make_backend
from engine.services import Services, all_projections
from engine.services.containers import ContainerService
from engine.services.dockerd.containers import DockerContainerService
from engine.services.dockerd.healthmon import HealthMonitor
from engine.services.gc import open_content_services
from engine.services.images import ImageService, ImageSource
from engine.services.namespaces import NamespaceService
from engine.services.shim_forker import ShimForker
from engine.services.snapshots import SnapshotService
from engine.services.tasks import TaskService
from engine.services.volumes import VolumeService

log = logging.getLogger("engine.daemon")
ACTOR = "daemon"
# The journal's writer thread and the event loop share the GIL; Python's default 5 ms switch interval
# would let one hold it for 5 ms while the other has a commit to hand over. Measured in bench/journal.py.
SWITCH_INTERVAL = 0.0005


class RootLock:
    """An exclusive flock on <root>/engine.lock holding the owner's pid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise Unavailable(
                f"another engine daemon (pid {owner}) is already running on {self.path.parent}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = -1


async def _identity(journal: Journal) -> tuple[str, bool]:
    """(daemon uuid, whether the previous daemon stopped cleanly), initialising a new journal."""

    def q(conn):  # type: ignore[no-untyped-def]
        first = conn.execute("SELECT subject FROM events WHERE type = 'daemon.initialized' ORDER BY seq LIMIT 1").fetchone()
        last = conn.execute(
            "SELECT type FROM events WHERE type IN ('daemon.started', 'daemon.stopped') ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return (first[0] if first else None), (last is None or last[0] == "daemon.stopped")

    daemon_id, clean = await journal.run_read(q)  # type: ignore[misc]
    if daemon_id is None:
        daemon_id = str(uuid.uuid4())
        await journal.append([DaemonInitialized(daemon_id=daemon_id, version=engine.__version__)],
                             namespace="", actor=ACTOR, cause="init")
    return daemon_id, clean


class Daemon:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.lock = RootLock(cfg.lock_path)
        self.exec_lock = RootLock(Path(cfg.exec_root) / "engine.lock")
        self.stopping = asyncio.Event()
        self.stop_signal = ""
        self.journal: Journal | None = None
        self.services: Services | None = None
        self.servers: list = []

    async def run(self) -> None:
        cfg = self.cfg
        # 0710, as dockerd keeps /var/lib/docker: the journal is the audit trail and holds configurations
        os.makedirs(cfg.root, 0o710, exist_ok=True)
        os.chmod(cfg.root, 0o710)
        os.makedirs(cfg.exec_root, 0o711, exist_ok=True)
        self.lock.acquire()
        try:
            self.exec_lock.acquire()
        except BaseException:
            self.lock.release()
            raise
        try:
            self.journal = Journal(cfg.db_path, all_projections(), synchronous=cfg.journal_durability)
            await self.journal.open()
            try:
                await self._serve()
            finally:
                await self.journal.close()
        finally:
            self.exec_lock.release()
            self.lock.release()

    async def _serve(self) -> None:
        cfg, journal = self.cfg, self.journal
        assert journal is not None
        daemon_id, clean = await _identity(journal)
        if not clean:
            log.warning("the previous daemon on this root did not stop cleanly: recovering")
        await journal.append([DaemonStarted(daemon_id=daemon_id, pid=os.getpid(), version=engine.__version__,
                                            previous_stop_clean=clean)], namespace="", actor=ACTOR, cause="start")
        self.services = services = Services(journal=journal, namespaces=NamespaceService(journal),
                                            daemon_uuid=daemon_id, config=cfg, started_ns=time.time_ns())
        # GC runs on request (a lease deleted with sync, an image removed with sync) and on its scheduler
        # (soon after a deletion, and periodically); image targets and containers' snapshots are its roots.
        content = await open_content_services(journal, cfg.root, actor=ACTOR)
        services.content, services.leases, services.gc = content.content, content.leases, content.gc
        services.gc.add_source(ImageSource())
        services.images = ImageService(journal, collect=services.gc.collect)
        services.snapshots = SnapshotService(journal, {name: make_backend(name, cfg.root)
                                                       for name in ("overlayfs", "native")})
        services.gc.snapshots = services.snapshots  # unreferenced committed snapshots are collected too
        services.containers = ContainerService(journal)
        services.tasks = TaskService(journal, services.containers, cfg)
        forker = ShimForker(cfg.exec_root)
        try:  # shims forked from a warm server start in ~3 ms instead of ~30 ms
            if os.environ.get("ENGINE_SHIM_FORK_SERVER", "1") != "0":
                await forker.start()
                services.tasks.forker = forker
        except (OSError, EngineError) as err:
            log.warning("no shim fork server (%s): every task gets a fresh shim process", err)
        from engine.services.networks import recovery as net_recovery
        from engine.services.networks import service as net_service

        services.networks = net_service.NetworkService.from_config(journal, cfg)  # bridges, ports, embedded DNS
        await net_recovery.recover_or_log(services.networks)  # before containers restart and attach
        services.docker = DockerContainerService(services)  # the dockerd role's containers (namespace moby)
        from engine.services.pull import PullService

        services.pull = PullService(services)  # registry pulls and pushes (the Docker API's and the CLI's)
        services.volumes = VolumeService(journal, cfg.root)
        # reconnect to the shims in the background: the API answers meanwhile, and a command on a task
        # waits for that task's recovery (exits that happened while the daemon was down journaled first)
        recovery = services.tasks.start_recovery()
        services.docker.run_background()  # exit monitor; finish cut creates, apply restart policies after the tasks' recovery
        health = services.extra["health"] = HealthMonitor(services)  # probes the running containers' checks
        health.start()
        volumes_recovery = asyncio.create_task(self._recover_volumes(services, recovery), name="volumes-recovery")
        report = await services.snapshots.recover(actor=ACTOR)
        if any(vars(report).values()):
            log.warning("snapshots recovered after an unclean stop: %s", report)
        gc_task = asyncio.create_task(services.gc.run_scheduler(), name="gc-scheduler")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        try:
            await self._start_servers(services)
            log.info("engine %s running (root %s, exec-root %s, journal at seq %d)", engine.__version__,
                     cfg.root, cfg.exec_root, journal.last_seq)
            await self.stopping.wait()
            log.info("stopping on %s", self.stop_signal or "request")
        finally:
            gc_task.cancel()
            volumes_recovery.cancel()
            await asyncio.gather(gc_task, volumes_recovery, return_exceptions=True)
            await health.close()
            await services.docker.close()  # the exit monitor and pending restarts; the next daemon resumes them
            await self._stop_servers()
            await forker.close()  # after the APIs drained: a create in flight still gets a forked shim
            await journal.append([DaemonStopped(daemon_id=daemon_id, pid=os.getpid(), signal=self.stop_signal)],
                                 namespace="", actor=ACTOR, cause="stop")

    @staticmethod
    async def _recover_volumes(services: Services, tasks_recovery: asyncio.Task) -> None:
        """Once the tasks are recovered: volume directories made or removed, mounts of gone containers released."""
        with contextlib.suppress(Exception):
            await tasks_recovery
        assert services.volumes is not None and services.docker is not None
        try:
            running = {c.id for c in await services.docker.list() if c.state.running}
            await services.volumes.recover(running, actor=ACTOR)
        except Exception:
            log.exception("volume recovery failed")

    async def _start_servers(self, services: Services) -> None:
        from engine.api.containerd.server import serve_containerd
        from engine.api.docker.server import serve_docker

        cfg = self.cfg
        self.servers.append(await serve_docker(services, cfg))
        grpc_path = str(cfg.grpc_socket)
        self.servers.append(await serve_containerd(services, grpc_path, cfg.group))
        log.info("containerd API listening on unix://%s", grpc_path)

    async def _stop_servers(self) -> None:
        from engine.api.containerd.server import stop_containerd
        from engine.api.docker.http import HttpServer

        async def stop(server: object) -> None:
            try:
                await (server.stop() if isinstance(server, HttpServer) else stop_containerd(server))  # type: ignore[arg-type]
            except Exception:
                log.exception("error while stopping a server")

        # both APIs drain at once: stop accepting, finish what is in flight, close the streams
        await asyncio.gather(*(stop(s) for s in self.servers))
        if self.services is not None and self.services.tasks is not None:
            await self.services.tasks.close()  # stop following shims; they and their containers keep running
        # anything that still reaches the journal now would be recorded after daemon.stopped: refuse it
        assert self.journal is not None
        self.journal.seal(allow_actor=ACTOR)
        for host in self.cfg.docker_hosts:
            if host.startswith("unix://"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(host[len("unix://"):])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.cfg.grpc_socket)

    def _on_stop(self, sig: signal.Signals) -> None:
        if self.stopping.is_set():
            log.warning("second %s: stopping now", sig.name)
            return
        self.stop_signal = sig.name
        self.stopping.set()

    async def reload(self) -> None:
        """SIGHUP: re-read the config file; settings that can change live are applied and journaled."""
        from engine import config as config_mod

        cfg = self.cfg
        if not cfg.config_file or self.services is None or self.journal is None:
            log.info("SIGHUP: no config file to reload")
            return
        try:
            new = config_mod.load({}, cfg.config_file)
        except EngineError as err:
            log.error("SIGHUP: config not reloaded: %s", err)
            return
        cfg.labels = new.labels
        cfg.log_level = new.log_level
        logging.getLogger().setLevel(_py_level(new.log_level))
        attrs = {"labels": ",".join(new.labels), "log-level": new.log_level}
        await self.journal.append([DaemonReloaded(daemon_id=self.services.daemon_uuid, name=os.uname().nodename,
                                                  attributes=attrs)], namespace="", actor="signal:SIGHUP",
                                  cause="reload")
        log.info("configuration reloaded from %s", cfg.config_file)


def _py_level(level: str) -> int:
    return {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
            "error": logging.ERROR, "fatal": logging.CRITICAL}[level]


def main(cfg: Config) -> int:
    """Run the daemon in the foreground; returns the process exit code."""
    logging.basicConfig(level=_py_level(cfg.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("hpack").setLevel(logging.WARNING)  # h2's header codec logs every frame at debug
    import uvloop

    sys.setswitchinterval(SWITCH_INTERVAL)
    daemon = Daemon(cfg)
    try:
        uvloop.run(daemon.run())
    except EngineError as err:
        print(f"engine daemon: {err}", file=sys.stderr)
        return 1
    return 0
