"""The one place where engine errors become gRPC statuses on the containerd socket.

Each engine.errors class names its gRPC code (``grpc_code``, a grpclib ``Status`` member);
`translating` wraps every handler the server registers, so servicers just raise engine
errors. Anything that is not an EngineError is a bug: it is logged with its traceback and
answered as UNKNOWN with a short message, never with the traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from engine.errors import EngineError

log = logging.getLogger(__name__)


def to_grpc(err: EngineError) -> GRPCError:
    """The GRPCError that reports `err` to a containerd client."""
    try:
        status = Status[err.grpc_code]
    except KeyError:
        status = Status.UNKNOWN
    return GRPCError(status, str(err) or type(err).__name__)


def unimplemented(service: str, method: str) -> GRPCError:
    return GRPCError(Status.UNIMPLEMENTED, f"{service}/{method} is not implemented yet")


def translating(name: str, func: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """Wrap a grpclib handler so engine errors leave as their gRPC status."""

    @functools.wraps(func)
    async def handler(stream: Any) -> None:
        try:
            await func(stream)
        except EngineError as err:
            raise to_grpc(err) from err
        except GRPCError:
            raise
        except Exception as err:
            # grpclib would answer UNKNOWN too; log it here with the method name
            log.exception("containerd api %s failed", name)
            raise GRPCError(Status.UNKNOWN, f"internal error: {type(err).__name__}") from err

    return handler
