"""JSON without the ``json`` package's import cost, for the runtime's timed path.

``import json`` pulls in ``re`` (and with it enum, functools, collections): about 5 ms of a
container start when nothing else has loaded them.  The C accelerator ``_json`` that ``json``
itself uses has everything needed: ``make_scanner`` parses, ``make_encoder`` writes.  Results
are identical to ``json.loads`` / ``json.dumps(obj, separators=(",", ":"))``; anything fancier
(indentation) goes through the ``json`` package, off the hot path.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # typing costs an import on the timed path; mypy still sees this
if TYPE_CHECKING:
    from typing import Any

_WS = " \t\n\r"


class _Ctx:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


_scan = _json.make_scanner(_Ctx())  # type: ignore[arg-type]


def loads(data: str | bytes) -> Any:
    """Parse one JSON document; raises ValueError like json.loads (with line/column)."""
    if isinstance(data, (bytes, bytearray)):
        data = data.decode("utf-8-sig" if data[:3] == b"\xef\xbb\xbf" else "utf-8")
    n = len(data)
    i = 0
    while i < n and data[i] in _WS:
        i += 1
    try:
        obj, end = _scan(data, i)
    except StopIteration as e:
        raise ValueError(f"Expecting value: {_where(data, e.value)}") from None
    finally:
        _Ctx.memo.clear()
    while end < n and data[end] in _WS:
        end += 1
    if end != n:
        raise ValueError(f"Extra data: {_where(data, end)}")
    return obj


def _where(doc: str, pos: int) -> str:
    line = doc.count("\n", 0, pos) + 1
    col = pos - doc.rfind("\n", 0, pos)
    return f"line {line} column {col} (char {pos})"


def _default(o: object) -> object:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


_enc = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None, ":", ",", False, False, True)


def dumps(obj: object) -> str:
    """Compact JSON (``separators=(",", ":")``), ASCII-escaped as json.dumps does by default."""
    return "".join(_enc(obj, 0))
