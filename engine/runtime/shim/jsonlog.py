"""Docker's ``json-file`` log driver, written by the shim itself, byte for byte as dockerd does.

Each entry is one line ``{"log":"...","stream":"stdout","time":"<RFC3339Nano>"}\\n``:

* keys in that order, ``log`` omitted when empty; the string escaping of Docker's ffjson-derived
  writer: ``"`` and ``\\`` backslashed, ``\\n \\r`` short escapes (a tab is ``\\u0009``:
  no ``\\t``), other control bytes and the HTML characters ``< > &`` as ``\\u00xx`` (lower-case hex), invalid UTF-8 as ``\\ufffd``,
  U+2028/U+2029 escaped;
* ``time`` is the read time in UTC formatted like Go's ``time.RFC3339Nano``: trailing zeros of the
  fraction trimmed, and the dot too when the fraction is zero;
* lines longer than 16 KiB are split as Docker's copier splits them: 16 KiB chunks without a
  newline ("partial" messages), the last chunk carrying the ``\\n``;
* rotation by size (``max_size`` bytes, ``max_file`` files): when the current file would pass
  ``max_size`` it becomes ``<name>.1``, older ones shift up and the oldest beyond ``max_file`` is
  removed, as Docker's rotating file writer does (without compression).
"""

from __future__ import annotations

import contextlib
import os
import time

PARTIAL = 16 * 1024
_HEX = "0123456789abcdef"
_SAFE = [32 <= b < 128 and chr(b) not in '"\\<>&' for b in range(128)]


def go_time(ns: int) -> str:
    """Go's time.RFC3339Nano for a UTC instant given in nanoseconds."""
    sec, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    if frac:
        base += "." + f"{frac:09d}".rstrip("0")
    return base + "Z"


def escape(data: bytes) -> str:
    """The JSON string body (without quotes) as Docker's json-file writer escapes ``data``."""
    out: list[str] = []
    text = data.decode("utf-8", "surrogateescape")
    for ch in text:
        c = ord(ch)
        if c < 128:
            if _SAFE[c]:
                out.append(ch)
            elif ch in '"\\':
                out.append("\\" + ch)
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\r":
                out.append("\\r")
            else:
                out.append("\\u00" + _HEX[c >> 4] + _HEX[c & 15])
        elif 0xDC80 <= c <= 0xDCFF:  # an undecodable byte
            out.append("\\ufffd")
        elif c in (0x2028, 0x2029):
            out.append("\\u202" + _HEX[c & 15])
        else:
            out.append(ch)
    return "".join(out)


def entry(log: bytes, stream: str, ns: int) -> bytes:
    parts = ["{"]
    if log:
        parts.append('"log":"' + escape(log) + '",')
    if stream:
        parts.append('"stream":"' + escape(stream.encode()) + '",')
    parts.append('"time":"' + go_time(ns) + '"}\n')
    return "".join(parts).encode()


class LineSplitter:
    """Docker's copier for one stream: whole lines, and 16 KiB partial chunks of long lines."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out = []
        while True:
            nl = self.buf.find(b"\n", 0, PARTIAL)
            if nl >= 0:
                out.append(bytes(self.buf[: nl + 1]))
                del self.buf[: nl + 1]
            elif len(self.buf) >= PARTIAL:
                out.append(bytes(self.buf[:PARTIAL]))
                del self.buf[:PARTIAL]
            else:
                return out

    def flush(self) -> list[bytes]:
        rest, self.buf = bytes(self.buf), bytearray()
        return [rest] if rest else []


class JSONFileWriter:
    """Appends entries to ``path`` with size-based rotation; ``max_size`` <= 0 means unbounded."""

    def __init__(self, path: str, max_size: int = -1, max_file: int = 1) -> None:
        self.path = path
        self.max_size = max_size
        self.max_file = max(1, max_file)
        self.splitters = {"stdout": LineSplitter(), "stderr": LineSplitter()}
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, stream: str, data: bytes, ns: int | None = None) -> None:
        ns = ns if ns is not None else time.time_ns()
        for line in self.splitters[stream].feed(data):
            self._write(entry(line, stream, ns))

    def flush(self) -> None:
        ns = time.time_ns()
        for stream, sp in self.splitters.items():
            for rest in sp.flush():
                self._write(entry(rest, stream, ns))

    def _write(self, rec: bytes) -> None:
        if self.max_size > 0 and self.size + len(rec) > self.max_size and self.size > 0:
            self._rotate()
        os.write(self.fd, rec)
        self.size += len(rec)

    def _rotate(self) -> None:
        os.close(self.fd)
        if self.max_file > 1:
            for i in range(self.max_file - 1, 0, -1):
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                with contextlib.suppress(FileNotFoundError):
                    os.replace(src, f"{self.path}.{i}")
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        else:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = 0

    def close(self) -> None:
        if self.fd >= 0:
            self.flush()
            os.close(self.fd)
            self.fd = -1
