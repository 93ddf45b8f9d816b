"""containerd.services.tasks.v1.Tasks over engine.services.tasks.

Protobuf in, TaskService call (journaled where it changes state), protobuf out; engine errors become
gRPC codes in status.py. Choices:

* The container's runtime must be a runc shim name (``io.containerd.runc.v2``, or v1, or empty): all
  of them are served by our shim. runc Options (``containerd.runc.v1.Options``: the request's when they
  carry bytes, else the container's ``runtime.options``) are decoded by runc_options.py and passed to
  the tasks service as a dict (``binary_name``, ``root``, ``systemd_cgroup``, …); a request's
  ``runtime_path`` is refused unless empty; ``checkpoint`` is UNIMPLEMENTED (no CRIU).
* Exec specs and Update resources arrive as Anys holding JSON (an OCI process, OCI linux resources),
  as containerd's typeurl packs them; they are decoded as JSON whatever the type URL.
* Status: our ``creating`` is UNKNOWN, ``deleting`` reports the status it had before the delete.
  Times are nanoseconds in the journal and Timestamps here (zero time = unset).
* Metrics: containerd's ``Metric`` with ``io.containerd.cgroups.v1.Metrics`` built from the shim's
  runc-shaped stats by cgroup_metrics.py, for the live tasks the filters select (id, container_id,
  status); a task that stops meanwhile is left out. Kill passes the signal through (0 probes).
* Events: task.* journal events go out as /tasks/... topics (see the bottom of this module).
  ``/tasks/create`` is sent for ``task.created`` (the task exists, as containerd sends it) with the pid
  from it and the bundle, rootfs mounts and IO from its ``task.create_requested`` (topics.py's ``needs``).
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import any_pb2, empty_pb2, message, timestamp_pb2

from engine.api.containerd import cgroup_metrics, context, filters, runc_options, topics
from engine.api.containerd.gen.containerd.events import task_pb2 as epb
from engine.api.containerd.gen.containerd.services.tasks.v1 import tasks_pb2 as pb
from engine.api.containerd.gen.containerd.services.tasks.v1.tasks_grpc import TasksBase
from engine.api.containerd.gen.containerd.types import metrics_pb2
from engine.api.containerd.gen.containerd.types import mount_pb2 as mount_types_pb2
from engine.api.containerd.gen.containerd.types.runc.options import oci_pb2
from engine.api.containerd.gen.containerd.types.task import task_pb2 as tpb
from engine.api.containerd.registry import implements
from engine.api.containerd.snapshots import mount_from_pb
from engine.errors import FailedPrecondition, InvalidArgument, NotFound, Unimplemented
from engine.events.types import Envelope
from engine.services import task_events as te
from engine.services.task_events import Task

RUNC_RUNTIMES = ("", "io.containerd.runc.v2", "io.containerd.runc.v1", "io.containerd.runtime.v1.linux")
_STATUS: dict[str, Any] = {te.CREATING: tpb.UNKNOWN, te.CREATED: tpb.CREATED, te.RUNNING: tpb.RUNNING, te.PAUSED: tpb.PAUSED,
           te.STOPPED: tpb.STOPPED}


def _ts(ns: int) -> timestamp_pb2.Timestamp | None:
    """A Timestamp for a time in ns, or None (the field stays unset, as containerd leaves a zero time) for 0."""
    if ns <= 0:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def status_pb(status: str, pending: str = "") -> Any:
    """containerd's Status for one of ours (a deleting task reports what it was before)."""
    if status == te.DELETING:
        status = pending if pending in _STATUS else te.STOPPED
    return _STATUS.get(status, tpb.UNKNOWN)


def process_pb(t: Task, exec_id: str = "") -> tpb.Process:
    """The init (exec_id "") or an exec of a task as containerd's Process."""
    if not exec_id:
        return tpb.Process(container_id=t.id, id=t.id, pid=t.pid, status=status_pb(t.status, t.pending),
                           stdin=t.stdin, stdout=t.stdout, stderr=t.stderr, terminal=t.terminal,
                           exit_status=t.exit_status, exited_at=_ts(t.exited_at))
    e = next((e for e in t.execs if e.exec_id == exec_id), None)
    if e is None:
        raise NotFound(f"exec {exec_id!r} in task {t.id!r}: not found")
    return tpb.Process(container_id=t.id, id=exec_id, pid=e.pid, status=status_pb(e.status),
                       exit_status=e.exit_status, exited_at=_ts(e.exited_at))


def _json_any(a: any_pb2.Any, what: str) -> Any:
    try:
        return json.loads(a.value)
    except ValueError as err:
        raise InvalidArgument(f"{what} ({a.type_url or 'no type'}) is not JSON: {err}") from None


def _adaptor(t: Task) -> filters.Adaptor:
    return filters.mapping_adaptor({"id": t.id, "container_id": t.id, "status": t.status})


@implements(TasksBase)
class TasksServicer(TasksBase):
    def __init__(self, services: Any) -> None:
        self.tasks = services.tasks
        self.containers = services.containers

    async def Create(self, stream: Any) -> None:
        req: pb.CreateTaskRequest = await stream.recv_message()
        ns = context.namespace(stream)
        if req.HasField("checkpoint") and req.checkpoint.digest:
            raise Unimplemented("creating a task from a checkpoint is not supported: no CRIU")
        if req.runtime_path:
            raise InvalidArgument(f"runtime_path {req.runtime_path!r}: a shim binary by path is not supported"
                                  f" (engine serves io.containerd.runc.v2 with its own shim)")
        c = await self.containers.get(ns, req.container_id)
        if c.runtime.name not in RUNC_RUNTIMES:
            raise NotFound(f"runtime {c.runtime.name!r} of container {req.container_id!r} is not installed"
                           f" (only io.containerd.runc.v2 is)")
        copts = c.runtime.options
        options = runc_options.effective(req.options if req.HasField("options") else None,
                                         copts.type_url if copts else "", copts.value if copts else b"")
        t = await self.tasks.create(ns, req.container_id, rootfs_mounts=[mount_from_pb(m) for m in req.rootfs],
                                    stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal,
                                    options=options, actor=context.actor(stream))
        await stream.send_message(pb.CreateTaskResponse(container_id=t.id, pid=t.pid))

    async def Start(self, stream: Any) -> None:
        req: pb.StartRequest = await stream.recv_message()
        pid = await self.tasks.start(context.namespace(stream), req.container_id, req.exec_id,
                                     actor=context.actor(stream))
        await stream.send_message(pb.StartResponse(pid=pid))

    async def Delete(self, stream: Any) -> None:
        req: pb.DeleteTaskRequest = await stream.recv_message()
        t = await self.tasks.delete(context.namespace(stream), req.container_id, actor=context.actor(stream))
        await stream.send_message(pb.DeleteResponse(id=t.id, pid=t.pid, exit_status=t.exit_status,
                                                    exited_at=_ts(t.exited_at)))

    async def DeleteProcess(self, stream: Any) -> None:
        req: pb.DeleteProcessRequest = await stream.recv_message()
        ns = context.namespace(stream)
        if not req.exec_id:
            raise InvalidArgument("exec_id is required (delete the task with Delete)")
        before = process_pb(await self.tasks.get(ns, req.container_id), req.exec_id)
        await self.tasks.delete(ns, req.container_id, req.exec_id, actor=context.actor(stream))
        await stream.send_message(pb.DeleteResponse(id=req.exec_id, pid=before.pid, exit_status=before.exit_status,
                                                    exited_at=before.exited_at if before.HasField("exited_at") else None))

    async def Get(self, stream: Any) -> None:
        req: pb.GetRequest = await stream.recv_message()
        t = await self.tasks.get(context.namespace(stream), req.container_id)
        await stream.send_message(pb.GetResponse(process=process_pb(t, req.exec_id)))

    async def List(self, stream: Any) -> None:
        req: pb.ListTasksRequest = await stream.recv_message()
        f = filters.parse_all([req.filter] if req.filter else [])
        items = await self.tasks.list(context.namespace(stream))
        await stream.send_message(pb.ListTasksResponse(tasks=[process_pb(t) for t in items if f.match(_adaptor(t))]))

    async def Kill(self, stream: Any) -> None:
        req: pb.KillRequest = await stream.recv_message()
        await self.tasks.kill(context.namespace(stream), req.container_id, req.signal, all=req.all,
                              exec_id=req.exec_id, actor=context.actor(stream))
        await stream.send_message(empty_pb2.Empty())

    async def Exec(self, stream: Any) -> None:
        req: pb.ExecProcessRequest = await stream.recv_message()
        if not req.exec_id:
            raise InvalidArgument("exec_id is required")
        spec = _json_any(req.spec, "exec spec")
        await self.tasks.exec(context.namespace(stream), req.container_id, req.exec_id, spec, stdin=req.stdin,
                              stdout=req.stdout, stderr=req.stderr, terminal=req.terminal,
                              actor=context.actor(stream))
        await stream.send_message(empty_pb2.Empty())

    async def ResizePty(self, stream: Any) -> None:
        req: pb.ResizePtyRequest = await stream.recv_message()
        await self.tasks.resize_pty(context.namespace(stream), req.container_id, req.width, req.height, req.exec_id)
        await stream.send_message(empty_pb2.Empty())

    async def CloseIO(self, stream: Any) -> None:
        req: pb.CloseIORequest = await stream.recv_message()
        if req.stdin:
            await self.tasks.close_io(context.namespace(stream), req.container_id, req.exec_id)
        await stream.send_message(empty_pb2.Empty())

    async def Pause(self, stream: Any) -> None:
        req: pb.PauseTaskRequest = await stream.recv_message()
        await self.tasks.pause(context.namespace(stream), req.container_id, actor=context.actor(stream))
        await stream.send_message(empty_pb2.Empty())

    async def Resume(self, stream: Any) -> None:
        req: pb.ResumeTaskRequest = await stream.recv_message()
        await self.tasks.resume(context.namespace(stream), req.container_id, actor=context.actor(stream))
        await stream.send_message(empty_pb2.Empty())

    async def ListPids(self, stream: Any) -> None:
        req: pb.ListPidsRequest = await stream.recv_message()
        out = pb.ListPidsResponse()
        for p in await self.tasks.pids(context.namespace(stream), req.container_id):
            info = out.processes.add(pid=int(p["pid"]))
            if p.get("exec_id"):
                info.info.CopyFrom(topics.pack(oci_pb2.ProcessDetails(exec_id=p["exec_id"])))
        await stream.send_message(out)

    async def Checkpoint(self, stream: Any) -> None:
        await stream.recv_message()
        raise Unimplemented("checkpoint is not supported: engine has no CRIU")

    async def Update(self, stream: Any) -> None:
        req: pb.UpdateTaskRequest = await stream.recv_message()
        resources = _json_any(req.resources, "resources") if req.HasField("resources") else {}
        await self.tasks.update(context.namespace(stream), req.container_id, resources, actor=context.actor(stream))
        await stream.send_message(empty_pb2.Empty())

    async def Metrics(self, stream: Any) -> None:
        req: pb.MetricsRequest = await stream.recv_message()
        ns = context.namespace(stream)
        f = filters.parse_all(req.filters)
        out = pb.MetricsResponse()
        for t in await self.tasks.list(ns):
            if not f.match(_adaptor(t)) or t.status not in (te.CREATED, te.RUNNING, te.PAUSED):
                continue
            try:
                stats = await self.tasks.metrics(ns, t.id)
            except (FailedPrecondition, NotFound):  # it stopped (or lost its cgroup) since the list: skip it
                continue
            m = metrics_pb2.Metric(id=t.id, data=cgroup_metrics.pack(stats))
            m.timestamp.GetCurrentTime()
            out.metrics.append(m)
        await stream.send_message(out)

    async def Wait(self, stream: Any) -> None:
        req: pb.WaitRequest = await stream.recv_message()
        status, at = await self.tasks.wait(context.namespace(stream), req.container_id, req.exec_id)
        await stream.send_message(pb.WaitResponse(exit_status=status, exited_at=_ts(at)))


# --- events ---------------------------------------------------------------------------------


def _on(cls: type, topic: str, build: Any) -> None:
    def convert(env: Envelope) -> tuple[str, message.Message]:
        assert isinstance(env.event, cls)
        return topic, build(env.event, env)

    topics.register(cls.TYPE)(convert)  # type: ignore[attr-defined]


def _task_create(env: Envelope, intent: Envelope | None) -> tuple[str, message.Message]:
    ev = env.event
    assert isinstance(ev, te.TaskCreated)
    msg = epb.TaskCreate(container_id=ev.container_id, pid=ev.pid)
    req = intent.event if intent is not None else None
    if isinstance(req, te.TaskCreateRequested):
        msg.bundle = req.bundle
        msg.rootfs.extend(mount_types_pb2.Mount(type=m.type, source=m.source, options=list(m.options))
                          for m in req.mounts)
        msg.io.CopyFrom(epb.TaskIO(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal))
    return "/tasks/create", msg


topics.register(te.TaskCreated.TYPE, needs=te.TaskCreateRequested.TYPE)(_task_create)
_on(te.TaskStarted, "/tasks/start", lambda e, _: epb.TaskStart(container_id=e.container_id, pid=e.pid))
_on(te.TaskExited, "/tasks/exit", lambda e, _: epb.TaskExit(
    container_id=e.container_id, id=e.container_id, pid=e.pid, exit_status=e.exit_status,
    exited_at=_ts(e.exited_at)))
_on(te.TaskLost, "/tasks/exit", lambda e, env: epb.TaskExit(
    container_id=e.container_id, id=e.container_id, pid=e.pid, exit_status=e.exit_status,
    exited_at=_ts(env.time_ns)))
_on(te.TaskExecExited, "/tasks/exit", lambda e, _: epb.TaskExit(
    container_id=e.container_id, id=e.exec_id, pid=e.pid, exit_status=e.exit_status, exited_at=_ts(e.exited_at)))
_on(te.TaskDeleted, "/tasks/delete", lambda e, _: epb.TaskDelete(  # the init's delete has no id (as containerd)
    container_id=e.container_id, pid=e.pid, exit_status=e.exit_status, exited_at=_ts(e.exited_at)))
_on(te.TaskExecDeleted, "/tasks/delete", lambda e, _: epb.TaskDelete(
    container_id=e.container_id, id=e.exec_id, exit_status=e.exit_status))
_on(te.TaskOOM, "/tasks/oom", lambda e, _: epb.TaskOOM(container_id=e.container_id))
_on(te.TaskExecAdded, "/tasks/exec-added", lambda e, _: epb.TaskExecAdded(container_id=e.container_id,
                                                                          exec_id=e.exec_id))
_on(te.TaskExecStarted, "/tasks/exec-started", lambda e, _: epb.TaskExecStarted(
    container_id=e.container_id, exec_id=e.exec_id, pid=e.pid))
_on(te.TaskPaused, "/tasks/paused", lambda e, _: epb.TaskPaused(container_id=e.container_id))
_on(te.TaskResumed, "/tasks/resumed", lambda e, _: epb.TaskResumed(container_id=e.container_id))
