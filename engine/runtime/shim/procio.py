"""One process's stdio inside the shim: pipes or a pty master, and where the bytes go.

Output (stdout/stderr pipes, or the pty master as "stdout") is read when readable and fanned
out, in this order, to: the json-file log (init only, if configured), the client's FIFO (opened
O_RDWR|O_NONBLOCK as containerd does, so opening never waits for a reader and a full FIFO only
fills our bounded buffer), and every attached reader (a connection that called Attach).  Nothing
waits on a reader, so output keeps flowing to the log while the daemon is away.

Input comes from the client's stdin FIFO and from ``I`` frames; both go through one non-blocking
Writer to the process's stdin pipe (or the pty master).  CloseIO closes it once drained (a pty
gets ^D instead, since its master cannot be half-closed).
"""

from __future__ import annotations

import os
import selectors
from collections.abc import Callable

from engine.runtime.shim.jsonlog import JSONFileWriter
from engine.runtime.shim.loop import Loop, Writer
from engine.runtime.shim.wire import OUTPUT, OUTPUT_END, STDERR, STDOUT, pack_data

_STREAMS = {STDOUT: "stdout", STDERR: "stderr"}


class ProcIO:
    def __init__(
        self,
        loop: Loop,
        exec_id: str,
        *,
        stdin: str = "",
        stdout: str = "",
        stderr: str = "",
        open_stdin: bool = False,
        terminal: bool = False,
        log: JSONFileWriter | None = None,
    ) -> None:
        self.loop, self.exec_id, self.terminal, self.log = loop, exec_id, terminal, log
        self.paths = {"stdin": stdin, "stdout": stdout, "stderr": stderr}
        self.readers: dict[int, int] = {}  # our read fd -> stream
        self.fifos: dict[int, Writer] = {}  # stream -> writer to the client's FIFO
        self.attached: list = []  # connections (server.Conn) following the output
        self.stdin: Writer | None = None
        self.stdin_fifo = -1
        self.child_fds: list[int] = []  # the ends given to the process, closed after spawn
        self.master = -1
        self.on_drained: Callable[[], None] | None = None
        self.want_stdin = bool(stdin) or open_stdin
        self.started = False
        for stream, path in ((STDOUT, stdout), (STDERR, stderr)):
            if path and not (terminal and stream == STDERR):
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
                self.fifos[stream] = Writer(loop, fd, cap=1 << 20)

    def child_stdio(self) -> tuple[int, int, int]:
        """Make the pipes; returns the (stdin, stdout, stderr) fds for the process."""
        if self.want_stdin:
            r, w = os.pipe2(os.O_CLOEXEC)
            self.stdin = Writer(self.loop, w)
            fin = r
        else:
            fin = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        self.child_fds.append(fin)
        outs = []
        for stream in (STDOUT, STDERR):
            r, w = os.pipe2(os.O_CLOEXEC)
            self.readers[r] = stream
            self.child_fds.append(w)
            outs.append(w)
        return fin, outs[0], outs[1]

    def spawned(self) -> None:
        """After the process exists: close its ends, start copying."""
        for fd in self.child_fds:
            os.close(fd)
        self.child_fds = []
        self.started = True
        for fd in self.readers:
            os.set_blocking(fd, False)
            self.loop.add(fd, selectors.EVENT_READ, self._reader(fd))
        if self.paths["stdin"]:
            self.stdin_fifo = os.open(self.paths["stdin"], os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self.loop.add(self.stdin_fifo, selectors.EVENT_READ, self._on_stdin_fifo)

    def set_master(self, master: int) -> None:
        """A TTY process: the pty master carries both directions (``spawned()`` follows)."""
        self.master = master
        rfd = os.dup(master)
        os.set_blocking(rfd, False)
        self.readers[rfd] = STDOUT
        self.stdin = Writer(self.loop, master)

    def _reader(self, fd: int) -> Callable[[int], None]:
        stream = self.readers[fd]

        def on_read(_mask: int) -> None:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:  # EIO from a pty master when the last slave closes
                data = b""
            if data:
                self._deliver(stream, data)
            else:
                self._eof(fd, stream)

        return on_read

    def _deliver(self, stream: int, data: bytes) -> None:
        if self.log is not None:
            self.log.write(_STREAMS[stream], data)
        w = self.fifos.get(stream)
        if w is not None:
            w.write(data)
        if self.attached:
            frame = pack_data(OUTPUT, stream, self.exec_id, data)
            for conn in list(self.attached):
                conn.send_bytes(frame, droppable=True)

    def _eof(self, fd: int, stream: int) -> None:
        self.loop.remove(fd)
        os.close(fd)
        del self.readers[fd]
        w = self.fifos.pop(stream, None)
        if w is not None:
            w.close()
        frame = pack_data(OUTPUT_END, stream, self.exec_id)
        for conn in list(self.attached):
            conn.send_bytes(frame)
        if not self.readers:
            if self.log is not None:
                self.log.flush()
            if self.on_drained:
                self.on_drained()

    @property
    def drained(self) -> bool:
        return self.started and not self.readers

    def _on_stdin_fifo(self, _mask: int) -> None:
        try:
            data = os.read(self.stdin_fifo, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.write_stdin(data)
        else:
            self.loop.remove(self.stdin_fifo)
            os.close(self.stdin_fifo)
            self.stdin_fifo = -1
            self.close_stdin()

    def write_stdin(self, data: bytes) -> None:
        if self.stdin is not None:
            self.stdin.write(data)

    def close_stdin(self) -> None:
        if self.stdin is None:
            return
        if self.master >= 0:
            self.stdin.write(b"\x04")
            return
        self.stdin.close()
        self.stdin = None

    def stop_reading(self) -> None:
        """Give up on output that never ends (a background process holding the pipe)."""
        for fd in list(self.readers):
            self._eof(fd, self.readers[fd])

    def close(self) -> None:
        self.on_drained = None
        for fd in list(self.readers):
            self.loop.remove(fd)
            os.close(fd)
        self.readers.clear()
        for w in self.fifos.values():
            w.close()
        self.fifos.clear()
        if self.stdin_fifo >= 0:
            self.loop.remove(self.stdin_fifo)
            os.close(self.stdin_fifo)
            self.stdin_fifo = -1
        if self.stdin is not None:
            self.stdin._close()
            self.stdin = None
        for fd in self.child_fds:
            os.close(fd)
        self.child_fds = []
