"""The tasks service with real shims and containers: lifecycle, exit codes, wait, kill, exec, pause/resume,
bad input, and the journal it leaves (every side effect bracketed, verify passes)."""

from __future__ import annotations

import asyncio
import os

import pytest

from engine.errors import AlreadyExists, FailedPrecondition, NotFound
from engine.images.snapshots.base import Mount
from tests.integration.tasks.taskenv import ACTOR, NS, mounts_under, pid_alive


async def test_lifecycle_true_exits_zero_and_delete_leaves_nothing(env):
    cid = await env.container(["/bin/true"])
    t = await env.tasks.create(NS, cid, actor=ACTOR)
    assert t.status == "created" and t.pid > 0 and t.shim_pid > 0
    assert os.path.exists(t.shim_socket) and os.path.isfile(os.path.join(t.bundle, "config.json"))
    pid = await env.tasks.start(NS, cid, actor=ACTOR)
    assert pid == t.pid
    status, at = await asyncio.wait_for(env.tasks.wait(NS, cid), 20)
    assert status == 0 and at > 0
    got = await env.tasks.get(NS, cid)
    assert got.status == "stopped" and got.exit_status == 0
    d = await env.tasks.delete(NS, cid, actor=ACTOR)
    assert d.exit_status == 0
    with pytest.raises(NotFound):
        await env.tasks.get(NS, cid)
    types = [e.type for e in await env.events(cid)]
    assert types == ["container.created", "task.create_requested", "task.created", "task.start_requested",
                     "task.started", "task.exited", "task.delete_requested", "task.deleted"], types
    for _ in range(100):
        if not pid_alive(t.shim_pid):
            break
        await asyncio.sleep(0.05)
    assert not pid_alive(t.shim_pid), "the shim must exit after the task is deleted"
    assert env.leftovers() == []
    env.verify()


@pytest.mark.parametrize("code", [0, 3, 77])
async def test_exit_codes(env, code):
    cid = await env.run(["sh", "-c", f"exit {code}"])
    assert (await asyncio.wait_for(env.tasks.wait(NS, cid), 20))[0] == code
    exited = [e for e in await env.events(cid) if e.type == "task.exited"]
    assert len(exited) == 1 and exited[0].event.exit_status == code and exited[0].cause == "shim"
    assert (await env.tasks.delete(NS, cid, actor=ACTOR)).exit_status == code


async def test_kill_and_wait(env):
    cid = await env.run(["sleep", "300"])
    waiter = asyncio.create_task(env.tasks.wait(NS, cid))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    t = await env.tasks.get(NS, cid)
    assert t.status == "running" and pid_alive(t.pid)
    pids = await env.tasks.pids(NS, cid)
    assert [p["pid"] for p in pids] == [t.pid]
    await env.tasks.kill(NS, cid, 9, actor=ACTOR)
    status, _ = await asyncio.wait_for(waiter, 20)
    assert status == 137
    with pytest.raises(NotFound):
        await env.tasks.kill(NS, cid, 9, actor=ACTOR)
    await env.tasks.delete(NS, cid, actor=ACTOR)
    assert env.leftovers() == []


async def test_exec_and_output(env, tmp_path):
    out = env.workdir / "out.log"
    out.touch()
    cid = await env.run(["sleep", "300"])
    await env.tasks.exec(NS, cid, "e1", {"args": ["sh", "-c", "echo hello-exec; exit 5"], "cwd": "/",
                                         "env": ["PATH=/bin:/sbin"], "user": {"uid": 0, "gid": 0}},
                         stdout=str(out), actor=ACTOR)
    with pytest.raises(AlreadyExists):
        await env.tasks.exec(NS, cid, "e1", {"args": ["true"]}, actor=ACTOR)
    epid = await env.tasks.start(NS, cid, "e1", actor=ACTOR)
    assert epid > 0
    status, _ = await asyncio.wait_for(env.tasks.wait(NS, cid, "e1"), 20)
    assert status == 5
    assert b"hello-exec" in out.read_bytes()
    t = await env.tasks.get(NS, cid)
    assert [(e.exec_id, e.status, e.exit_status) for e in t.execs] == [("e1", "stopped", 5)]
    await env.tasks.delete(NS, cid, "e1", actor=ACTOR)
    assert (await env.tasks.get(NS, cid)).execs == ()
    await env.tasks.kill(NS, cid, 9, actor=ACTOR)
    await asyncio.wait_for(env.tasks.wait(NS, cid), 20)
    await env.tasks.delete(NS, cid, actor=ACTOR)
    types = [e.type for e in await env.events(cid)]
    seen = [t for t in types if t.startswith("task.exec") or t == "task.start_requested"][1:]
    assert seen == ["task.exec_added", "task.start_requested", "task.exec_started", "task.exec_exited",
                    "task.exec_deleted"], seen
    env.verify()


async def test_pause_resume(env):
    cid = await env.run(["sleep", "300"])
    await env.tasks.pause(NS, cid, actor=ACTOR)
    assert (await env.tasks.get(NS, cid)).status == "paused"
    with pytest.raises(FailedPrecondition):
        await env.tasks.pause(NS, cid, actor=ACTOR)
    with pytest.raises(FailedPrecondition):
        await env.tasks.delete(NS, cid, actor=ACTOR)
    await env.tasks.resume(NS, cid, actor=ACTOR)
    assert (await env.tasks.get(NS, cid)).status == "running"
    await env.tasks.kill(NS, cid, 9, actor=ACTOR)
    assert (await asyncio.wait_for(env.tasks.wait(NS, cid), 20))[0] == 137
    await env.tasks.delete(NS, cid, actor=ACTOR)
    assert env.leftovers() == []
    env.verify()


async def test_rootfs_bind_mount_is_mounted_and_removed(env):
    cid = await env.container(["sh", "-c", "test -x /bin/busybox && exit 9"], rootfs="rootfs")
    t = await env.tasks.create(NS, cid, rootfs_mounts=[Mount("bind", str(env.rootfs), ("rbind", "ro"))],
                               actor=ACTOR)
    assert os.path.realpath(os.path.join(t.bundle, "rootfs")) in mounts_under(env.workdir)
    await env.tasks.start(NS, cid, actor=ACTOR)
    assert (await asyncio.wait_for(env.tasks.wait(NS, cid), 20))[0] == 9
    await env.tasks.delete(NS, cid, actor=ACTOR)
    assert env.leftovers() == []
    assert (env.rootfs / "bin" / "busybox").exists(), "the rootfs source must survive the clean-up"


async def test_bad_input_changes_nothing(env):
    with pytest.raises(NotFound):
        await env.tasks.start(NS, "nosuch", actor=ACTOR)
    with pytest.raises(NotFound):
        await env.tasks.create(NS, "nosuch", actor=ACTOR)
    with pytest.raises(NotFound):
        await env.tasks.kill(NS, "nosuch", actor=ACTOR)
    with pytest.raises(NotFound):
        await env.tasks.delete(NS, "nosuch", actor=ACTOR)
    cid = await env.run(["sleep", "300"])
    with pytest.raises(AlreadyExists):
        await env.tasks.create(NS, cid, actor=ACTOR)
    with pytest.raises(FailedPrecondition):
        await env.tasks.start(NS, cid, actor=ACTOR)
    with pytest.raises(FailedPrecondition):
        await env.tasks.delete(NS, cid, actor=ACTOR)
    with pytest.raises(NotFound):
        await env.tasks.start(NS, cid, "nosuch-exec", actor=ACTOR)
    before = await env.tasks.get(NS, cid)
    n_events = len(await env.events(cid))
    await env.tasks.kill(NS, cid, 9, actor=ACTOR)
    await asyncio.wait_for(env.tasks.wait(NS, cid), 20)
    with pytest.raises(FailedPrecondition):
        await env.tasks.exec(NS, cid, "late", {"args": ["true"]}, actor=ACTOR)
    after = await env.tasks.get(NS, cid)
    assert after.execs == () and after.pid == before.pid
    types = [e.type for e in (await env.events(cid))[n_events:]]
    assert types == ["task.killed", "task.exited"], types
    await env.tasks.delete(NS, cid, actor=ACTOR)
    assert env.leftovers() == []
    env.verify()


async def test_create_failure_is_journaled_and_cleaned(env):
    cid = await env.container(["/no/such/binary"])
    with pytest.raises(Exception) as info:
        await env.tasks.create(NS, cid, actor=ACTOR)
    assert "no/such/binary" in str(info.value) or "no such file" in str(info.value).lower()
    types = [e.type for e in await env.events(cid)]
    assert types[-2:] == ["task.create_requested", "task.create_failed"], types
    with pytest.raises(NotFound):
        await env.tasks.get(NS, cid)
    assert env.leftovers() == []
    env.verify()


async def test_terminal_task_and_exec_with_resize(env):
    out, eout = env.workdir / "tty.out", env.workdir / "exec.out"
    out.touch()
    eout.touch()
    cid = await env.container(["sh", "-c", "tty; sleep 300"], terminal=True)
    await env.tasks.create(NS, cid, stdout=str(out), terminal=True, actor=ACTOR)
    await env.tasks.start(NS, cid, actor=ACTOR)
    await env.tasks.resize_pty(NS, cid, 100, 40)
    await env.tasks.exec(NS, cid, "t1", {"args": ["sh", "-c", "stty size; exit 6"], "cwd": "/",
                                         "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}},
                         stdout=str(eout), terminal=True, actor=ACTOR)
    await env.tasks.start(NS, cid, "t1", actor=ACTOR)
    assert (await asyncio.wait_for(env.tasks.wait(NS, cid, "t1"), 20))[0] == 6
    for _ in range(100):
        if b"/dev/pts/" in out.read_bytes():
            break
        await asyncio.sleep(0.05)
    assert b"/dev/pts/" in out.read_bytes()
    assert eout.read_bytes().strip()  # the exec's terminal output reached its stdout
    await env.tasks.kill(NS, cid, 9, actor=ACTOR)
    await asyncio.wait_for(env.tasks.wait(NS, cid), 20)
    await env.tasks.delete(NS, cid, actor=ACTOR)
    assert env.leftovers() == []
