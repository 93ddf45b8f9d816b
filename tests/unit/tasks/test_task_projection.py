"""The tasks projection on a real journal (no shims): transitions, refused duplicates of shim events, outcomes
that a short process overtakes, delete failure restoring the status, and replay equality."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.events.journal import Journal
from engine.events.verify import verify_path
from engine.services import all_projections
from engine.services import task_events as te
from engine.services.tasks import read_all, read_task

NS = "unit"


async def _journal(tmp_path: Path) -> Journal:
    j = Journal(tmp_path / "engine.db", all_projections())
    await j.open()
    return j


async def _task(j: Journal, cid: str):
    return await j.run_read(lambda conn: read_task(conn, NS, cid))


def _requested(cid: str) -> te.TaskCreateRequested:
    return te.TaskCreateRequested(container_id=cid, bundle=f"/b/{cid}", shim_socket=f"/s/{cid}.sock",
                                  state_dir=f"/st/{cid}", mounts=(te.RootfsMount("bind", "/x", ("rbind",)),))


async def test_lifecycle_and_replay(tmp_path: Path) -> None:
    j = await _journal(tmp_path)
    try:
        await j.append([_requested("a"), te.TaskCreated(container_id="a", pid=10, shim_pid=9)], namespace=NS,
                       actor="t")
        t = await _task(j, "a")
        assert (t.status, t.pid, t.shim_pid, t.mounts[0].source) == ("created", 10, 9, "/x")
        await j.append([te.TaskStartRequested(container_id="a")], namespace=NS, actor="t")
        assert (await _task(j, "a")).pending == "start"
        # a short process: the shim's exit is recorded before the start's outcome
        await j.append([te.TaskExited(container_id="a", pid=10, exit_status=3, exited_at=5, shim_seq=3)],
                       namespace=NS, actor="shim")
        await j.append([te.TaskStarted(container_id="a", pid=10)], namespace=NS, actor="t")
        t = await _task(j, "a")
        assert (t.status, t.exit_status, t.exited_at, t.shim_seq, t.pending) == ("stopped", 3, 5, 3, "")
        with pytest.raises(te.Duplicate):
            await j.append([te.TaskExited(container_id="a", pid=10, exit_status=3, exited_at=5, shim_seq=3)],
                           namespace=NS, actor="shim")
        await j.append([te.TaskDeleteRequested(container_id="a")], namespace=NS, actor="t")
        assert ((await _task(j, "a")).status, (await _task(j, "a")).pending) == ("deleting", "stopped")
        await j.append([te.TaskDeleteFailed(container_id="a", error="x")], namespace=NS, actor="t")
        assert (await _task(j, "a")).status == "stopped"
        await j.append([te.TaskDeleteRequested(container_id="a"), te.TaskDeleted(container_id="a", exit_status=3)],
                       namespace=NS, actor="t")
        assert await _task(j, "a") is None
        await j.append([_requested("b"), te.TaskCreated(container_id="b", pid=20),
                        te.TaskStarted(container_id="b", pid=20), te.TaskPaused(container_id="b"),
                        te.TaskExecAdded(container_id="b", exec_id="e"), te.TaskResumed(container_id="b"),
                        te.TaskExecStarted(container_id="b", exec_id="e", pid=21),
                        te.TaskExecExited(container_id="b", exec_id="e", pid=21, exit_status=1, exited_at=7,
                                          shim_seq=5),
                        te.TaskOOM(container_id="b", oom_kills=1, shim_seq=6)], namespace=NS, actor="t")
        t = await _task(j, "b")
        assert (t.status, t.shim_seq) == ("running", 6)
        assert [(e.exec_id, e.status, e.exit_status) for e in t.execs] == [("e", "stopped", 1)]
        await j.append([te.TaskLost(container_id="b", pid=20, reason="gone")], namespace=NS, actor="daemon")
        t = await _task(j, "b")
        assert (t.status, t.exit_status) == ("stopped", te.LOST_EXIT_STATUS)
        await j.append([_requested("c"), te.TaskCreateFailed(container_id="c", error="boom")], namespace=NS,
                       actor="t")
        assert [t.id for t in await j.run_read(read_all)] == ["b"]
    finally:
        await j.close()
    report = verify_path(str(tmp_path / "engine.db"), all_projections())
    assert report.ok, report.to_dict()
    assert report.tables["tasks"].rows == 1 and report.tables["task_execs"].rows == 1
