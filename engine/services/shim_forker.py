"""The daemon's shim fork server (DESIGN §5): one warm ``engine-shim fork-server`` child that forks shims.

A fresh ``engine-shim`` pays Python's start-up and imports for every task (~30 ms, ~7 MiB PSS); a shim
forked from the warm server starts in ~3 ms and shares most of its pages. The server is the daemon's
child, started at daemon start on ``<exec-root>/shim-fork.sock`` and told to die with the daemon
(``PR_SET_PDEATHSIG``; the shims it forked are setsid'd grandchildren and live on). If it is gone, a
spawn falls back to a fresh shim process and the server is started again in the background — so a
server crash costs speed, never a container. A server left by a daemon that was SIGKILLed is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.errors import Unavailable
from engine.runtime.shim.client import spawn_from_fork_server, spawn_shim

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class ShimForker:
    def __init__(self, exec_root: str, shim_executable: str = "") -> None:
        self.socket = str(Path(exec_root) / "shim-fork.sock")
        self.pid_file = Path(exec_root) / "shim-fork.pid"
        self.executable = shim_executable or str(Path(sys.prefix) / "bin" / "engine-shim")
        self.proc: subprocess.Popen | None = None
        self._restarting: asyncio.Task | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        self._stop_stale()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
        self.proc = subprocess.Popen([self.executable, "fork-server", "--socket", self.socket],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None,
                                     preexec_fn=_die_with_parent, close_fds=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # its pid, once the socket listens
        self.proc.stdout.close()
        if not line.strip().isdigit():
            code = self.proc.poll()
            raise Unavailable(f"shim fork server did not start (exit {code})")
        self.pid_file.write_text(f"{self.proc.pid}\n")
        log.info("shim fork server %d on %s", self.proc.pid, self.socket)

    def _stop_stale(self) -> None:
        """A fork server a SIGKILLed daemon left (it dies with its parent, but be sure)."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"fork-server" not in f.read():
                    return
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError, IndexError):
            pass

    async def spawn(self, argv: list[str]) -> int:
        """A new shim: from the fork server, or a fresh process when the server cannot be reached."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                return await spawn_from_fork_server(self.socket, argv)
            except Unavailable as err:
                if "connect to shim fork server" not in str(err):
                    raise  # the server took the request: a second shim must not be started
                log.warning("shim fork server unreachable (%s): starting a fresh shim", err)
        self._restart_later()
        return await spawn_shim(argv, self.executable)

    def _restart_later(self) -> None:
        if self._restarting is not None and not self._restarting.done():
            return

        async def restart() -> None:
            try:
                await self.close()
                await self.start()
            except Exception as err:  # noqa: BLE001 (a fresh shim per task still works)
                log.warning("shim fork server restart failed: %s", err)

        self._restarting = asyncio.get_running_loop().create_task(restart())

    async def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, 5)
            if proc.poll() is None:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
