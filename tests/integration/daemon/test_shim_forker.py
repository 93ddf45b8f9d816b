"""The daemon's shim fork server: tasks get forked shims; when the server is killed the next task falls back to a
fresh shim process and the server is started again; it dies with a SIGKILLed daemon and a new daemon starts
its own. Containers are never the price."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.harness import EngineDaemon, pid_gone
from tests.support.images import import_busybox


def _forker_pid(d: EngineDaemon) -> int:
    """The fork server's pid (0 while there is none, e.g. during its restart)."""
    try:
        return int((Path(d.exec_root) / "shim-fork.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return 0


def _wait(cond, timeout: float = 10) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_forked_shims_fallback_and_restart(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    d: EngineDaemon = daemon_factory()
    import_busybox(d)
    first = _forker_pid(d)
    assert d.docker("run", "--rm", "busybox", "echo", "forked").stdout == "forked\n"
    os.kill(first, signal.SIGKILL)
    assert _wait(lambda: pid_gone(first))
    assert d.docker("run", "--rm", "busybox", "echo", "fresh").stdout == "fresh\n"
    assert _wait(lambda: _forker_pid(d) not in (0, first)), "the server was not started again"
    second = _forker_pid(d)
    cid = d.docker("run", "-d", "busybox", "sleep", "60").stdout.strip()
    d.kill()
    assert _wait(lambda: pid_gone(second)), "the fork server outlived its daemon"
    d.start()
    assert _forker_pid(d) not in (first, second)
    assert d.docker("inspect", "-f", "{{.State.Status}}", cid).stdout.strip() == "running"
    d.docker("rm", "-f", cid)
