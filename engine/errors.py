"""The one set of error classes, after containerd's errdefs.

Services raise these with context; each transport maps them exactly once:
the Docker API to an HTTP status and ``{"message": ...}``, the containerd API to a
gRPC status, the CLIs to a one-line message and exit code 1. Messages are lower-case
and carry no trailing period.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    http_status = 500
    grpc_code = "UNKNOWN"


class InvalidArgument(EngineError):
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class NotFound(EngineError):
    http_status = 404
    grpc_code = "NOT_FOUND"


class AlreadyExists(EngineError):
    http_status = 409
    grpc_code = "ALREADY_EXISTS"


class FailedPrecondition(EngineError):
    http_status = 412
    grpc_code = "FAILED_PRECONDITION"


class Conflict(EngineError):
    """A state conflict (container running, name in use); Docker answers 409."""

    http_status = 409
    grpc_code = "FAILED_PRECONDITION"


class PermissionDenied(EngineError):
    http_status = 403
    grpc_code = "PERMISSION_DENIED"


class Unavailable(EngineError):
    http_status = 503
    grpc_code = "UNAVAILABLE"


class DataLoss(EngineError):
    http_status = 500
    grpc_code = "DATA_LOSS"


class Unimplemented(EngineError):
    http_status = 501
    grpc_code = "UNIMPLEMENTED"


class Aborted(EngineError):
    http_status = 409
    grpc_code = "ABORTED"
