"""The shim's wire: length-prefixed frames over a unix stream socket.

Why not ttrpc or gRPC: the shim is one process per container, and its memory is the cost that
matters (DESIGN §5: a shim forked from a warm parent with a plain ``selectors`` loop is 1.55 MiB
PSS, 2.66 MiB with asyncio + msgspec loaded).  So the server side is a selectors loop and the
payload is stdlib ``json`` (already imported by the runtime; no extra module in the shim).  ttrpc
compatibility is not a goal: only our daemon talks to the shim.

A frame is ``length:u32 BE`` (kind byte + body, at most 16 MiB) then ``kind:u8`` then the body:

* ``J`` a JSON object.  Requests ``{"id": n, "method": "Start", "params": {...}}``; responses
  ``{"id": n, "result": ...}`` or ``{"id": n, "error": {"code": "NOT_FOUND", "message": "..."}}``
  (``code`` is an engine.errors class's grpc_code); pushed events ``{"event": {...}}``.
* ``O`` output bytes for an attached reader: ``stream:u8`` (1 stdout, 2 stderr) ``idlen:u8``
  ``exec_id`` then the data.  ``E`` (same header, no data) says that stream reached its end.
* ``I`` input bytes from the client for a process's stdin: same header as ``O``.
"""

from __future__ import annotations

import json
import struct

from engine import errors

MAX_FRAME = 16 << 20
HEADER = struct.Struct(">IB")
JSON, OUTPUT, OUTPUT_END, INPUT = ord("J"), ord("O"), ord("E"), ord("I")
STDOUT, STDERR = 1, 2

_CODES: dict[str, type[errors.EngineError]] = {}
for _name in (
    "InvalidArgument",
    "NotFound",
    "AlreadyExists",
    "FailedPrecondition",
    "Unavailable",
    "DataLoss",
    "Unimplemented",
    "Aborted",
    "PermissionDenied",
):
    _cls = getattr(errors, _name)
    _CODES.setdefault(_cls.grpc_code, _cls)


def pack_json(obj: dict) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return HEADER.pack(len(body) + 1, JSON) + body


def pack_data(kind: int, stream: int, exec_id: str, data: bytes = b"") -> bytes:
    eid = exec_id.encode()
    if len(eid) > 255:
        raise errors.InvalidArgument("exec id longer than 255 bytes")
    head = bytes((stream, len(eid))) + eid
    return HEADER.pack(1 + len(head) + len(data), kind) + head + data


def unpack_data(body: bytes) -> tuple[int, str, bytes]:
    """``(stream, exec_id, data)`` from an O/E/I body."""
    if len(body) < 2 or len(body) < 2 + body[1]:
        raise errors.InvalidArgument("short data frame")
    n = body[1]
    return body[0], body[2 : 2 + n].decode(), body[2 + n :]


def split_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Take every whole frame off the front of ``buf``; raise InvalidArgument on a bad length."""
    out = []
    while len(buf) >= 5:
        length, kind = HEADER.unpack_from(buf)
        if length < 1 or length > MAX_FRAME:
            raise errors.InvalidArgument(f"bad frame length {length}")
        if len(buf) < 4 + length:
            break
        out.append((kind, bytes(buf[5 : 4 + length])))
        del buf[: 4 + length]
    return out


def error_body(err: BaseException) -> dict:
    if isinstance(err, errors.EngineError):
        return {"code": err.grpc_code, "message": str(err)}
    return {"code": "UNKNOWN", "message": f"{type(err).__name__}: {err}".lower()}


def raise_error(body: dict) -> None:
    cls = _CODES.get(body.get("code", ""), errors.EngineError)
    raise cls(body.get("message", "shim error"))
