"""Containers outlive the daemon, and no exit is lost (issue 4), proven through the daemon's API:

* 20 running containers print a numbered line every 50 ms into their logs (the shims write them); the daemon
  is SIGKILLed; while it is down six containers exit with distinct codes and the others keep printing; after
  a restart the survivors run on with the same PIDs, the exited ones report their true codes and exit times
  (inside the window the daemon was down), every line printed meanwhile is in `docker logs` with no gap, and
  `engine journal verify` passes;
* the daemon is SIGKILLed at each of the tasks service's fault points during `docker run -d` (before and
  after each side effect: the shim spawned, the container created, started, deleted); after a restart the
  container is neither lost nor leaked nor started twice: it runs or is cleanly not running, `docker rm -f`
  removes it, and no shim of it is left.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import pytest

from tests.harness import EngineDaemon, pid_gone
from tests.support.images import import_busybox

N, EXITING = 20, 6
LOOP = ("i=0; while [ ! -e /ctl/stop-{n} ]; do echo \"c{n} $i\"; i=$((i+1)); sleep 0.05; done; "
        "echo \"c{n} end\"; exit {code}")


def _inspect(d: EngineDaemon, name: str) -> dict:
    return json.loads(d.docker("inspect", name).stdout)[0]


def _time_ns(rfc3339: str) -> int:
    whole, _, frac = rfc3339.rstrip("Z").partition(".")
    t = dt.datetime.fromisoformat(whole).replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


def _contiguous(d: EngineDaemon, n: int) -> int:
    """The numbered lines of container n's log are 0..k without a gap; returns k."""
    lines = d.docker("logs", f"c{n}").stdout.splitlines()
    nums = [int(x.split()[1]) for x in lines if x.startswith(f"c{n} ") and x.split()[1].isdigit()]
    assert nums == list(range(len(nums))), f"c{n}: gap or repeat in {nums[:5]}…{nums[-5:]}"
    return len(nums)


def _wait(cond, timeout: float = 20) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_twenty_containers_survive_a_daemon_sigkill(daemon_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d: EngineDaemon = daemon_factory()
    import_busybox(d)
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    for n in range(N):
        d.docker("run", "-d", "--name", f"c{n}", "-v", f"{ctl}:/ctl", "busybox", "sh", "-c",
                 LOOP.format(n=n, code=10 + n))
    pids = {n: _inspect(d, f"c{n}")["State"]["Pid"] for n in range(N)}
    assert all(pids.values())
    time.sleep(0.3)

    d.kill()
    down_ns = time.time_ns()
    for n in range(EXITING):
        (ctl / f"stop-{n}").touch()
    time.sleep(1.0)  # the others print ~20 lines each meanwhile, to nobody but their shims
    assert all(os.path.exists(f"/proc/{pids[n]}") for n in range(EXITING, N))
    d.start()
    up_ns = time.time_ns()

    for n in range(EXITING, N):
        st = _inspect(d, f"c{n}")["State"]
        assert (st["Status"], st["Pid"]) == ("running", pids[n]), f"c{n}: {st}"
    for n in range(EXITING):
        assert _wait(lambda n=n: _inspect(d, f"c{n}")["State"]["Status"] == "exited"), f"c{n} never exited"
        st = _inspect(d, f"c{n}")["State"]
        assert st["ExitCode"] == 10 + n, f"c{n}: {st}"
        assert down_ns < _time_ns(st["FinishedAt"]) < up_ns, f"c{n}: finished at {st['FinishedAt']}"
        assert _contiguous(d, n) > 0 and d.docker("logs", "--tail", "1", f"c{n}").stdout == f"c{n} end\n"
    printed_down = {n: _contiguous(d, n) for n in range(EXITING, N)}
    assert min(printed_down.values()) >= 20  # ≥ 0.3 s before + 1 s down + the restart, every 50 ms
    for n in range(EXITING, N):
        (ctl / f"stop-{n}").touch()
    for n in range(EXITING, N):
        assert _wait(lambda n=n: _inspect(d, f"c{n}")["State"]["Status"] == "exited")
        assert _inspect(d, f"c{n}")["State"]["ExitCode"] == 10 + n
        assert _contiguous(d, n) >= printed_down[n]
    d.docker("rm", *[f"c{n}" for n in range(N)])
    p = d.engine("journal", "verify", check=False)
    assert p.returncode == 0, p.stdout + p.stderr


FAULT_POINTS = ["create:requested", "create:spawned", "create:created", "start:requested", "start:started"]


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_sigkill_at_each_fault_point_loses_and_leaks_nothing(daemon_factory, point: str) -> None:  # type: ignore[no-untyped-def]
    d: EngineDaemon = daemon_factory(start=False)
    d.extra_env = {"ENGINE_FAULT_TASKS": point}
    d.start()
    import_busybox(d)
    d.docker("run", "-d", "--name", "victim", "busybox", "sleep", "60", check=False, timeout=30)
    assert _wait(lambda: d.proc is not None and d.proc.poll() is not None), f"the daemon did not die at {point}"
    old = d.proc.pid  # type: ignore[union-attr]
    assert _wait(lambda: pid_gone(old))
    d.extra_env = {}
    d.start()
    # the container is known, and either runs (the start happened) or does not (it never did); never twice
    st = _inspect(d, "victim")["State"]
    assert st["Status"] in ("running", "created", "exited"), st
    if st["Status"] == "running":
        assert os.path.exists(f"/proc/{st['Pid']}")
        shims = d.ctr("-n", "moby", "tasks", "ls").stdout.splitlines()[1:]
        assert len(shims) == 1, shims
    assert _wait(lambda: d.docker("start", "victim", check=False).returncode == 0
                 or _inspect(d, "victim")["State"]["Status"] == "running")
    assert _inspect(d, "victim")["State"]["Status"] == "running"
    d.docker("rm", "-f", "victim")
    assert d.ctr("-n", "moby", "tasks", "ls").stdout.splitlines()[1:] == []
    assert not list((Path(d.exec_root) / "shims" / "moby").glob("*.sock"))
    p = d.engine("journal", "verify", check=False)
    assert p.returncode == 0, p.stdout + p.stderr


def test_a_killed_shim_is_noticed_and_recorded(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL of a container's shim: the daemon records the loss (task.vanished, exit 255 — the container's
    processes go with their shim's subreaper), reports the container exited, and it can be started again."""
    d: EngineDaemon = daemon_factory()
    import_busybox(d)
    cid = d.docker("run", "-d", "--name", "orphan", "busybox", "sleep", "300").stdout.strip()
    shim = [e for e in _journal(d, "task.created") if e["subject"] == cid][-1]["event"]["shim_pid"]
    assert shim > 0 and os.path.exists(f"/proc/{shim}")
    os.kill(shim, 9)
    assert _wait(lambda: _inspect(d, "orphan")["State"]["Status"] == "exited")
    st = _inspect(d, "orphan")["State"]
    assert st["ExitCode"] == 255, st
    assert [e for e in _journal(d, "task.vanished") if e["subject"] == cid], "task.vanished was not journaled"
    d.docker("start", "orphan")
    assert _inspect(d, "orphan")["State"]["Status"] == "running"
    d.docker("rm", "-f", "orphan")


def _journal(d: EngineDaemon, typ: str) -> list[dict]:
    status, body = d.request("GET", f"/engine/journal?type={typ}")
    assert status == 200, body
    if isinstance(body, dict):
        return [body]
    return [json.loads(line) for line in (body or b"").decode().splitlines() if line.strip()]
