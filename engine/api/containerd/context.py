"""Per-call context of a containerd gRPC request: who is calling and in which namespace.

containerd clients put the namespace in the ``containerd-namespace`` metadata key (ctr sends
``default`` unless told otherwise). The actor recorded in the journal is the peer's
credentials (SO_PEERCRED on the unix socket), read fresh for every call because grpclib does
not expose a per-connection hook.
"""

from __future__ import annotations

import socket
from typing import Any

from engine.api.peer import actor_from_socket
from engine.errors import FailedPrecondition
from engine.services.namespaces import validate_name

NAMESPACE_KEY = "containerd-namespace"


def actor(stream: Any) -> str:
    """The journal actor for the peer of this grpclib stream."""
    transport = stream.peer._transport
    sock = transport.get_extra_info("socket")
    if sock is None:
        return "containerd-api:unknown-peer"
    if not isinstance(sock, socket.socket):
        # asyncio/uvloop hand out a socket-like wrapper; make a real socket object on the
        # same descriptor without taking ownership of it
        sock = socket.socket(fileno=sock.fileno())
        try:
            return actor_from_socket(sock)
        finally:
            sock.detach()
    return actor_from_socket(sock)


def namespace(stream: Any, *, required: bool = True) -> str | None:
    """The request's namespace (validated), or FailedPrecondition if required and missing."""
    metadata = stream.metadata or {}
    value = metadata.get(NAMESPACE_KEY)
    if isinstance(value, list):
        value = value[-1] if value else None
    if not value:
        if required:
            raise FailedPrecondition("namespace is required")
        return None
    return validate_name(str(value))
