"""A docker CLI under its own pseudo-terminal, driven byte by byte (the e2e stream and exec tests)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time

from tests.harness import EngineDaemon


class Term:
    """``docker ARGS`` in a 24x80 terminal; `timeout` is how long a read or a wait waits by default."""

    def __init__(self, d: EngineDaemon, *args: str, timeout: float = 15) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: a terminal of known size, then the CLI (only exec-safe work: we may be a thread)
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
                os.execvpe("docker", ["docker", *args], d.env)
            finally:
                os._exit(127)
        self.pid, self.fd, self.buf = pid, fd, b""
        self.status: int | None = None
        self.timeout = timeout

    def read_until(self, pattern: bytes, timeout: float | None = None, after: int = 0) -> bytes:
        """Read until `pattern` shows up in the output past offset `after`; the whole output so far."""
        end = time.monotonic() + (self.timeout if timeout is None else timeout)
        while pattern not in self.buf[after:]:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r}; got {self.buf[-400:]!r}")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    raise AssertionError(f"terminal closed before {pattern!r}; got {self.buf[-400:]!r}")
                self.buf += data
        return self.buf

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def resize(self, rows: int, cols: int) -> None:
        """As a terminal emulator does: the kernel signals SIGWINCH to the CLI, which sends a resize."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def wait(self, timeout: float | None = None) -> int:
        """The CLI's exit code, reading its output meanwhile."""
        end = time.monotonic() + (self.timeout if timeout is None else timeout)
        while time.monotonic() < end:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                with contextlib.suppress(OSError):
                    self.buf += os.read(self.fd, 65536)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
        raise AssertionError(f"docker did not exit; output {self.buf[-400:]!r}")

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.wait()

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        with contextlib.suppress(OSError):
            os.close(self.fd)
