"""The local terminal and the hijacked stream of attach / exec start, as the docker CLI drives them.

* **Raw mode** while a TTY session runs (termios, cfmakeraw's flags, as moby/term's MakeRaw), restored
  on every way out.
* **Resize**: the local window size is sent once the process started (after the SIGWINCH handler is in
  place, so a change in between is not lost) and again on every SIGWINCH. The signal only writes to a
  self-pipe (signal.set_wakeup_fd) that the pump's select() watches, so no HTTP request runs inside a
  signal handler.
* **Detach keys** (default ctrl-p,ctrl-q) are recognised here, client side, in what the user types, and
  only with a TTY (docker's hijack.go does the same): a prefix of the sequence is held back until it
  either completes (detach: the connection is closed, exit 0, the container keeps running) or breaks
  (the held bytes are sent).
* **Output**: with a TTY the stream is raw bytes; without one it is stdcopy frames (an 8-byte header,
  stream 1 stdout, 2 stderr, 3 a daemon error) demuxed to our stdout and stderr.
* **Stdin EOF** half-closes the connection (shutdown SHUT_WR) and output keeps flowing until the daemon
  closes; with no stdin attached the write side is closed at once, as docker does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import termios
from collections.abc import Callable, Iterator

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


class DetachKeyError(Exception):
    pass


def parse_detach_keys(spec: str) -> bytes:
    """moby/term ToBytes: comma-separated ``ctrl-<x>`` or single characters."""
    out = bytearray()
    special = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
    for key in spec.split(","):
        key = key.strip()
        low = key.lower()
        if len(key) == 1:
            out.append(ord(key))
        elif low.startswith("ctrl-") and len(key) == 6 and ("a" <= low[5] <= "z" or low[5] in special):
            c = low[5]
            out.append(ord(c) - ord("a") + 1 if "a" <= c <= "z" else special[c])
        else:
            raise DetachKeyError(f"Invalid detach keys ({spec}) provided")
    if not out:
        raise DetachKeyError(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class EscapeScanner:
    """Finds the detach sequence in typed input; `feed` returns (bytes to send, detached)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        out = bytearray()
        for b in data:
            if b == self.keys[len(self.held)]:
                self.held += bytes([b])
                if self.held == self.keys:
                    return bytes(out), True
                continue
            out += self.held
            self.held = b""
            if b == self.keys[0]:
                self.held = bytes([b])
                if self.held == self.keys:
                    return bytes(out), True
            else:
                out.append(b)
        return bytes(out), False


def window_size(fd: int) -> tuple[int, int] | None:
    """(rows, cols) of the terminal on `fd`, None if it is not one."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return (rows, cols) if rows and cols else None


@contextlib.contextmanager
def raw_terminal(fd: int, enable: bool) -> Iterator[None]:
    if not enable or not os.isatty(fd):
        yield
        return
    old = termios.tcgetattr(fd)
    new = termios.tcgetattr(fd)
    new[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR
                | termios.IGNCR | termios.ICRNL | termios.IXON)
    new[1] &= ~termios.OPOST
    new[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    new[2] &= ~(termios.CSIZE | termios.PARENB)
    new[2] |= termios.CS8
    new[6][termios.VMIN] = 1
    new[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, new)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]


class Demux:
    """stdcopy frames → stdout / stderr."""

    def __init__(self, out_fd: int, err_fd: int) -> None:
        self.buf = b""
        self.fds = {0: out_fd, 1: out_fd, 2: err_fd, 3: err_fd}

    def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 8:
            stream, size = struct.unpack(">BxxxL", self.buf[:8])
            if len(self.buf) < 8 + size:
                return
            payload, self.buf = self.buf[8:8 + size], self.buf[8 + size:]
            _write_all(self.fds.get(stream, err_fd_default()), payload)


def err_fd_default() -> int:
    return sys.stderr.fileno()


def pump(sock: socket.socket, initial: bytes, *, tty: bool, stdin: bool, detach_keys: str | None = None,
         on_resize: Callable[[int, int], None] | None = None, in_fd: int | None = None,
         out_fd: int | None = None, err_fd: int | None = None) -> bool:
    """Run a hijacked session to its end. Returns True if the user detached with the detach keys."""
    in_fd = sys.stdin.fileno() if in_fd is None else in_fd
    out_fd = sys.stdout.fileno() if out_fd is None else out_fd
    err_fd = sys.stderr.fileno() if err_fd is None else err_fd
    sys.stdout.flush()
    scanner = EscapeScanner(parse_detach_keys(detach_keys or DEFAULT_DETACH_KEYS)) if tty and stdin else None
    demux = None if tty else Demux(out_fd, err_fd)

    def output(data: bytes) -> None:
        if demux is None:
            _write_all(out_fd, data)
        else:
            demux.feed(data)

    if not stdin:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
    wake_r = wake_w = -1
    old_wakeup = None
    old_handler = None
    if tty and on_resize is not None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        old_handler = signal.signal(signal.SIGWINCH, lambda *_: None)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        os.write(wake_w, b"\0")  # the first resize, once the handler is in place so no SIGWINCH is lost
    detached = False
    reading_stdin = stdin
    try:
        with raw_terminal(in_fd, tty and stdin):
            if initial:  # only now: what the user types after seeing it must find the terminal raw
                output(initial)
            while True:
                watch = [sock.fileno()] + ([in_fd] if reading_stdin else []) + ([wake_r] if wake_r >= 0 else [])
                try:
                    ready, _, _ = select.select(watch, [], [])
                except InterruptedError:
                    continue
                if wake_r in ready:
                    with contextlib.suppress(OSError):
                        while os.read(wake_r, 64):
                            pass
                    size = window_size(out_fd) or window_size(in_fd)
                    if size and on_resize:
                        with contextlib.suppress(Exception):
                            on_resize(*size)
                if sock.fileno() in ready:
                    try:
                        data = sock.recv(65536)
                    except ConnectionResetError:
                        data = b""
                    if not data:
                        break
                    output(data)
                if reading_stdin and in_fd in ready:
                    try:
                        data = os.read(in_fd, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        reading_stdin = False
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_WR)
                        continue
                    if scanner is not None:
                        data, detached = scanner.feed(data)
                    try:
                        if data:
                            sock.sendall(data)
                    except OSError:
                        reading_stdin = False
                    if detached:
                        break
    finally:
        if wake_r >= 0:
            signal.set_wakeup_fd(old_wakeup if old_wakeup is not None else -1)
            signal.signal(signal.SIGWINCH, old_handler if old_handler is not None else signal.SIG_DFL)
            os.close(wake_r)
            os.close(wake_w)
        sock.close()
    return detached
