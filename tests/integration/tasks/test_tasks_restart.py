"""Daemon restarts: the service is closed (or its process SIGKILLed) while containers run; some exit while it
is down; reopen + recover must find the survivors with the same pids, the exits with their true codes and
times, resolve intents without outcomes, handle vanished shims, clean orphans, and pass journal verify."""

from __future__ import annotations

import asyncio
import calendar
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.errors import NotFound
from engine.runtime.shim.client import ShimClient, shim_argv, spawn_shim
from engine.services import task_events as te
from tests.integration.tasks.taskenv import ACTOR, NS, pid_alive
from tests.support.spec import default_spec

REPO = Path(__file__).resolve().parents[3]


def trap_exit(code: int) -> list[str]:
    """A container that runs until SIGTERM, then exits with `code`."""
    return ["sh", "-c", f'trap "exit {code}" TERM; while true; do sleep 0.05; done']


def wait_dead(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still alive"
        time.sleep(0.02)


async def finish_all(env) -> None:
    """Kill and delete every task left, then check nothing is left on disk or in cgroups."""
    for t in await env.tasks.list(NS):
        if t.status in ("running", "paused", "created"):
            await env.tasks.kill(NS, t.id, 9, all=True, actor=ACTOR)
            if t.status != "created":
                await asyncio.wait_for(env.tasks.wait(NS, t.id), 20)
        await env.tasks.delete(NS, t.id, actor=ACTOR)
    assert await env.tasks.list(NS) == []
    assert env.leftovers() == []
    env.verify()


async def check_recovered(env, survivors: dict[str, int], exited: dict[str, int], down: tuple[int, int]) -> None:
    await asyncio.wait_for(env.tasks.recovery, 30)
    for cid, pid in survivors.items():
        t = await env.tasks.get(NS, cid)
        assert t.status == "running" and t.pid == pid and pid_alive(pid), t
    for cid, code in exited.items():
        status, at = await asyncio.wait_for(env.tasks.wait(NS, cid), 20)
        assert status == code, (cid, status, code)
        assert down[0] <= at <= down[1], "the exit time is the real one, from while the daemon was down"
        evs = [e for e in await env.events(cid) if e.type == "task.exited"]
        assert len(evs) == 1 and evs[0].cause == "recover" and evs[0].actor == "shim", evs
    env.verify()


COUNTER = ["sh", "-c", "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.02; done"]


def stamp_ns(stamp: str) -> int:
    """A json-file time (RFC3339Nano, UTC) in nanoseconds."""
    whole, _, frac = stamp.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return secs * 10**9 + int((frac or "0").ljust(9, "0"))


def log_lines(path: Path) -> list[tuple[str, str]]:
    return [(e["log"], e["time"]) for e in map(json.loads, path.read_text().splitlines())]


async def test_restart_20_containers_survivors_keep_pids_exits_keep_codes_logs_keep_bytes(env):
    survivors, logs = {}, {}
    (env.workdir / "logs").mkdir()
    for i in range(12):
        logs[i] = env.workdir / "logs" / f"s{i}.log"
        cid = await env.run(COUNTER, cid=f"s{i}", log={"path": str(logs[i]), "max_size": -1, "max_file": 1})
        survivors[cid] = (await env.tasks.get(NS, cid)).pid
    exiters = {}
    for i, code in enumerate((3, 42, 101, 7, 8, 9, 10, 11)):
        cid = await env.run(trap_exit(code), cid=f"x{i}")
        exiters[cid] = ((await env.tasks.get(NS, cid)).pid, code)
    await asyncio.sleep(0.3)  # the traps are installed
    await env.close()
    t0 = time.time_ns()
    for pid, _ in exiters.values():
        os.kill(pid, signal.SIGTERM)
    for pid, _ in exiters.values():
        wait_dead(pid)
    await asyncio.sleep(0.5)  # the survivors keep printing while nobody listens
    t1 = time.time_ns()
    await env.open(recover=True)
    assert len(await env.tasks.list(NS)) == 20  # reads answer whatever recovery is doing
    # a command on a task waits for that task's recovery: the exit while down is journaled first
    assert (await env.tasks.delete(NS, "x0", actor=ACTOR)).exit_status == 3
    del exiters["x0"]
    await check_recovered(env, survivors, {c: code for c, (_, code) in exiters.items()}, (t0, t1))
    for path in logs.values():
        lines = log_lines(path)
        assert [text for text, _ in lines] == [f"line-{n}\n" for n in range(len(lines))], "no byte lost"
        assert any(t0 < stamp_ns(stamp) < t1 for _, stamp in lines), "printed while the daemon was down"
    await finish_all(env)


async def test_daemon_sigkilled_in_a_subprocess(env):
    await env.close()
    script = textwrap.dedent(f"""
        import asyncio, json, sys
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from tests.integration.tasks.taskenv import TaskEnv
        async def main():
            env = TaskEnv(Path({str(env.rootfs)!r}), Path({str(env.workdir)!r}))
            env.cgroup_parent = {env.cgroup_parent!r}
            await env.open()
            out = {{}}
            for i, args in enumerate({json.dumps([["sleep", "300"], ["sleep", "300"]] + [trap_exit(c) for c in (5, 6)])}):
                cid = await env.run(args, cid=f"k{{i}}")
                out[cid] = (await env.tasks.get("tasktest", cid)).pid
            print(json.dumps(out), flush=True)
            await asyncio.sleep(3600)
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=str(REPO))
    try:
        line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        pids = json.loads(line)
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    t0 = time.time_ns()
    os.kill(pids["k2"], signal.SIGTERM)
    os.kill(pids["k3"], signal.SIGTERM)
    wait_dead(pids["k2"])
    wait_dead(pids["k3"])
    t1 = time.time_ns()
    await env.open(recover=True)
    await check_recovered(env, {"k0": pids["k0"], "k1": pids["k1"]}, {"k2": 5, "k3": 6}, (t0, t1))
    await finish_all(env)


async def test_shim_sigkilled_while_down_exit_json_or_vanished(env):
    done = await env.run(trap_exit(17))
    live = await env.run(["sleep", "300"])
    await asyncio.sleep(0.3)
    d, lv = await env.tasks.get(NS, done), await env.tasks.get(NS, live)
    await env.close()
    os.kill(d.pid, signal.SIGTERM)
    wait_dead(d.pid)
    deadline = time.monotonic() + 10
    while not os.path.exists(os.path.join(d.state_dir, "exit.json")):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    for t in (d, lv):
        os.kill(t.shim_pid, signal.SIGKILL)
        wait_dead(t.shim_pid)
    assert pid_alive(lv.pid), "the container outlives its shim"
    await env.open(recover=True)
    await asyncio.wait_for(env.tasks.recovery, 30)
    got = await env.tasks.get(NS, done)
    assert (got.status, got.exit_status) == ("stopped", 17)
    got = await env.tasks.get(NS, live)
    assert (got.status, got.exit_status) == ("stopped", te.LOST_EXIT_STATUS)
    assert [e.cause for e in await env.events(live) if e.type == "task.vanished"] == ["recover"]
    assert not pid_alive(lv.pid), "a container whose shim vanished is killed"
    assert not os.path.exists(lv.bundle) and not os.path.exists(lv.state_dir)
    assert (await asyncio.wait_for(env.tasks.wait(NS, live), 5))[0] == 255
    await finish_all(env)


async def test_shim_sigkilled_while_daemon_runs(env):
    cid = await env.run(["sleep", "300"])
    t = await env.tasks.get(NS, cid)
    waiter = asyncio.create_task(env.tasks.wait(NS, cid))
    os.kill(t.shim_pid, signal.SIGKILL)
    status, _ = await asyncio.wait_for(waiter, 20)
    assert status == te.LOST_EXIT_STATUS
    assert [e.cause for e in await env.events(cid) if e.type == "task.vanished"] == ["shim"]
    wait_dead(t.pid)
    await finish_all(env)


async def test_intents_without_outcomes_are_resolved(env):
    # a create intent whose daemon died before the shim existed
    ghost = await env.container(["sleep", "300"])
    await env.journal.append([te.TaskCreateRequested(
        container_id=ghost, bundle=str(env.tasks.bundle_dir(NS, ghost)), shim_socket=str(env.tasks.shim_socket(
            NS, ghost)), state_dir=str(env.tasks.state_dir(NS, ghost)))], namespace=NS, actor=ACTOR)
    # a start intent whose daemon died before the shim was asked
    cid = await env.container(["sleep", "300"])
    await env.tasks.create(NS, cid, actor=ACTOR)
    await env.journal.append([te.TaskStartRequested(container_id=cid)], namespace=NS, actor=ACTOR)
    await env.reopen()
    await asyncio.wait_for(env.tasks.recovery, 30)
    with pytest.raises(NotFound):
        await env.tasks.get(NS, ghost)
    assert [(e.type, e.cause) for e in await env.events(ghost)][-1] == ("task.create_failed", "recover")
    t = await env.tasks.get(NS, cid)
    assert (t.status, t.pending) == ("created", "")
    assert [(e.type, e.cause) for e in await env.events(cid)][-1] == ("task.start_failed", "recover")
    await env.tasks.start(NS, cid, actor=ACTOR)  # the task is usable after recovery
    assert (await env.tasks.get(NS, cid)).status == "running"
    await finish_all(env)


async def test_orphan_shim_and_dirs_are_cleaned_and_journaled(env):
    cid = "orphan1"
    sock, state, bundle = (str(env.tasks.shim_socket(NS, cid)), str(env.tasks.state_dir(NS, cid)),
                           env.tasks.bundle_dir(NS, cid))
    bundle.mkdir(parents=True)
    spec = default_spec(["sleep", "300"], rootfs=str(env.rootfs), cgroups_path=f"/{env.cgroup_parent}/{cid}")
    (bundle / "config.json").write_text(json.dumps(spec))
    shim_pid = await spawn_shim(shim_argv(cid, NS, sock, state))
    c = await ShimClient.connect(sock)
    pid = (await c.create(str(bundle)))["pid"]
    await c.start()
    await c.close()
    stray = Path(env.config.root) / "shims" / NS / "stray"
    stray.mkdir(parents=True)
    await env.reopen()
    await asyncio.wait_for(env.tasks.recovery, 30)
    wait_dead(shim_pid)
    wait_dead(pid)
    cleaned = {e.subject: e async for e in env.journal.history() if e.type == "task.orphan_cleaned"}
    assert set(cleaned) == {cid, "stray"}
    assert cleaned[cid].cause == "recover" and "shim" in cleaned[cid].event.removed
    assert env.leftovers() == []
    env.verify()


async def test_external_runtime_lifecycle_and_vanished_shim(env):
    """runc by path (crun 1.8 refuses this machine's hybrid cgroup layout, see tests/support/ociruntime.py)."""
    import shutil

    binary = shutil.which("runc")
    if binary is None:
        pytest.fail("runc is not installed")
    env.runtime = env.tasks.runtime = binary
    cid = await env.run(["sh", "-c", "exit 12"])
    assert (await asyncio.wait_for(env.tasks.wait(NS, cid), 20))[0] == 12
    await env.tasks.delete(NS, cid, actor=ACTOR)
    live = await env.run(["sleep", "300"])
    t = await env.tasks.get(NS, live)
    await env.close()
    os.kill(t.shim_pid, signal.SIGKILL)
    wait_dead(t.shim_pid)
    await env.open(recover=True)
    await asyncio.wait_for(env.tasks.recovery, 30)
    assert (await env.tasks.get(NS, live)).exit_status == te.LOST_EXIT_STATUS
    wait_dead(t.pid)
    await finish_all(env)
