"""The shim's framing and error mapping (no root needed)."""

from __future__ import annotations

import pytest

from engine import errors
from engine.runtime.shim import wire


def test_frames_round_trip_and_partial_input():
    a = wire.pack_json({"id": 1, "method": "State", "params": {}})
    b = wire.pack_data(wire.OUTPUT, wire.STDERR, "exec-1", b"\x00bytes")
    buf = bytearray(a + b[:7])
    frames = wire.split_frames(buf)
    assert frames == [(wire.JSON, b'{"id":1,"method":"State","params":{}}')]
    buf += b[7:]
    [(kind, body)] = wire.split_frames(buf)
    assert kind == wire.OUTPUT and wire.unpack_data(body) == (wire.STDERR, "exec-1", b"\x00bytes")
    assert buf == bytearray()


def test_bad_length_is_refused():
    with pytest.raises(errors.InvalidArgument, match="bad frame length"):
        wire.split_frames(bytearray(b"\xff\xff\xff\xffJ"))
    with pytest.raises(errors.InvalidArgument, match="exec id longer"):
        wire.pack_data(wire.INPUT, 0, "x" * 300)


@pytest.mark.parametrize(
    "cls", [errors.NotFound, errors.FailedPrecondition, errors.InvalidArgument, errors.AlreadyExists]
)
def test_errors_map_back_to_their_class(cls):
    body = wire.error_body(cls("no such thing"))
    with pytest.raises(cls, match="no such thing"):
        wire.raise_error(body)
    assert wire.error_body(RuntimeError("Boom"))["code"] == "UNKNOWN"
