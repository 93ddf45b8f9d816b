"""containerd.services.introspection.v1.Introspection: who the server is and what it can do.

Server answers the daemon's UUID (stable across restarts: it is the Services bundle's
``daemon_uuid``), the pid and pid namespace (1.7 fields) and no deprecation warnings.

Plugins answers a plugin list that tells the truth about engine: every containerd gRPC
service appears as an ``io.containerd.grpc.v1`` plugin; a service engine has not implemented
at all carries an init error (UNIMPLEMENTED, so ``ctr plugins ls`` shows it as ``error``), and
a partly implemented one exports ``unimplemented=<methods>``. Filters use containerd's syntax
over ``type`` and ``id`` (the only fields containerd's plugin adaptor answers).
"""

from __future__ import annotations

import os
from typing import Any

from google.protobuf import empty_pb2
from grpclib.const import Status

from engine.api.containerd import filters, registry
from engine.api.containerd.gen.containerd.services.introspection.v1 import introspection_pb2 as pb
from engine.api.containerd.gen.containerd.services.introspection.v1.introspection_grpc import (
    IntrospectionBase,
)
from engine.api.containerd.gen.google.rpc import status_pb2
from engine.errors import InvalidArgument, NotFound, Unimplemented

GRPC_PLUGIN = "io.containerd.grpc.v1"
EVENT_PLUGIN = "io.containerd.event.v1"
METADATA_PLUGIN = "io.containerd.metadata.v1"

# what each implemented gRPC plugin needs, in containerd's plugin-type vocabulary
_REQUIRES = {
    "events": [EVENT_PLUGIN],
    "namespaces": [METADATA_PLUGIN],
}


def plugin_list(services: Any) -> list[pb.Plugin]:
    """The plugins engine has, in a stable order."""
    journal_path = str(getattr(services.journal, "path", ""))
    plugins = [
        pb.Plugin(type=EVENT_PLUGIN, id="exchange", exports={"backend": "journal"}),
        pb.Plugin(type=METADATA_PLUGIN, id="journal", exports={"path": journal_path} if journal_path else {}),
    ]
    for info in registry.SERVICES:
        impl = registry.implementation(info.base)
        plugin = pb.Plugin(type=GRPC_PLUGIN, id=info.plugin_id)
        if impl is None:
            plugin.init_err.CopyFrom(
                status_pb2.Status(
                    code=Status.UNIMPLEMENTED.value,
                    message=f"{registry.service_name(info.base)} is not implemented yet",
                )
            )
        else:
            plugin.requires.extend(_REQUIRES.get(info.plugin_id, []))
            missing = registry.unimplemented_methods(impl)
            if missing:
                plugin.exports["unimplemented"] = ",".join(missing)
        plugins.append(plugin)
    plugins.append(pb.Plugin(type=GRPC_PLUGIN, id="healthcheck"))
    return plugins


def _adaptor(p: pb.Plugin) -> filters.Adaptor:
    def adapt(path: tuple[str, ...]) -> str | None:
        if path == ("type",):
            return p.type or None
        if path == ("id",):
            return p.id or None
        return None

    return adapt


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


@registry.implements(IntrospectionBase)
class IntrospectionServicer(IntrospectionBase):
    def __init__(self, services: Any) -> None:
        self.services = services

    async def Plugins(self, stream: Any) -> None:
        req: pb.PluginsRequest = await stream.recv_message()
        flt = filters.parse_all(req.filters)
        plugins = [p for p in plugin_list(self.services) if flt.match(_adaptor(p))]
        await stream.send_message(pb.PluginsResponse(plugins=plugins))

    async def Server(self, stream: Any) -> None:
        req = await stream.recv_message()
        assert isinstance(req, empty_pb2.Empty)
        await stream.send_message(
            pb.ServerResponse(uuid=self.services.daemon_uuid, pid=os.getpid(), pidns=_pid_namespace())
        )

    async def PluginInfo(self, stream: Any) -> None:
        req: pb.PluginInfoRequest = await stream.recv_message()
        if not req.type or not req.id:
            raise InvalidArgument("plugin type and id are required")
        for p in plugin_list(self.services):
            if p.type == req.type and p.id == req.id:
                if req.HasField("options"):
                    raise Unimplemented(f"plugin {req.type}.{req.id} does not take info options")
                await stream.send_message(pb.PluginInfoResponse(plugin=p))
                return
        raise NotFound(f"plugin {req.type}.{req.id}: not found")
