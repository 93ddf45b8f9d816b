"""The Docker container projection on a real journal: a create reserves the name while invisible, the
state follows the tasks service's events of namespace moby (and ignores other namespaces and unknown
ids), lookups by id / name / prefix, the shapes inspect renders, and replay equality."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import EngineError
from engine.events.journal import Journal
from engine.events.verify import verify_path
from engine.services import all_projections
from engine.services import task_events as te
from engine.services.dockerd import inspect as shapes
from engine.services.dockerd import record as rec

A, B = "a" * 64, "ab" + "c" * 62


async def _journal(tmp_path: Path) -> Journal:
    j = Journal(tmp_path / "engine.db", all_projections())
    await j.open()
    return j


def _req(cid: str, name: str) -> rec.DockerContainerCreateRequested:
    return rec.DockerContainerCreateRequested(id=cid, container=rec.DockerContainer(
        id=cid, name=name, image="busybox", image_id="sha256:" + "1" * 64, config={"Labels": {"k": "v"}},
        host_config={"NetworkMode": "none"}, path="sleep", args=["1"]))


async def _get(j: Journal, cid: str) -> rec.DockerContainer | None:
    return await j.run_read(lambda c: rec.read(c, cid))  # type: ignore[return-value]


async def test_lifecycle_projection_and_replay(tmp_path: Path) -> None:
    j = await _journal(tmp_path)
    try:
        await j.append([_req(A, "/one")], namespace="moby", actor="t")
        assert await _get(j, A) is None  # creating: invisible, but the name is taken
        assert await j.run_read(lambda c: rec.by_name(c, "/one")) == A
        with pytest.raises(EngineError):  # the unique index refuses a second holder of the name
            await j.append([_req(B, "/one")], namespace="moby", actor="t")
        await j.append([rec.DockerContainerCreated(id=A, name="/one", image="busybox")], namespace="moby", actor="t")
        c = await _get(j, A)
        assert c is not None and c.state.status == "created" and not c.state.running
        await j.append([te.TaskStarted(container_id=A, pid=42)], namespace="moby", actor="t")
        await j.append([te.TaskStarted(container_id=A, pid=99)], namespace="other", actor="t")  # not ours
        c = await _get(j, A)
        assert (c.state.status, c.state.pid, c.state.running) == ("running", 42, True)
        await j.append([te.TaskPaused(container_id=A)], namespace="moby", actor="t")
        assert (await _get(j, A)).state.status == "paused"
        await j.append([te.TaskResumed(container_id=A), rec.DockerContainerStopRequested(id=A, signal=15),
                        te.TaskOOM(container_id=A, shim_seq=1),
                        te.TaskExited(container_id=A, pid=42, exit_status=137, exited_at=5_000_000_000, shim_seq=2)],
                       namespace="moby", actor="t")
        c = await _get(j, A)
        assert (c.state.status, c.state.exit_code, c.state.oom_killed, c.state.manually_stopped) == \
            ("exited", 137, True, True)
        assert c.state.finished_at == 5_000_000_000
        assert shapes.docker_state(c)["FinishedAt"] == "1970-01-01T00:00:05Z"
        assert shapes.status_text(c, now_ns=65_000_000_000) == "Exited (137) About a minute ago"
        await j.append([rec.DockerContainerRenamed(id=A, name="/two", old_name="/one")], namespace="moby", actor="t")
        await j.append([_req(B, "/one"), rec.DockerContainerCreated(id=B, name="/one", image="busybox")],
                       namespace="moby", actor="t")
        assert await j.run_read(lambda c: rec.lookup(c, "two")) == [A]
        assert await j.run_read(lambda c: rec.lookup(c, "/one")) == [B]
        assert sorted(await j.run_read(lambda c: rec.lookup(c, "a"))) == sorted([A, B])  # ambiguous prefix
        assert await j.run_read(lambda c: rec.lookup(c, "ab")) == [B]
        assert await j.run_read(lambda c: rec.lookup(c, "zz")) == []
        await j.append([rec.DockerContainerRemoveRequested(id=B)], namespace="moby", actor="t")
        assert (await _get(j, B)).state.status == "removing"
        await j.append([rec.DockerContainerRemoved(id=B), _req("d" * 64, "/three"),
                        rec.DockerContainerCreateFailed(id="d" * 64, error="boom")], namespace="moby", actor="t")
        assert [c.id for c in await j.run_read(rec.read_all)] == [A]
        assert await j.run_read(lambda c: rec.by_name(c, "/three")) is None
        # a task event for an id the dockerd role does not know is ignored
        await j.append([te.TaskStarted(container_id="f" * 64, pid=1)], namespace="moby", actor="t")
    finally:
        await j.close()
    report = verify_path(str(tmp_path / "engine.db"), all_projections())
    assert report.ok, report.to_dict()
    assert report.tables["docker_containers"].rows == 1


def test_shapes() -> None:
    assert shapes.rfc3339nano(0) == shapes.ZERO_TIME
    assert shapes.rfc3339nano(1_500_000_000) == "1970-01-01T00:00:01.5Z"
    assert [shapes.human_duration(s) for s in (0.5, 1, 30, 61, 3000, 3600, 7200, 200000)] == [
        "Less than a second", "1 second", "30 seconds", "About a minute", "50 minutes", "About an hour", "2 hours",
        "2 days"]
    c = rec.DockerContainer(id=A, name="/x", image="busybox", path="sh", args=["-c", "true"],
                            config={"Labels": {"a": "b"}}, host_config={"NetworkMode": "none"})
    s = shapes.summary(c)
    assert s["Names"] == ["/x"] and s["Command"] == "sh -c true" and s["State"] == "created"
    assert s["Status"] == "Created" and s["NetworkSettings"]["Networks"].keys() == {"none"}
    doc = shapes.inspect(c)
    assert doc["State"]["Status"] == "created" and doc["Config"]["Labels"] == {"a": "b"}
    assert doc["Config"]["Hostname"] == A[:12] and doc["HostConfig"]["NetworkMode"] == "none"
