"""Reading a Docker container's ``json-file`` log (written by the shim, see engine/runtime/shim/jsonlog.py).

``read_log(path, tail=, since_ns=, until_ns=)`` returns what is in the files now, oldest first, and a
``Position`` to follow from; ``follow(path, position, until_ns=, stopped=)`` yields what is appended after
it, across rotations, until ``stopped`` fires (the container's task exited) and the files are drained.

Design choices:

* Rotated files are ``<path>.N`` … ``<path>.1`` then ``<path>``, oldest first, as the shim's writer
  (Docker's) names them; ``tail`` counts json lines from the end of that sequence before any other filter,
  as Docker's json-file reader does, and is read backwards in blocks, so ``--tail 2`` of a large log reads
  a few KiB.
* Partial messages (the shim splits a line longer than 16 KiB into 16 KiB entries without a newline) are
  joined back into one message per stream, so a long line is one line with one timestamp.
* Following watches the directory with inotify (via libc, no dependency), so rotation (a rename) and
  appends wake the reader at once with no polling; if inotify is unavailable it polls every 100 ms. The
  end is the task's exit, which the shim journals only after it has drained the output and flushed the
  log, so what follows the exit signal is one last read to the end of the file.
* Everything here is plain file reading; ``services`` is not imported, so the reader is unit-testable on
  files the shim's own writer produced.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import ctypes
import ctypes.util
import os
import struct
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

import msgspec

from engine.errors import InvalidArgument

BLOCK = 64 * 1024


class _Entry(msgspec.Struct):
    time: str = ""
    stream: str = ""
    log: str = ""


_decode_entry = msgspec.json.Decoder(_Entry).decode


class Message:
    """One log message; its time is parsed only when asked for (filters, timestamps)."""

    __slots__ = ("stream", "data", "time", "_ns")

    def __init__(self, stream: str, data: bytes, time: str = "", time_ns: int = -1) -> None:
        self.stream, self.data, self.time, self._ns = stream, data, time, time_ns

    @property
    def time_ns(self) -> int:
        if self._ns < 0:
            try:
                self._ns = parse_time(self.time) if self.time else 0
            except InvalidArgument:
                self._ns = 0
        return self._ns

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and (self.stream, self.data, self.time_ns) == (
            other.stream, other.data, other.time_ns)

    def __repr__(self) -> str:
        return f"Message({self.stream!r}, {self.data!r}, {self.time!r})"


@dataclass
class Position:
    """Where a reader stopped: the file currently named ``path`` (by inode) and the offset in it."""

    inode: int = 0
    offset: int = 0


_sec_cache: dict[str, int] = {}


def parse_time(value: str) -> int:
    """Nanoseconds for Go's RFC3339Nano in UTC (``2026-11-23T22:07:23.5Z``), as the log's ``time``."""
    head = value[:19]
    sec = _sec_cache.get(head)
    if sec is None:
        try:
            sec = calendar.timegm((int(head[0:4]), int(head[5:7]), int(head[8:10]), int(head[11:13]),
                                   int(head[14:16]), int(head[17:19]), 0, 0, 0))
        except ValueError as err:
            raise InvalidArgument(f"log entry has an invalid time {value!r}") from err
        if len(_sec_cache) > 4096:
            _sec_cache.clear()
        _sec_cache[head] = sec
    frac = 0
    rest = value[19:]
    if rest.startswith("."):
        digits = rest[1:].rstrip("Z")
        end = 0
        while end < len(digits) and digits[end].isdigit():
            end += 1
        frac = int(digits[:end][:9].ljust(9, "0")) if end else 0
        rest = digits[end:]
    else:
        rest = rest.rstrip("Z")
    if rest and rest[0] in "+-" and len(rest) >= 6:  # an offset other than Z
        sign = 1 if rest[0] == "+" else -1
        sec -= sign * (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60)
    return sec * 1_000_000_000 + frac


def format_time(ns: int) -> str:
    """Docker's RFC3339NanoFixed in UTC: always nine fraction digits (what ``docker logs -t`` prints)."""
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def log_files(path: str) -> list[str]:
    """The log's files, oldest first: ``path.N`` … ``path.1``, ``path`` (those that exist)."""
    d, base = os.path.split(path)
    rotated: list[tuple[int, str]] = []
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(d or "."):
            if name.startswith(base + ".") and name[len(base) + 1:].isdigit():
                rotated.append((int(name[len(base) + 1:]), os.path.join(d, name)))
    files = [p for _, p in sorted(rotated, reverse=True)]
    if os.path.exists(path):
        files.append(path)
    return files


def _last_lines(fd: int, size: int, want: int) -> tuple[list[bytes], bool]:
    """Up to `want` complete lines from the end of the first `size` bytes of fd; True if the file has more."""
    lines: list[bytes] = []
    buf = b""
    pos = size
    while pos > 0 and len(lines) < want:
        step = min(BLOCK, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        parts = buf.split(b"\n")
        buf = parts[0]  # maybe incomplete: it continues in the block before
        for line in reversed(parts[1:]):
            if line:
                lines.append(line)
                if len(lines) >= want:
                    return list(reversed(lines)), True
    if buf and len(lines) < want:
        lines.append(buf)
    return list(reversed(lines)), False


def _read_all(fd: int, start: int, end: int) -> bytes:
    out = []
    pos = start
    while pos < end:
        chunk = os.pread(fd, min(1 << 20, end - pos), pos)
        if not chunk:
            break
        out.append(chunk)
        pos += len(chunk)
    return b"".join(out)


def read_log(path: str, *, tail: int = -1, since_ns: int = 0, until_ns: int = 0) -> tuple[list[Message], Position]:
    """The messages in the log now (oldest first) and where a follower continues; a missing log is empty."""
    files = log_files(path) if path else []
    if not files:
        return [], Position()
    raw: list[bytes] = []
    pos = Position()
    # the current file first: its size now is where following starts
    chunks: list[list[bytes]] = []
    for i, name in enumerate(reversed(files)):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            st = os.fstat(fd)
            size = st.st_size
            if i == 0 and name == path:
                data_end = size
                # only whole lines: a line being written is read by the follower
                if size:
                    tail_byte = os.pread(fd, 1, size - 1)
                    if tail_byte != b"\n":
                        back = _read_all(fd, max(0, size - BLOCK * 4), size)
                        cut = back.rfind(b"\n")
                        data_end = size - (len(back) - cut - 1) if cut >= 0 else max(0, size - len(back))
                pos = Position(st.st_ino, data_end)
                size = data_end
            if tail >= 0:
                need = tail - sum(len(c) for c in chunks)
                if need <= 0:
                    break
                lines, more = _last_lines(fd, size, need)
                chunks.append(lines)
                if more:
                    break
            else:
                chunks.append([ln for ln in _read_all(fd, 0, size).split(b"\n") if ln])
        finally:
            os.close(fd)
    for c in reversed(chunks):
        raw.extend(c)
    if tail >= 0 and len(raw) > tail:
        raw = raw[len(raw) - tail:] if tail else []
    joiner = Joiner()
    out: list[Message] = []
    for line in raw:
        msg = decode_line(line)
        if msg is None or not in_window(msg, since_ns, until_ns):
            continue
        out.extend(joiner.feed(msg))
    out.extend(joiner.flush())
    return out, pos


def decode_line(line: bytes) -> Message | None:
    try:
        e = _decode_entry(line)
    except msgspec.DecodeError:
        return None  # a torn or foreign line: Docker skips what it cannot decode too
    return Message(e.stream or "stdout", e.log.encode("utf-8", "surrogatepass"), e.time)


def in_window(msg: Message, since_ns: int, until_ns: int) -> bool:
    if not since_ns and not until_ns:
        return True
    if since_ns and msg.time_ns < since_ns:
        return False
    return not (until_ns and msg.time_ns > until_ns)


class Joiner:
    """Joins 16 KiB partial entries (no trailing newline) with what follows on the same stream."""

    def __init__(self) -> None:
        self.pending: dict[str, Message] = {}

    def feed(self, msg: Message) -> list[Message]:
        prev = self.pending.pop(msg.stream, None)
        if prev is not None:
            msg = Message(msg.stream, prev.data + msg.data, prev.time, prev._ns)
        if msg.data.endswith(b"\n") or not msg.data:
            return [msg]
        self.pending[msg.stream] = msg
        return []

    def flush(self) -> list[Message]:
        out = sorted(self.pending.values(), key=lambda m: m.time_ns)
        self.pending.clear()
        return out


# ---- following ---------------------------------------------------------------------------------------
_IN_MODIFY, _IN_CLOSE_WRITE, _IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x2, 0x8, 0x40, 0x80, 0x100, 0x200
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_libc: ctypes.CDLL | None = None


def _inotify(directory: str) -> int:
    """An inotify fd watching `directory` for appends, renames and creations; -1 if unavailable."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return -1
        mask = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
        if _libc.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
            os.close(fd)
            return -1
        return fd
    except (OSError, AttributeError):
        return -1


class _Waker:
    """Wakes a follower when the log directory changes (inotify), or every 100 ms without inotify."""

    def __init__(self, directory: str) -> None:
        self.fd = _inotify(directory)
        self.event = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        if self.fd >= 0:
            self.loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self.fd, 65536):
                pass
        self.event.set()

    async def wait(self, stop: asyncio.Future, timeout: float | None = None) -> None:
        if self.fd < 0:
            await asyncio.wait([stop], timeout=0.1)
            return
        waiter = asyncio.ensure_future(self.event.wait())
        try:
            await asyncio.wait([waiter, stop], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        self.event.clear()

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1


class _Tailer:
    """Reads complete lines appended to `path` from a Position on, switching file on rotation."""

    def __init__(self, path: str, pos: Position) -> None:
        self.path = path
        self.fd = -1
        self.inode = 0
        self.offset = 0
        self.buf = b""
        for name in (path, path + ".1"):  # the file we stopped in may have been rotated to .1 since
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
                ino = os.fstat(fd).st_ino
                if pos.inode and ino == pos.inode:
                    self.fd, self.inode, self.offset = fd, ino, pos.offset
                    return
                os.close(fd)
        # not found (or nothing was read): the current file from its start

    def _drain(self, lines: list[bytes]) -> None:
        data = _read_all(self.fd, self.offset, os.fstat(self.fd).st_size)
        self.offset += len(data)
        parts = (self.buf + data).split(b"\n")
        self.buf = parts.pop()
        lines.extend(p for p in parts if p)

    def read(self) -> list[bytes]:
        """Complete lines available now (following rotations when the file we read is done)."""
        lines: list[bytes] = []
        for _ in range(16):  # a few rotations at most per wake-up
            if self.fd < 0:
                try:
                    self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    return lines
                self.inode, self.offset, self.buf = os.fstat(self.fd).st_ino, 0, b""
            self._drain(lines)
            try:
                now = os.stat(self.path).st_ino
            except FileNotFoundError:
                return lines
            if now == self.inode:
                return lines
            self._drain(lines)  # rotated away: whatever was written before the rename, then the new file
            os.close(self.fd)
            self.fd = -1
        return lines

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def follow(path: str, pos: Position, *, stopped: Awaitable[object], until_ns: int = 0,
                 since_ns: int = 0) -> AsyncIterator[Message]:
    """Messages appended after `pos` until `stopped` completes (then the rest of the file) or `until_ns`."""
    stop = asyncio.ensure_future(stopped)
    waker = _Waker(os.path.dirname(path) or ".")
    tailer = _Tailer(path, pos)
    joiner = Joiner()
    try:
        while True:
            done = stop.done()
            for line in tailer.read():
                msg = decode_line(line)
                if msg is None:
                    continue
                if until_ns and msg.time_ns > until_ns:
                    return
                if not in_window(msg, since_ns, 0):
                    continue
                for m in joiner.feed(msg):
                    yield m
            if done:
                for m in joiner.flush():
                    yield m
                return
            if until_ns and time.time_ns() > until_ns:
                return
            await waker.wait(stop, 0.5 if until_ns else None)
    finally:
        stop.cancel()
        waker.close()
        tailer.close()


def frame(stream: int, data: bytes) -> bytes:
    """One stdcopy frame: [stream, 0, 0, 0, size (u32 big-endian)] + data."""
    return struct.pack(">BxxxL", stream, len(data)) + data
