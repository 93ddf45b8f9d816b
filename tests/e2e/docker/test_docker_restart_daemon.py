"""Restart policies across a daemon crash, with the real docker CLI: a container keeps running through a
SIGKILL of the daemon (same PID); an `always` container whose process died while the daemon was down is
started again when the daemon comes back (RestartCount grows); an `unless-stopped` container that was
stopped by hand stays stopped — the manual stop is remembered across the restart."""

from __future__ import annotations

import os
import signal
import time

from tests.harness import EngineDaemon
from tests.support.images import busybox_docker_archive


def _state(d: EngineDaemon, name: str) -> tuple[str, int, int]:
    out = d.docker("inspect", "-f", "{{.State.Status}} {{.State.Pid}} {{.RestartCount}}", name).stdout.split()
    return out[0], int(out[1]), int(out[2])


def _wait(d: EngineDaemon, name: str, status: str, timeout: float = 20) -> tuple[str, int, int]:
    deadline = time.monotonic() + timeout
    st = _state(d, name)
    while time.monotonic() < deadline and st[0] != status:
        time.sleep(0.1)
        st = _state(d, name)
    return st


def test_always_and_unless_stopped_across_a_daemon_crash(daemon_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d: EngineDaemon = daemon_factory()
    d.docker("load", "-i", str(busybox_docker_archive(tmp_path, "busybox:latest")))
    d.docker("run", "-d", "--name", "steady", "busybox", "sleep", "300")
    d.docker("run", "-d", "--name", "phoenix", "--restart", "always", "busybox", "sleep", "300")
    d.docker("run", "-d", "--name", "stopped", "--restart", "unless-stopped", "busybox", "sleep", "300")
    d.docker("stop", "-t", "1", "stopped")
    steady_pid = _state(d, "steady")[1]
    phoenix_pid = _state(d, "phoenix")[1]
    assert steady_pid > 0 and phoenix_pid > 0

    d.kill()  # SIGKILL: the shims and containers live on
    os.kill(phoenix_pid, signal.SIGKILL)  # dies while nobody watches
    assert os.path.exists(f"/proc/{steady_pid}")
    d.start()

    assert _state(d, "steady")[:2] == ("running", steady_pid)
    status, pid, count = _wait(d, "phoenix", "running")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (pid in (0, phoenix_pid) or status != "running"):
        time.sleep(0.1)
        status, pid, count = _state(d, "phoenix")
    assert status == "running" and pid not in (0, phoenix_pid) and count == 1
    time.sleep(0.5)
    assert _state(d, "stopped")[0] == "exited"
    d.docker("rm", "-f", "steady", "phoenix", "stopped")
    p = d.engine("journal", "verify", check=False)
    assert p.returncode == 0, p.stdout + p.stderr
