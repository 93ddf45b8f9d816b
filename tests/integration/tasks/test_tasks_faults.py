"""SIGKILL the daemon (a subprocess running the tasks service) at each fault point, before or after a side
effect (engine.services.tasks.FAULT_ENV); after reopen + recover no task is lost, leaked or double-started,
every intent has its outcome, and journal verify passes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.errors import FailedPrecondition, NotFound
from engine.services.tasks import FAULT_ENV
from tests.integration.tasks.taskenv import ACTOR, NS, pid_alive
from tests.integration.tasks.test_tasks_restart import finish_all

REPO = Path(__file__).resolve().parents[3]
CID = "f1"


def run_until_killed(env, point: str, workload: str) -> None:
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from tests.integration.tasks.taskenv import TaskEnv
        async def main():
            env = TaskEnv(Path({str(env.rootfs)!r}), Path({str(env.workdir)!r}))
            env.cgroup_parent = {env.cgroup_parent!r}
            tasks = await env.open()
            ns, cid, actor = "tasktest", {CID!r}, "test"
            await env.container(["sleep", "300"], cid=cid)
            await tasks.create(ns, cid, actor=actor)
            if {workload!r} != "create":
                await tasks.start(ns, cid, actor=actor)
            if {workload!r} == "delete":
                await tasks.kill(ns, cid, 9, actor=actor)
                await tasks.wait(ns, cid)
                await tasks.delete(ns, cid, actor=actor)
            print("survived", flush=True)
        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(REPO), env={**os.environ, FAULT_ENV: point},
                          capture_output=True, timeout=60)
    assert proc.returncode == -9, (proc.returncode, proc.stdout, proc.stderr[-2000:])


@pytest.mark.parametrize("point,workload,expect", [
    ("create:requested", "create", "gone"),
    ("create:spawned", "create", "gone"),
    ("create:created", "create", "created"),
    ("start:requested", "start", "created"),
    ("start:started", "start", "running"),
    ("delete:requested", "delete", "gone"),
    ("delete:deleted", "delete", "gone"),
])
async def test_sigkill_at_fault_point(env, point, workload, expect):
    await env.close()
    await asyncio.get_running_loop().run_in_executor(None, run_until_killed, env, point, workload)
    await env.open(recover=True)
    await asyncio.wait_for(env.tasks.recovery, 30)
    types = [(e.type, e.cause) for e in await env.events(CID)]
    if expect == "gone":
        with pytest.raises(NotFound):
            await env.tasks.get(NS, CID)
        outcome = "task.create_failed" if workload == "create" else "task.deleted"
        assert types[-1] == (outcome, "recover"), types
        assert env.leftovers() == []
    else:
        t = await env.tasks.get(NS, CID)
        assert (t.status, t.pending) == (expect, ""), t
        assert pid_alive(t.pid)
        if expect == "created":
            assert types[-1][1] == "recover", types
            await env.tasks.start(NS, CID, actor=ACTOR)  # usable, and started exactly once
        with pytest.raises(FailedPrecondition):
            await env.tasks.start(NS, CID, actor=ACTOR)
        assert [p["pid"] for p in await env.tasks.pids(NS, CID)] == [t.pid]
    env.verify()
    await finish_all(env)
