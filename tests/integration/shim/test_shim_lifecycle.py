"""Lifecycle through the shim API: create, start, state, wait, exit codes, delete leaves nothing."""

from __future__ import annotations

import asyncio
import os

import pytest

from engine.errors import FailedPrecondition, NotFound, Unavailable
from tests.integration.shim.shimenv import wait_gone


async def test_true_exits_zero_and_delete_leaves_nothing(shims):
    rec, c = await shims.new(["/bin/true"])
    info = await c.connect_info()
    assert info["shim_pid"] == rec["pid"] and info["task_pid"] > 0
    st = await c.state()
    assert st["status"] == "created"
    await c.start()
    res = await asyncio.wait_for(c.wait(), 10)
    assert res["exit_status"] == 0 and res["exited_at"] > 0
    assert (await c.state())["status"] == "stopped"
    # the exit is on disk, durably, before Delete
    assert os.path.exists(os.path.join(rec["state"], "exit.json"))
    await c.delete()
    assert wait_gone(rec["pid"]), "shim still running after Delete"
    assert not os.path.exists(rec["socket"])
    assert not os.path.exists(rec["state"])
    for d in shims.cgroup_dirs():
        assert not [p for p in d.iterdir() if p.is_dir()], f"cgroup left: {d}"
    with open("/proc/self/mountinfo") as f:
        assert str(shims.workdir) not in f.read(), "a mount is left under the test's work dir"


@pytest.mark.parametrize("code", [0, 3, 42, 255])
async def test_exit_codes(shims, code):
    _, c = await shims.new(["sh", "-c", f"exit {code}"])
    await c.start()
    assert (await asyncio.wait_for(c.wait(), 10))["exit_status"] == code
    await c.delete()


async def test_signals(shims):
    _, c = await shims.new(["sh", "-c", "trap 'exit 7' USR1; while :; do sleep 0.05; done"])
    await c.start()
    await asyncio.sleep(0.3)
    await c.kill(10)  # SIGUSR1: the trap exits 7
    assert (await asyncio.wait_for(c.wait(), 10))["exit_status"] == 7
    await c.delete()
    _, c = await shims.new(["sleep", "100"])
    await c.start()
    await c.kill(9)
    assert (await asyncio.wait_for(c.wait(), 10))["exit_status"] == 137
    await c.delete()


async def test_kill_all(shims):
    _, c = await shims.new(["sh", "-c", "sleep 100 & sleep 100 & wait"], no_pidns=True)
    await c.start()
    await asyncio.sleep(0.3)
    assert len(await c.pids()) == 3
    await c.kill(9, all=True)
    assert (await asyncio.wait_for(c.wait(), 10))["exit_status"] == 137
    await c.delete()


async def test_bad_input_changes_nothing(shims):
    rec, c = await shims.new(["sleep", "100"])
    await c.start()
    with pytest.raises(FailedPrecondition, match="cannot start a running process"):
        await c.start()
    with pytest.raises(FailedPrecondition, match="cannot delete a running task"):
        await c.delete()
    with pytest.raises(NotFound, match="exec nope not found"):
        await c.start("nope")
    with pytest.raises(NotFound, match="exec nope not found"):
        await c.kill(9, exec_id="nope")
    with pytest.raises(FailedPrecondition):
        await c.create(rec["bundle"])
    assert (await c.state())["status"] == "running"
    await c.kill(9)
    await asyncio.wait_for(c.wait(), 10)
    with pytest.raises(FailedPrecondition, match="cannot exec in a stopped task"):
        await c.exec("e1", {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}})
    with pytest.raises(NotFound, match="process already finished"):
        await c.kill(9)
    assert (await c.state())["status"] == "stopped"
    await c.delete()
    assert wait_gone(rec["pid"])


async def test_delete_created_task(shims):
    rec, c = await shims.new(["sleep", "100"])
    await c.delete()
    assert wait_gone(rec["pid"])
    assert not os.path.exists(rec["state"])


async def test_pause_resume(shims):
    _, c = await shims.new(["sleep", "100"])
    await c.start()
    await c.pause()
    assert (await c.state())["status"] == "paused"
    await c.resume()
    assert (await c.state())["status"] == "running"
    await c.kill(9)
    await asyncio.wait_for(c.wait(), 10)
    await c.delete()


async def test_shim_sigkilled_client_sees_connection_gone(shims):
    rec, c = await shims.new(["sleep", "100"])
    await c.start()
    waiter = asyncio.ensure_future(c.wait())
    await asyncio.sleep(0.1)
    os.kill(rec["pid"], 9)
    with pytest.raises(Unavailable, match="shim connection lost"):
        await asyncio.wait_for(waiter, 5)
    with pytest.raises(Unavailable):
        await c.state()


async def test_shutdown_keeps_a_live_task_and_ends_an_empty_shim(shims):
    rec, c = await shims.new(["sleep", "100"])
    await c.start()
    assert (await c.shutdown()) == {"exiting": False}
    assert (await c.state())["status"] == "running"
    await c.kill(9)
    await asyncio.wait_for(c.wait(), 10)
    await c.delete()
    assert wait_gone(rec["pid"])
    # a shim that never got a task goes on Shutdown and leaves nothing
    rec2, c2 = await shims.new(["true"], create=False)
    assert (await c2.shutdown()) == {"exiting": True}
    assert wait_gone(rec2["pid"])
    assert not os.path.exists(rec2["socket"]) and not os.path.exists(rec2["state"])
