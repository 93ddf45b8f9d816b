"""containerd.services.snapshots.v1.Snapshots over the local SnapshotService (``services.snapshots``).

A thin adapter, as containerd's snapshots service.go over its metadata snapshotter: protobuf in, one
SnapshotService call (which journals the change), protobuf out. The snapshotter is the request's
``snapshotter`` field: empty is INVALID_ARGUMENT (containerd: ``snapshotter argument missing``), a name
the daemon has no backend for is NOT_FOUND (containerd: ``snapshotter not loaded``). The namespace comes
from ``containerd-namespace``. Mounts leave as containerd.types.Mount (type, source, options; no target).

Errors keep containerd's codes because the service raises them: a taken key or name is ALREADY_EXISTS,
an unknown key NOT_FOUND, removing a committed snapshot that has children FAILED_PRECONDITION, an update
of anything but labels INVALID_ARGUMENT. List streams the matching infos in batches of 100, as containerd.

Cleanup is left UNIMPLEMENTED (containerd's answer for a snapshotter that is not a Cleaner): our only
cleanup is the start-up ``recover``, which must not run beside requests in flight.

Events on the containerd stream, as containerd's snapshots service publishes them: ``/snapshot/prepare``
(SnapshotPrepare) for Prepare — not View —, ``/snapshot/commit`` (SnapshotCommit), ``/snapshot/remove``
(SnapshotRemove). The prepare event comes from the intent (``snapshot.prepare_requested``, the event
that carries the parent); removals and failures found by recovery (cause ``recover``) or done by the gc
are not published, as containerd publishes only what a client asked for.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2, timestamp_pb2

from engine.api.containerd import context, topics
from engine.api.containerd.gen.containerd.events import snapshot_pb2 as events_pb
from engine.api.containerd.gen.containerd.services.snapshots.v1 import snapshots_pb2 as pb
from engine.api.containerd.gen.containerd.services.snapshots.v1.snapshots_grpc import SnapshotsBase
from engine.api.containerd.gen.containerd.types import mount_pb2
from engine.api.containerd.registry import implements
from engine.errors import InvalidArgument, Unavailable
from engine.events.types import Envelope
from engine.images.snapshots import Info, Kind, Mount
from engine.services.snapshots import SnapshotCommitted, SnapshotPrepareRequested, SnapshotRemoved

LIST_BATCH = 100
QUIET_CAUSES = frozenset({"recover", "gc"})

_KIND_PB = {Kind.VIEW: pb.VIEW, Kind.ACTIVE: pb.ACTIVE, Kind.COMMITTED: pb.COMMITTED}


# --- events -------------------------------------------------------------------------------------


@topics.register(SnapshotPrepareRequested.TYPE)
def _prepared(env: Envelope) -> tuple[str, Any] | None:
    ev = env.event
    assert isinstance(ev, SnapshotPrepareRequested)
    if ev.kind != Kind.ACTIVE.value or env.cause in QUIET_CAUSES:
        return None
    return "/snapshot/prepare", events_pb.SnapshotPrepare(key=ev.key, parent=ev.parent, snapshotter=ev.snapshotter)


@topics.register(SnapshotCommitted.TYPE)
def _committed(env: Envelope) -> tuple[str, Any] | None:
    ev = env.event
    assert isinstance(ev, SnapshotCommitted)
    if env.cause in QUIET_CAUSES:
        return None
    return "/snapshot/commit", events_pb.SnapshotCommit(key=ev.key, name=ev.name, snapshotter=ev.snapshotter)


@topics.register(SnapshotRemoved.TYPE)
def _removed(env: Envelope) -> tuple[str, Any] | None:
    ev = env.event
    assert isinstance(ev, SnapshotRemoved)
    if ev.reason or env.cause in QUIET_CAUSES:
        return None
    return "/snapshot/remove", events_pb.SnapshotRemove(key=ev.key, snapshotter=ev.snapshotter)


# --- conversions --------------------------------------------------------------------------------


def _ts(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def mount_pb(m: Mount) -> mount_pb2.Mount:
    """A snapshot mount spec as containerd.types.Mount."""
    return mount_pb2.Mount(type=m.type, source=m.source, options=list(m.options))


def mount_from_pb(m: mount_pb2.Mount) -> Mount:
    """A containerd.types.Mount from a client as our mount spec (the target is not used by snapshots)."""
    return Mount(m.type, m.source, tuple(m.options))


def info_pb(i: Info) -> pb.Info:
    return pb.Info(name=i.name, parent=i.parent, kind=_KIND_PB[i.kind], created_at=_ts(i.created_ns),
                   updated_at=_ts(i.updated_ns), labels=dict(i.labels))


def _snapshotter(name: str) -> str:
    if not name:
        raise InvalidArgument("snapshotter argument missing")
    return name


def _ns(stream: Any) -> str:
    ns = context.namespace(stream)
    assert ns is not None
    return ns


@implements(SnapshotsBase)
class SnapshotsServicer(SnapshotsBase):
    def __init__(self, services: Any) -> None:
        svc = getattr(services, "snapshots", None)
        self._snapshots = svc if svc is not None else getattr(services, "extra", {}).get("snapshots")

    @property
    def snapshots(self) -> Any:
        if self._snapshots is None:
            raise Unavailable("the snapshots service is not running in this daemon")
        return self._snapshots

    async def Prepare(self, stream: Any) -> None:
        req: pb.PrepareSnapshotRequest = await stream.recv_message()
        mounts = await self.snapshots.prepare(_snapshotter(req.snapshotter), req.key, req.parent, dict(req.labels),
                                              namespace=_ns(stream), actor=context.actor(stream))
        await stream.send_message(pb.PrepareSnapshotResponse(mounts=[mount_pb(m) for m in mounts]))

    async def View(self, stream: Any) -> None:
        req: pb.ViewSnapshotRequest = await stream.recv_message()
        mounts = await self.snapshots.view(_snapshotter(req.snapshotter), req.key, req.parent, dict(req.labels),
                                           namespace=_ns(stream), actor=context.actor(stream))
        await stream.send_message(pb.ViewSnapshotResponse(mounts=[mount_pb(m) for m in mounts]))

    async def Mounts(self, stream: Any) -> None:
        req: pb.MountsRequest = await stream.recv_message()
        mounts = await self.snapshots.mounts(_snapshotter(req.snapshotter), req.key, namespace=_ns(stream))
        await stream.send_message(pb.MountsResponse(mounts=[mount_pb(m) for m in mounts]))

    async def Commit(self, stream: Any) -> None:
        req: pb.CommitSnapshotRequest = await stream.recv_message()
        await self.snapshots.commit(_snapshotter(req.snapshotter), req.name, req.key, dict(req.labels),
                                    namespace=_ns(stream), actor=context.actor(stream))
        await stream.send_message(empty_pb2.Empty())

    async def Remove(self, stream: Any) -> None:
        req: pb.RemoveSnapshotRequest = await stream.recv_message()
        await self.snapshots.remove(_snapshotter(req.snapshotter), req.key, namespace=_ns(stream),
                                    actor=context.actor(stream))
        await stream.send_message(empty_pb2.Empty())

    async def Stat(self, stream: Any) -> None:
        req: pb.StatSnapshotRequest = await stream.recv_message()
        info = await self.snapshots.stat(_snapshotter(req.snapshotter), req.key, namespace=_ns(stream))
        await stream.send_message(pb.StatSnapshotResponse(info=info_pb(info)))

    async def Update(self, stream: Any) -> None:
        req: pb.UpdateSnapshotRequest = await stream.recv_message()
        paths = list(req.update_mask.paths) if req.HasField("update_mask") else None
        info = await self.snapshots.update(_snapshotter(req.snapshotter), req.info.name, dict(req.info.labels),
                                           paths=paths or None, namespace=_ns(stream), actor=context.actor(stream))
        await stream.send_message(pb.UpdateSnapshotResponse(info=info_pb(info)))

    async def List(self, stream: Any) -> None:
        req: pb.ListSnapshotsRequest = await stream.recv_message()
        infos = await self.snapshots.walk(_snapshotter(req.snapshotter), *req.filters, namespace=_ns(stream))
        for start in range(0, len(infos), LIST_BATCH):
            await stream.send_message(pb.ListSnapshotsResponse(info=[info_pb(i) for i in
                                                                     infos[start:start + LIST_BATCH]]))

    async def Usage(self, stream: Any) -> None:
        req: pb.UsageRequest = await stream.recv_message()
        usage = await self.snapshots.usage(_snapshotter(req.snapshotter), req.key, namespace=_ns(stream))
        await stream.send_message(pb.UsageResponse(size=usage.size, inodes=usage.inodes))
