"""containerd.services.containers.v1.Containers over engine.services.containers.

Protobuf in, ContainerService call (journaled), protobuf out. The spec, runtime options and extensions
are Anys kept byte for byte. List and ListStream take containerd filters over id, image, runtime.name,
snapshotter and labels. Journal events go out as /containers/create|update|delete.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, empty_pb2, message, timestamp_pb2

from engine.api.containerd import context, filters, topics
from engine.api.containerd.gen.containerd.events import container_pb2 as epb
from engine.api.containerd.gen.containerd.services.containers.v1 import containers_pb2 as pb
from engine.api.containerd.gen.containerd.services.containers.v1.containers_grpc import ContainersBase
from engine.api.containerd.registry import implements
from engine.events.types import Envelope
from engine.services.containers import (
    AnyBlob,
    Container,
    ContainerCreated,
    ContainerDeleted,
    ContainerUpdated,
    Runtime,
)


def _any_in(a: any_pb2.Any) -> AnyBlob:
    return AnyBlob(type_url=a.type_url, value=a.value)


def _any_out(a: AnyBlob) -> any_pb2.Any:
    return any_pb2.Any(type_url=a.type_url, value=a.value)


def _ts(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def from_pb(c: pb.Container) -> Container:
    runtime = Runtime(name=c.runtime.name,
                      options=_any_in(c.runtime.options) if c.runtime.HasField("options") else None)
    return Container(id=c.id, labels=dict(c.labels), image=c.image, runtime=runtime,
                     spec=_any_in(c.spec) if c.HasField("spec") else None, snapshotter=c.snapshotter,
                     snapshot_key=c.snapshot_key, extensions={k: _any_in(v) for k, v in c.extensions.items()},
                     sandbox=c.sandbox)


def to_pb(c: Container) -> pb.Container:
    out = pb.Container(id=c.id, labels=dict(c.labels), image=c.image, snapshotter=c.snapshotter,
                       snapshot_key=c.snapshot_key, sandbox=c.sandbox, created_at=_ts(c.created_ns),
                       updated_at=_ts(c.updated_ns))
    out.runtime.name = c.runtime.name
    if c.runtime.options is not None:
        out.runtime.options.CopyFrom(_any_out(c.runtime.options))
    if c.spec is not None:
        out.spec.CopyFrom(_any_out(c.spec))
    for k, v in c.extensions.items():
        out.extensions[k].CopyFrom(_any_out(v))
    return out


@implements(ContainersBase)
class ContainersServicer(ContainersBase):
    def __init__(self, services: Any) -> None:
        self.containers = services.containers

    async def Get(self, stream: Any) -> None:
        req: pb.GetContainerRequest = await stream.recv_message()
        c = await self.containers.get(context.namespace(stream), req.id)
        await stream.send_message(pb.GetContainerResponse(container=to_pb(c)))

    async def List(self, stream: Any) -> None:
        req: pb.ListContainersRequest = await stream.recv_message()
        items = await self.containers.list(context.namespace(stream), filters.parse_all(req.filters))
        await stream.send_message(pb.ListContainersResponse(containers=[to_pb(c) for c in items]))

    async def ListStream(self, stream: Any) -> None:
        req: pb.ListContainersRequest = await stream.recv_message()
        for c in await self.containers.list(context.namespace(stream), filters.parse_all(req.filters)):
            await stream.send_message(pb.ListContainerMessage(container=to_pb(c)))

    async def Create(self, stream: Any) -> None:
        req: pb.CreateContainerRequest = await stream.recv_message()
        c = await self.containers.create(context.namespace(stream), from_pb(req.container),
                                         actor=context.actor(stream))
        await stream.send_message(pb.CreateContainerResponse(container=to_pb(c)))

    async def Update(self, stream: Any) -> None:
        req: pb.UpdateContainerRequest = await stream.recv_message()
        paths = list(req.update_mask.paths) if req.HasField("update_mask") else []
        c = await self.containers.update(context.namespace(stream), from_pb(req.container), paths,
                                         actor=context.actor(stream))
        await stream.send_message(pb.UpdateContainerResponse(container=to_pb(c)))

    async def Delete(self, stream: Any) -> None:
        req: pb.DeleteContainerRequest = await stream.recv_message()
        await self.containers.delete(context.namespace(stream), req.id, actor=context.actor(stream))
        await stream.send_message(empty_pb2.Empty())


@topics.register(ContainerCreated.TYPE)
def _created(env: Envelope) -> tuple[str, message.Message]:
    ev = env.event
    assert isinstance(ev, ContainerCreated)
    msg = epb.ContainerCreate(id=ev.id, image=ev.container.image)
    msg.runtime.name = ev.container.runtime.name
    if ev.container.runtime.options is not None:
        msg.runtime.options.CopyFrom(_any_out(ev.container.runtime.options))
    return "/containers/create", msg


@topics.register(ContainerUpdated.TYPE)
def _updated(env: Envelope) -> tuple[str, message.Message]:
    ev = env.event
    assert isinstance(ev, ContainerUpdated)
    c = ev.container
    return "/containers/update", epb.ContainerUpdate(id=ev.id, image=c.image, labels=dict(c.labels),
                                                     snapshot_key=c.snapshot_key)


@topics.register(ContainerDeleted.TYPE)
def _deleted(env: Envelope) -> tuple[str, message.Message]:
    ev = env.event
    assert isinstance(ev, ContainerDeleted)
    return "/containers/delete", epb.ContainerDelete(id=ev.id)
