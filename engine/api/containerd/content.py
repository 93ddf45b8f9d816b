"""containerd.services.content.v1.Content and containerd.services.leases.v1.Leases over the local services.

Thin adapters: protobuf in, ContentService / LeaseService call (which journals the change), protobuf out.
The namespace comes from ``containerd-namespace``; a lease from ``containerd-lease`` protects what a Write
ingests and commits, as containerd's lease context does.

Write follows containerd's server: the first message names the ref (and may carry total and expected);
every message is answered with the writer's state; a WRITE or COMMIT at an offset other than 0 must be at
the current offset (else OUT_OF_RANGE), one at 0 on a started ingest starts it over; COMMIT verifies size
and digest and ends the stream. Read streams the blob in 1 MiB messages from ``offset`` for ``size``
bytes (0: to the end).

A client's content delete is published on the containerd event stream as ``/content/delete``
(``ContentDelete``), as containerd does; collections by the gc are not (containerd's are not either).

The services are looked up on the Services bundle as ``content`` and ``leases`` attributes, or in its
``extra`` dict under the same names (so the daemon can provide them without a new field).
"""

from __future__ import annotations

import secrets
from typing import Any

from google.protobuf import empty_pb2, timestamp_pb2
from grpclib.const import Status as GrpcStatus
from grpclib.exceptions import GRPCError

from engine.api.containerd import context, topics
from engine.api.containerd.gen.containerd.events import content_pb2 as events_pb
from engine.api.containerd.gen.containerd.services.content.v1 import content_pb2 as pb
from engine.api.containerd.gen.containerd.services.content.v1.content_grpc import ContentBase
from engine.api.containerd.gen.containerd.services.leases.v1 import leases_pb2 as lpb
from engine.api.containerd.gen.containerd.services.leases.v1.leases_grpc import LeasesBase
from engine.api.containerd.registry import implements
from engine.errors import InvalidArgument, Unavailable
from engine.events.types import Envelope
from engine.services.content import ContentDeleted
from engine.services.leases import Resource

LEASE_KEY = "containerd-lease"
READ_CHUNK = 1 << 20
LIST_BATCH = 100


@topics.register(ContentDeleted.TYPE)
def _content_deleted(env: Envelope) -> tuple[str, Any] | None:
    """containerd publishes /content/delete when a client deletes content, not when its gc collects it."""
    if env.cause == "gc":
        return None
    assert isinstance(env.event, ContentDeleted)
    return "/content/delete", events_pb.ContentDelete(digest=env.event.digest)


def _service(services: Any, name: str) -> Any:
    svc = getattr(services, name, None)
    if svc is None:
        svc = getattr(services, "extra", {}).get(name)
    return svc


def _need(svc: Any, name: str) -> Any:
    if svc is None:
        raise Unavailable(f"the {name} service is not running in this daemon")
    return svc


def _ts(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def _lease(stream: Any) -> str:
    value = (stream.metadata or {}).get(LEASE_KEY)
    if isinstance(value, list):
        value = value[-1] if value else None
    return str(value) if value else ""


def _info_pb(i: Any) -> pb.Info:
    return pb.Info(digest=i.digest, size=i.size, created_at=_ts(i.created_ns), updated_at=_ts(i.updated_ns),
                   labels=dict(i.labels))


def _status_pb(s: Any) -> pb.Status:
    return pb.Status(started_at=_ts(s.started_ns), updated_at=_ts(s.updated_ns), ref=s.ref, offset=s.offset,
                     total=s.total, expected=s.expected)


def _ns(stream: Any) -> str:
    ns = context.namespace(stream)
    assert ns is not None
    return ns


@implements(ContentBase)
class ContentServicer(ContentBase):
    def __init__(self, services: Any) -> None:
        self._content = _service(services, "content")

    @property
    def content(self) -> Any:
        return _need(self._content, "content")

    async def Info(self, stream: Any) -> None:
        req: pb.InfoRequest = await stream.recv_message()
        info = await self.content.info(_ns(stream), req.digest)
        await stream.send_message(pb.InfoResponse(info=_info_pb(info)))

    async def Update(self, stream: Any) -> None:
        req: pb.UpdateRequest = await stream.recv_message()
        paths = list(req.update_mask.paths) if req.HasField("update_mask") else None
        info = await self.content.update(_ns(stream), req.info.digest, dict(req.info.labels), paths=paths or None,
                                         actor=context.actor(stream))
        await stream.send_message(pb.UpdateResponse(info=_info_pb(info)))

    async def List(self, stream: Any) -> None:
        req: pb.ListContentRequest = await stream.recv_message()
        infos = await self.content.list(_ns(stream), list(req.filters))
        for start in range(0, len(infos), LIST_BATCH):
            await stream.send_message(pb.ListContentResponse(info=[_info_pb(i) for i in
                                                                   infos[start:start + LIST_BATCH]]))

    async def Delete(self, stream: Any) -> None:
        req: pb.DeleteContentRequest = await stream.recv_message()
        await self.content.delete(_ns(stream), req.digest, actor=context.actor(stream))
        await stream.send_message(empty_pb2.Empty())

    async def Read(self, stream: Any) -> None:
        req: pb.ReadContentRequest = await stream.recv_message()
        if req.offset < 0 or req.size < 0:
            raise InvalidArgument(f"read of {req.size} bytes at offset {req.offset}: negative")
        with await self.content.reader_at(_ns(stream), req.digest) as reader:
            if req.offset > reader.size:
                raise GRPCError(GrpcStatus.OUT_OF_RANGE,
                                f"read offset {req.offset} is past the end of {req.digest} ({reader.size} bytes)")
            size = req.size or -1
            offset = req.offset
            for chunk in reader.chunks(req.offset, size, READ_CHUNK):
                await stream.send_message(pb.ReadContentResponse(offset=offset, data=chunk))
                offset += len(chunk)

    async def Status(self, stream: Any) -> None:
        req: pb.StatusRequest = await stream.recv_message()
        st = await self.content.status(_ns(stream), req.ref)
        await stream.send_message(pb.StatusResponse(status=_status_pb(st)))

    async def ListStatuses(self, stream: Any) -> None:
        req: pb.ListStatusesRequest = await stream.recv_message()
        sts = await self.content.list_statuses(_ns(stream), list(req.filters))
        await stream.send_message(pb.ListStatusesResponse(statuses=[_status_pb(s) for s in sts]))

    async def Abort(self, stream: Any) -> None:
        req: pb.AbortRequest = await stream.recv_message()
        await self.content.abort(_ns(stream), req.ref, actor=context.actor(stream))
        await stream.send_message(empty_pb2.Empty())

    async def Write(self, stream: Any) -> None:
        ns, actor = _ns(stream), context.actor(stream)
        req: pb.WriteContentRequest | None = await stream.recv_message()
        if req is None:
            return
        if not req.ref:
            raise InvalidArgument("first message must have a reference")
        w = await self.content.writer(ns, req.ref, total=req.total, expected=req.expected, lease=_lease(stream),
                                      actor=actor)
        try:
            while req is not None:
                if req.ref and req.ref != w.ref:
                    raise InvalidArgument(f"inconsistent ref in request: {req.ref!r} != {w.ref!r}")
                msg = pb.WriteContentResponse(action=req.action)
                if req.action in (pb.WRITE, pb.COMMIT):
                    if req.offset > 0 and req.offset != w.offset:
                        raise GRPCError(GrpcStatus.OUT_OF_RANGE,
                                        f"write @{req.offset} must occur at current offset {w.offset}")
                    if req.offset == 0 and w.offset > 0:
                        await w.truncate(0)
                    if req.data:
                        await w.write(req.data)
                    if req.action == pb.COMMIT:
                        await w.commit(req.total, req.expected, dict(req.labels))
                elif req.action != pb.STAT:
                    raise InvalidArgument(f"unknown write action {req.action}")
                st = w.status()
                msg.started_at.CopyFrom(_ts(st.started_ns))
                msg.updated_at.CopyFrom(_ts(st.updated_ns))
                msg.offset, msg.total, msg.digest = st.offset, st.total, w.digest()
                await stream.send_message(msg)
                if req.action == pb.COMMIT:
                    return
                req = await stream.recv_message()
        finally:
            await w.close()


def _lease_pb(le: Any) -> lpb.Lease:
    return lpb.Lease(id=le.id, created_at=_ts(le.created_ns), labels=dict(le.labels))


@implements(LeasesBase)
class LeasesServicer(LeasesBase):
    def __init__(self, services: Any) -> None:
        self._leases = _service(services, "leases")

    @property
    def leases(self) -> Any:
        return _need(self._leases, "leases")

    async def Create(self, stream: Any) -> None:
        req: lpb.CreateRequest = await stream.recv_message()
        lease = await self.leases.create(_ns(stream), req.id or secrets.token_hex(8), dict(req.labels),
                                         actor=context.actor(stream))
        await stream.send_message(lpb.CreateResponse(lease=_lease_pb(lease)))

    async def Delete(self, stream: Any) -> None:
        req: lpb.DeleteRequest = await stream.recv_message()
        await self.leases.delete(_ns(stream), req.id, sync=req.sync, actor=context.actor(stream))
        await stream.send_message(empty_pb2.Empty())

    async def List(self, stream: Any) -> None:
        req: lpb.ListRequest = await stream.recv_message()
        leases = await self.leases.list(_ns(stream), list(req.filters))
        await stream.send_message(lpb.ListResponse(leases=[_lease_pb(le) for le in leases]))

    async def AddResource(self, stream: Any) -> None:
        req: lpb.AddResourceRequest = await stream.recv_message()
        await self.leases.add_resource(_ns(stream), req.id, Resource(req.resource.id, req.resource.type),
                                       actor=context.actor(stream))
        await stream.send_message(empty_pb2.Empty())

    async def DeleteResource(self, stream: Any) -> None:
        req: lpb.DeleteResourceRequest = await stream.recv_message()
        await self.leases.delete_resource(_ns(stream), req.id, Resource(req.resource.id, req.resource.type),
                                          actor=context.actor(stream))
        await stream.send_message(empty_pb2.Empty())

    async def ListResources(self, stream: Any) -> None:
        req: lpb.ListResourcesRequest = await stream.recv_message()
        res = await self.leases.list_resources(_ns(stream), req.id)
        await stream.send_message(lpb.ListResourcesResponse(resources=[lpb.Resource(id=r.id, type=r.type)
                                                                        for r in res]))
