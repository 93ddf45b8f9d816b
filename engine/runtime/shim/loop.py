"""The shim's event loop: one thread, ``selectors``, timers, SIGCHLD and non-blocking writers.

Kept deliberately small (no asyncio: its import alone costs ~1 MiB of PSS per shim).  Every fd
gets a callback ``fn(mask)``; ``Writer`` buffers what a non-blocking fd cannot take now, up to a
cap after which it drops (so a slow or absent reader never blocks the shim); SIGCHLD arrives
through ``signal.set_wakeup_fd`` on a pipe, and the reaper calls ``waitpid(-1, WNOHANG)`` until
nothing is left, because the shim is a child subreaper and must reap every orphan.

One ``select()`` can report several fds, and a callback may unregister and close another one of
them (a Delete closes an exec's stdin FIFO whose EOF is in the same batch) or even reuse its
number; ``run()`` therefore calls a callback only while its registration is still the one that
was reported, and a stale event is dropped.  (The stale FIFO event used to close fd -1, and its
EBADF ended the shim and so its container: tests/e2e/docker/test_docker_exec_stress.py.)  A callback
that fails is reported and the loop goes on; one that has failed 50 times on the same registration
is unregistered, never a later registration that reuses its fd number.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import selectors
import signal
import sys
import time
from collections.abc import Callable


class Loop:
    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._tseq = 0
        self.stopping = False
        self._failures: dict[int, int] = {}
        self._wr, self._ww = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.on_sigchld: Callable[[], None] = lambda: None
        signal.set_wakeup_fd(self._ww, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.add(self._wr, selectors.EVENT_READ, self._wakeup)

    def _wakeup(self, _mask: int) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wr, 4096)
        self.on_sigchld()

    def add(self, fd: int, events: int, fn: Callable[[int], None]) -> None:
        self.sel.register(fd, events, fn)
        self._failures.pop(fd, None)  # a new registration (perhaps a reused fd number) starts afresh

    def modify(self, fd: int, events: int, fn: Callable[[int], None]) -> None:
        self.sel.modify(fd, events, fn)

    def remove(self, fd: int) -> None:
        self._failures.pop(fd, None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(fd)

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self._tseq += 1
        heapq.heappush(self.timers, (time.monotonic() + delay, self._tseq, fn))

    def run(self) -> None:
        while not self.stopping:
            timeout = None
            if self.timers:
                timeout = max(0.0, self.timers[0][0] - time.monotonic())
            fd_to_key = self.sel.get_map()
            for key, mask in self.sel.select(timeout):
                if fd_to_key.get(key.fd) is not key:
                    continue  # unregistered by an earlier callback of this round (its fd may even be reused)
                if not self._call(key.data, mask):
                    failures = self._failures[key.fd] = self._failures.get(key.fd, 0) + 1
                    if failures >= 50 and fd_to_key.get(key.fd) is key:  # fails every time: stop, not spin
                        self.remove(key.fd)
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, _, fn = heapq.heappop(self.timers)
                self._call(fn)

    def _call(self, fn: Callable[..., None], *args: int) -> bool:
        """Run a callback; one that fails is reported and the loop goes on: a handler's bug must never end
        the shim, which holds a container whose stdio and exit status nobody else keeps."""
        try:
            fn(*args)
            return True
        except Exception:  # noqa: BLE001
            with contextlib.suppress(Exception):  # to --log (the daemon's <exec-root>/shim.log)
                import traceback

                print(f"engine-shim[{os.getpid()}] {time.strftime('%Y-%m-%dT%H:%M:%S')}: a callback failed",
                      file=sys.stderr)
                traceback.print_exc()
                sys.stderr.flush()
            return False


class Writer:
    """A non-blocking fd with a bounded buffer; ``close()`` waits for the buffer to drain."""

    def __init__(
        self, loop: Loop, fd: int, cap: int = 4 << 20, on_error: Callable[[], None] | None = None
    ) -> None:
        self.loop, self.fd, self.cap = loop, fd, cap
        self.buf = bytearray()
        self.dropped = 0
        self.closing = False
        self.closed = False
        self.on_error = on_error
        os.set_blocking(fd, False)

    def write(self, data: bytes) -> None:
        if self.closed or self.closing or not data:
            return
        if not self.buf:
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                n = 0
            except OSError:
                self._fail()
                return
            data = data[n:]
            if not data:
                return
            self.loop.add(self.fd, selectors.EVENT_WRITE, self._on_writable)
        if len(self.buf) + len(data) > self.cap:
            self.dropped += len(data)
            return
        self.buf += data

    def _on_writable(self, _mask: int) -> None:
        try:
            n = os.write(self.fd, self.buf)
        except BlockingIOError:
            return
        except OSError:
            self._fail()
            return
        del self.buf[:n]
        if not self.buf:
            self.loop.remove(self.fd)
            if self.closing:
                self._close()

    def _fail(self) -> None:
        self.buf.clear()
        self._close()
        if self.on_error:
            self.on_error()

    def close(self) -> None:
        if self.closed:
            return
        self.closing = True
        if not self.buf:
            self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)
