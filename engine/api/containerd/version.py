"""containerd.services.version.v1.Version: the engine's version and source revision.

``ctr version`` prints these as the server's version; it warns about a version mismatch with
its own, which is expected and harmless.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

import engine
from engine.api.containerd.gen.containerd.services.version.v1 import version_pb2
from engine.api.containerd.gen.containerd.services.version.v1.version_grpc import VersionBase
from engine.api.containerd.registry import implements


@implements(VersionBase)
class VersionServicer(VersionBase):
    def __init__(self, services: Any) -> None:
        self.services = services

    async def Version(self, stream: Any) -> None:
        req = await stream.recv_message()
        assert isinstance(req, empty_pb2.Empty)
        await stream.send_message(
            version_pb2.VersionResponse(
                version=engine.__version__, revision=getattr(engine, "__revision__", "")
            )
        )
