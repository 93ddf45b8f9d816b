"""The containerd gRPC socket: a grpclib server with every containerd service registered.

`serve_containerd` builds one servicer per containerd service (engine's where implemented,
UNIMPLEMENTED stubs elsewhere: see registry.py), adds grpc.health.v1.Health, wraps every
handler so engine errors become gRPC statuses in one place (status.py), answers any other
path with a well-formed UNIMPLEMENTED, and listens on a unix socket. The socket file is created with mode 0660 and, if a group named ``engine``
exists, given to it (as dockerd does with ``docker``). A stale socket file left by a crashed
daemon is replaced; any other file in the way is an error.
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf import empty_pb2
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.health.service import Health
from grpclib.server import Server

from engine.api import sockets
from engine.api.containerd import registry
from engine.api.containerd.status import translating


class Drain:
    """Graceful stop for grpclib, which on close() cancels every running call and keeps serving new
    streams on connections already open: here, once draining, new calls are refused with UNAVAILABLE,
    and unary calls in flight are waited for (streams such as Events.Subscribe are cancelled)."""

    def __init__(self) -> None:
        self.closing = False
        self.inflight: set[asyncio.Task[Any]] = set()

    def track(self, path: str, func: Any, streaming: bool) -> Any:
        async def handler(stream: Any) -> None:
            if self.closing:
                raise GRPCError(Status.UNAVAILABLE, "the daemon is shutting down")
            if streaming:
                await func(stream)
                return
            task = asyncio.current_task()
            assert task is not None
            self.inflight.add(task)
            try:
                await func(stream)
            finally:
                self.inflight.discard(task)

        return handler


class _Translated:
    """A servicer whose handlers translate engine errors (grpclib reads ``__mapping__``)."""

    def __init__(self, servicer: Any, drain: Drain) -> None:
        self._servicer = servicer
        self._drain = drain

    def __mapping__(self) -> dict[str, Handler]:
        return {
            path: Handler(self._drain.track(path, translating(path, h.func),
                                            h.cardinality in (Cardinality.UNARY_STREAM, Cardinality.STREAM_STREAM)),
                          h.cardinality, h.request_type, h.reply_type)
            for path, h in self._servicer.__mapping__().items()
        }


class _UnknownIsUnimplemented(dict[str, Handler]):
    """grpclib's method table, answering UNIMPLEMENTED for paths nobody registered.

    grpclib itself answers an unknown path with a bare HTTP/2 response that has no
    content-type, which Go clients report as ``missing content-type field`` instead of
    UNIMPLEMENTED. A real handler that raises produces a proper gRPC response. The request is
    never read, so its type does not matter.
    """

    def get(self, path: str, default: Any = None) -> Handler:  # type: ignore[override]
        found = super().get(path)
        if found is not None:
            return found
        return Handler(_unknown(path), Cardinality.UNARY_UNARY, empty_pb2.Empty, empty_pb2.Empty)


def _unknown(path: str) -> Any:
    async def handler(stream: Any) -> None:
        raise GRPCError(Status.UNIMPLEMENTED, f"unknown service or method {path}")

    return handler


def build_handlers(services: Any, drain: Drain | None = None) -> list[Any]:
    """Every containerd servicer, error-translated, plus the health service."""
    drain = drain or Drain()
    return [_Translated(s, drain) for s in registry.servicers(services)] + [Health()]


async def serve_containerd(services: Any, path: str, group: str = "engine") -> Server:
    """Start serving the containerd API on unix socket `path`; the caller closes the server.

    Shut down with ``await stop_containerd(server)``.
    """
    drain = Drain()
    server = Server(build_handlers(services, drain))
    server.engine_drain = drain  # type: ignore[attr-defined]
    # grpclib keeps the method table in a private attribute, read with .get() per request
    server._mapping = _UnknownIsUnimplemented(server._mapping)
    sockets.clear_stale(path)
    with sockets.private_umask():
        await server.start(path=path)
    sockets.secure(path, group)
    return server


async def stop_containerd(server: Server, grace: float = 10.0) -> None:
    """Stop accepting, refuse new calls, let unary calls in flight finish (up to `grace` s), then close."""
    drain: Drain = server.engine_drain  # type: ignore[attr-defined]
    drain.closing = True
    if server._server is not None:  # the listener only; open connections keep going for the calls in flight
        server._server.close()
    if drain.inflight:
        await asyncio.wait(set(drain.inflight), timeout=grace)
    server.close()
    await asyncio.wait_for(server.wait_closed(), grace)
