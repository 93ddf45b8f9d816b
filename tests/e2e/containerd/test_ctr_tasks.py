"""containerd's Tasks service on engine, driven by the real ctr (start, ls, ps, exec, pause, metrics, kill,
delete, foreground start through ctr's FIFOs, events) and by a grpclib client for the error codes ctr would
hide behind its own client-side checks. Containers are created over gRPC with a spec whose root is an
absolute busybox rootfs directory (no snapshot). Every test deletes its tasks and containers, even on failure."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import any_pb2
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from engine.api.containerd.gen.containerd.services.containers.v1 import containers_grpc
from engine.api.containerd.gen.containerd.services.containers.v1 import containers_pb2 as cpb
from engine.api.containerd.gen.containerd.services.tasks.v1 import tasks_grpc
from engine.api.containerd.gen.containerd.services.tasks.v1 import tasks_pb2 as pb
from engine.services.containers import OCI_SPEC_TYPE_URL
from tests.e2e.containerd.test_ctr import LineReader, parse_event
from tests.support.rootfs import build_busybox_rootfs
from tests.support.spec import default_spec


async def _call(sock: str, ns: str, stub: str, fn: str, req: Any) -> Any:
    ch = Channel(path=sock)
    try:
        s = (containers_grpc.ContainersStub if stub == "containers" else tasks_grpc.TasksStub)(ch)
        return await getattr(s, fn)(req, metadata={"containerd-namespace": ns}, timeout=60)
    finally:
        ch.close()


class Env:
    """One namespace of containers on the daemon, removed with everything in it afterwards."""

    def __init__(self, d: Any, rootfs: Path, fifo_dir: Path) -> None:
        self.d, self.rootfs = d, rootfs
        self.fifo_dir = fifo_dir  # ctr's FIFOs for this test (a detached start or exec leaves them)
        self.ns = "e2e-tasks-" + uuid.uuid4().hex[:8]
        self.ids: list[str] = []

    def grpc(self, fn: str, req: Any, stub: str = "tasks") -> Any:
        return asyncio.run(_call(self.d.containerd_sock, self.ns, stub, fn, req))

    def code(self, fn: str, req: Any) -> tuple[Status, str]:
        with pytest.raises(GRPCError) as err:
            self.grpc(fn, req)
        return err.value.status, str(err.value.message)

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        if args[:2] in (("tasks", "start"), ("tasks", "exec")):
            args = (*args[:2], "--fifo-dir", str(self.fifo_dir), *args[2:])
        return self.d.ctr("-n", self.ns, *args, check=check, timeout=timeout)

    def container(self, cid: str, args: list[str], rootfs: str = "") -> str:
        spec = default_spec(args, rootfs=rootfs or str(self.rootfs), cgroups_path=f"/engine-e2e/{self.ns}/{cid}")
        c = cpb.Container(id=cid, image="busybox")
        c.runtime.name = "io.containerd.runc.v2"
        c.spec.CopyFrom(any_pb2.Any(type_url=OCI_SPEC_TYPE_URL, value=json.dumps(spec).encode()))
        self.grpc("Create", cpb.CreateContainerRequest(container=c), stub="containers")
        self.ids.append(cid)
        return cid

    def status(self, cid: str, exec_id: str = "") -> int:
        return self.grpc("Get", pb.GetRequest(container_id=cid, exec_id=exec_id)).process.status

    def cleanup(self) -> None:
        """Kill and delete every task, remove the containers, the namespace, the cgroup parents the runtime
        leaves and the FIFOs ctr left (a detached start or exec keeps them)."""
        for cid in self.ids:
            with contextlib.suppress(GRPCError):
                self.grpc("Kill", pb.KillRequest(container_id=cid, signal=9, all=True))
            for _ in range(100):
                try:
                    self.grpc("Delete", pb.DeleteTaskRequest(container_id=cid))
                    break
                except GRPCError as err:
                    if err.status == Status.NOT_FOUND:
                        break
                    time.sleep(0.1)
            with contextlib.suppress(GRPCError):
                self.grpc("Delete", cpb.DeleteContainerRequest(id=cid), stub="containers")
        self.d.ctr("namespaces", "rm", self.ns, check=False)
        for top in Path("/sys/fs/cgroup").iterdir():
            for d in (top / "engine-e2e" / self.ns, top / "engine-e2e"):
                with contextlib.suppress(OSError):  # not there, or another test's containers still in it
                    d.rmdir()
        shutil.rmtree(self.fifo_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: Any) -> Path:
    return build_busybox_rootfs(tmp_path_factory.mktemp("tasks") / "rootfs")


@pytest.fixture
def env(engine_daemon: Any, rootfs: Path, tmp_path: Path) -> Iterator[Env]:
    e = Env(engine_daemon, rootfs, tmp_path / "fifo")
    try:
        yield e
    finally:
        e.cleanup()


@contextlib.contextmanager
def task_events(env: Env) -> Iterator[list[tuple[str, dict]]]:
    """(topic, event) pairs ``ctr events`` printed for the env's namespace while the block ran."""
    proc = subprocess.Popen(["ctr", "--address", env.d.containerd_sock, "events", f"namespace=={env.ns}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got: list[tuple[str, dict]] = []
    try:
        env.d.ctr("version")  # let the subscription settle
        yield got
        reader = LineReader(proc)
        while (line := reader.line(2.0)) is not None:
            _, topic, body = parse_event(line)
            got.append((topic, json.loads(body)))
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def wait_status(env: Env, cid: str, status: int, exec_id: str = "") -> None:
    deadline = time.monotonic() + 20
    while env.status(cid, exec_id) != status:
        assert time.monotonic() < deadline, f"{cid}: status {env.status(cid, exec_id)}, want {status}"
        time.sleep(0.05)


RUNNING, STOPPED, PAUSED, CREATED = 2, 3, 4, 1


def test_detached_life_cycle(env: Env) -> None:
    cid = env.container("sleeper", ["sleep", "1000"])
    with task_events(env) as events:
        detached_life_cycle(env, cid)
    topics = [t for t, _ in events]
    want = ["/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit",
            "/tasks/delete", "/tasks/paused", "/tasks/resumed", "/tasks/exit", "/tasks/delete"]
    # a short exec's exit may be journaled before its start outcome: compare as multisets, then the order
    # that cannot vary
    assert sorted(topics) == sorted(want), events
    assert topics[:2] == want[:2] and topics[-2:] == want[-2:], events
    assert topics.index("/tasks/paused") < topics.index("/tasks/resumed"), events
    exec_exit = events[topics.index("/tasks/exit")][1]
    assert exec_exit["container_id"] == cid and exec_exit["id"] == "x" and exec_exit.get("exit_status", 0) == 0
    init_exit = events[len(topics) - 2][1]
    assert init_exit["id"] == cid and init_exit["exit_status"] == 137


def detached_life_cycle(env: Env, cid: str) -> None:
    env.ctr("tasks", "start", "-d", cid)
    rows = [line.split() for line in env.ctr("tasks", "ls").stdout.splitlines()]
    assert rows[0] == ["TASK", "PID", "STATUS"]
    (task,) = [r for r in rows[1:] if r[0] == cid]
    pid = int(task[1])
    assert task[2] == "RUNNING" and pid > 0
    ps = env.ctr("tasks", "ps", cid).stdout.split()
    assert ps[:2] == ["PID", "INFO"] and str(pid) in ps
    out = env.ctr("tasks", "exec", "--exec-id", "x", cid, "echo", "hi").stdout
    assert out == "hi\n"
    env.ctr("tasks", "pause", cid)
    assert env.status(cid) == PAUSED
    assert "PAUSED" in env.ctr("tasks", "ls").stdout
    env.ctr("tasks", "resume", cid)
    assert env.status(cid) == RUNNING
    metrics = env.ctr("tasks", "metrics", cid).stdout
    values = dict(line.split(None, 1) for line in metrics.splitlines()[3:] if line.strip())
    cg = Path("/sys/fs/cgroup/memory/engine-e2e") / env.ns / cid
    assert int(values["memory.limit_in_bytes"]) == int((cg / "memory.limit_in_bytes").read_text()), metrics
    assert int(values["memory.usage_in_bytes"]) > 0 and int(values["cpuacct.usage"]) > 0, metrics
    assert int(values["pids.current"]) == 1, metrics  # sleep alone: the exec has gone
    env.ctr("tasks", "kill", "-s", "SIGKILL", cid)  # sleep as pid 1 ignores the default SIGTERM
    wait_status(env, cid, STOPPED)
    got = env.grpc("Get", pb.GetRequest(container_id=cid)).process
    assert got.exit_status == 128 + 9 and got.exited_at.seconds > 0 and got.pid == pid
    env.ctr("tasks", "delete", cid)
    assert cid not in env.ctr("tasks", "ls").stdout


def test_foreground_start_prints_output_and_exit_status(env: Env) -> None:
    cid = env.container("fg", ["sh", "-c", "echo hi; echo oops >&2; exit 3"])
    events = subprocess.Popen(["ctr", "--address", env.d.containerd_sock, "events", f"namespace=={env.ns}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        env.d.ctr("version")  # let the subscription settle
        proc = env.ctr("tasks", "start", cid, check=False)
        assert proc.returncode == 3, proc.stderr
        assert proc.stdout == "hi\n" and "oops" in proc.stderr
        seen: dict[str, dict] = {}
        reader = LineReader(events)
        while "/tasks/delete" not in seen:
            line = reader.line(10.0)
            assert line is not None, f"ctr events stopped after {list(seen)}"
            ns, topic, body = parse_event(line)
            assert ns == env.ns
            seen[topic] = json.loads(body)
        assert seen["/tasks/start"]["container_id"] == cid and seen["/tasks/start"]["pid"] > 0
        assert seen["/tasks/exit"]["exit_status"] == 3 and seen["/tasks/exit"]["id"] == cid
        assert list(seen).index("/tasks/create") < list(seen).index("/tasks/start") < list(seen).index("/tasks/exit")
    finally:
        events.kill()
        events.communicate(timeout=10)
    assert cid not in env.ctr("tasks", "ls").stdout  # ctr deleted the task after it exited


def test_bad_input_gets_the_right_codes(env: Env) -> None:
    assert env.code("Create", pb.CreateTaskRequest(container_id="nope"))[0] == Status.NOT_FOUND
    assert env.code("Get", pb.GetRequest(container_id="nope"))[0] == Status.NOT_FOUND
    cid = env.container("twice", ["sleep", "1000"])
    env.grpc("Create", pb.CreateTaskRequest(container_id=cid))
    assert env.code("Create", pb.CreateTaskRequest(container_id=cid))[0] == Status.ALREADY_EXISTS
    assert env.status(cid) == CREATED
    env.grpc("Start", pb.StartRequest(container_id=cid))
    assert env.code("Start", pb.StartRequest(container_id=cid))[0] == Status.FAILED_PRECONDITION
    assert env.code("Delete", pb.DeleteTaskRequest(container_id=cid))[0] == Status.FAILED_PRECONDITION
    assert env.code("Checkpoint", pb.CheckpointTaskRequest(container_id=cid))[0] == Status.UNIMPLEMENTED
    assert env.code("Resume", pb.ResumeTaskRequest(container_id=cid))[0] == Status.FAILED_PRECONDITION
    env.grpc("Kill", pb.KillRequest(container_id=cid, signal=9))
    wait = env.grpc("Wait", pb.WaitRequest(container_id=cid))
    assert wait.exit_status == 137 and wait.exited_at.seconds > 0
    spec = any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Process",
                       value=json.dumps({"args": ["true"], "cwd": "/"}).encode())
    status, msg = env.code("Exec", pb.ExecProcessRequest(container_id=cid, exec_id="late", spec=spec))
    assert status == Status.FAILED_PRECONDITION and "stopped" in msg
    deleted = env.grpc("Delete", pb.DeleteTaskRequest(container_id=cid))
    assert deleted.exit_status == 137
    assert env.code("Delete", pb.DeleteTaskRequest(container_id=cid))[0] == Status.NOT_FOUND


def test_exec_over_grpc_wait_and_delete_process(env: Env) -> None:
    cid = env.container("host", ["sleep", "1000"])
    env.grpc("Create", pb.CreateTaskRequest(container_id=cid))
    env.grpc("Start", pb.StartRequest(container_id=cid))
    spec = any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Process",
                       value=json.dumps({"args": ["sh", "-c", "exit 7"], "cwd": "/", "env": ["PATH=/bin"]}).encode())
    env.grpc("Exec", pb.ExecProcessRequest(container_id=cid, exec_id="e1", spec=spec))
    assert env.status(cid, "e1") == CREATED
    assert env.grpc("Start", pb.StartRequest(container_id=cid, exec_id="e1")).pid > 0
    wait = env.grpc("Wait", pb.WaitRequest(container_id=cid, exec_id="e1"))
    assert wait.exit_status == 7
    pids = env.grpc("ListPids", pb.ListPidsRequest(container_id=cid)).processes
    assert len(pids) >= 1 and all(p.pid > 0 for p in pids)
    gone = env.grpc("DeleteProcess", pb.DeleteProcessRequest(container_id=cid, exec_id="e1"))
    assert gone.id == "e1" and gone.exit_status == 7
    assert env.code("Get", pb.GetRequest(container_id=cid, exec_id="e1"))[0] == Status.NOT_FOUND


def test_rootfs_mounts_from_the_request_and_update(env: Env) -> None:
    # the spec's root is the bundle's rootfs/, which the request's mounts fill (a read-only bind here)
    cid = env.container("mounted", ["sleep", "1000"], rootfs="rootfs")
    probe = env.rootfs / "etc" / "hostname-probe"
    probe.write_text("from the bind mount\n")
    try:
        from engine.api.containerd.gen.containerd.types import mount_pb2

        bind = mount_pb2.Mount(type="bind", source=str(env.rootfs), options=["rbind", "ro"])
        env.grpc("Create", pb.CreateTaskRequest(container_id=cid, rootfs=[bind]))
        bundle_rootfs = next(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                             if line.split()[4].endswith(f"/bundles/{env.ns}/{cid}/rootfs"))
        env.grpc("Start", pb.StartRequest(container_id=cid))
        seen = env.ctr("tasks", "exec", "--exec-id", "cat", cid, "cat", "/etc/hostname-probe").stdout
        assert seen == "from the bind mount\n"
        limit = 64 << 20
        res = any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
                          value=json.dumps({"memory": {"limit": limit}}).encode())
        env.grpc("Update", pb.UpdateTaskRequest(container_id=cid, resources=res))
        cg = Path("/sys/fs/cgroup/memory/engine-e2e") / env.ns / cid / "memory.limit_in_bytes"
        assert int(cg.read_text()) == limit
        env.grpc("Kill", pb.KillRequest(container_id=cid, signal=9))
        env.grpc("Wait", pb.WaitRequest(container_id=cid))
        env.grpc("Delete", pb.DeleteTaskRequest(container_id=cid))
        assert not any(line.split()[4] == bundle_rootfs
                       for line in Path("/proc/self/mountinfo").read_text().splitlines())  # unmounted
    finally:
        probe.unlink()
