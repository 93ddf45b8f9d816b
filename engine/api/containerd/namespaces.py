"""containerd.services.namespaces.v1.Namespaces over engine.services.namespaces.

A thin adapter: protobuf in, NamespaceService call (which journals the change), protobuf
out. Update passes the request's field mask through; an empty mask replaces every label, and
``labels.<key>`` sets (or, with an empty value, removes) one label, as containerd does.
List honours the request's ``filter`` (containerd's filter syntax over ``name`` and
``labels.<key>``), which containerd itself accepts but ignores.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from engine.api.containerd import context, filters
from engine.api.containerd.gen.containerd.services.namespaces.v1 import namespace_pb2 as pb
from engine.api.containerd.gen.containerd.services.namespaces.v1.namespace_grpc import NamespacesBase
from engine.api.containerd.registry import implements
from engine.errors import InvalidArgument


def _to_pb(ns: Any) -> pb.Namespace:
    return pb.Namespace(name=ns.name, labels=dict(ns.labels))


def _adaptor(ns: Any) -> filters.Adaptor:
    return filters.mapping_adaptor({"name": ns.name, "labels": dict(ns.labels)})


@implements(NamespacesBase)
class NamespacesServicer(NamespacesBase):
    def __init__(self, services: Any) -> None:
        self.namespaces = services.namespaces

    async def Get(self, stream: Any) -> None:
        req: pb.GetNamespaceRequest = await stream.recv_message()
        ns = await self.namespaces.get(req.name)
        await stream.send_message(pb.GetNamespaceResponse(namespace=_to_pb(ns)))

    async def List(self, stream: Any) -> None:
        req: pb.ListNamespacesRequest = await stream.recv_message()
        flt = filters.parse(req.filter)
        items = [ns for ns in await self.namespaces.list() if flt.match(_adaptor(ns))]
        await stream.send_message(pb.ListNamespacesResponse(namespaces=[_to_pb(ns) for ns in items]))

    async def Create(self, stream: Any) -> None:
        req: pb.CreateNamespaceRequest = await stream.recv_message()
        ns = await self.namespaces.create(
            req.namespace.name, dict(req.namespace.labels), actor=context.actor(stream)
        )
        await stream.send_message(pb.CreateNamespaceResponse(namespace=_to_pb(ns)))

    async def Update(self, stream: Any) -> None:
        req: pb.UpdateNamespaceRequest = await stream.recv_message()
        paths = list(req.update_mask.paths) if req.HasField("update_mask") else []
        for path in paths:
            if path != "labels" and not path.startswith("labels."):
                raise InvalidArgument(f'cannot update "{path}" field')
        ns = await self.namespaces.update(
            req.namespace.name,
            dict(req.namespace.labels),
            paths=paths or None,
            actor=context.actor(stream),
        )
        await stream.send_message(pb.UpdateNamespaceResponse(namespace=_to_pb(ns)))

    async def Delete(self, stream: Any) -> None:
        req: pb.DeleteNamespaceRequest = await stream.recv_message()
        await self.namespaces.delete(req.name, actor=context.actor(stream))
        await stream.send_message(empty_pb2.Empty())
