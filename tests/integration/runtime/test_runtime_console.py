"""Terminal containers: the runtime sends the pty master over --console-socket (SCM_RIGHTS)."""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time

from tests.support.ociruntime import one_line_error, reap, subreaper


class ConsoleServer:
    """A unix socket that accepts one connection and receives one fd from it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(15)
        self.fd: int | None = None
        self.data = b""
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(15)
                data, fds, _, _ = socket.recv_fds(conn, 4096, 4)
                self.data = data
                if fds:
                    self.fd = fds[0]
                    for extra in fds[1:]:
                        os.close(extra)
        except BaseException as err:  # reported by wait()
            self.error = err

    def wait(self, timeout: float = 15) -> int:
        self.thread.join(timeout)
        if self.error:
            raise AssertionError(f"console socket: {self.error!r}")
        assert self.fd is not None, "the runtime sent no file descriptor"
        return self.fd

    def close(self) -> None:
        self.sock.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_until_eof(fd: int, timeout: float = 15) -> bytes:
    """Read a pty master until the slave side is gone (EIO) or the timeout."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: no process holds the slave any more
            break
        if not chunk:
            break
        out += chunk
    return out


def test_console_socket_receives_the_pty_master(rt):
    sock_path = str(rt.workdir / "console.sock")
    server = ConsoleServer(sock_path)
    try:
        b = rt.bundle(
            ["sh", "-c", "tty; test -t 0 && test -t 1 && echo is-a-tty; stty size; echo done"], terminal=True
        )
        b.process["consoleSize"] = {"height": 24, "width": 80}
        b.create("--console-socket", sock_path).ok()
        master = server.wait()
        assert os.isatty(master)
        b.start().ok()
        out = read_until_eof(master).decode(errors="replace")
        lines = [line.strip() for line in out.replace("\r\n", "\n").splitlines() if line.strip()]
        assert lines[0].startswith("/dev/pts/")
        assert lines[1:] == ["is-a-tty", "24 80", "done"]
        b.wait_status("stopped")
    finally:
        server.close()


def test_console_input_reaches_the_process(rt):
    sock_path = str(rt.workdir / "console.sock")
    server = ConsoleServer(sock_path)
    try:
        b = rt.bundle(["sh", "-c", "read line; echo got:$line"], terminal=True)
        b.create("--console-socket", sock_path).ok()
        master = server.wait()
        b.start().ok()
        os.write(master, b"hello pty\n")
        out = read_until_eof(master).decode(errors="replace")
        assert "got:hello pty" in out
    finally:
        server.close()


def test_terminal_without_console_socket_is_refused_for_create(rt):
    b = rt.bundle(["true"], terminal=True)
    one_line_error(rt, b.create())
    assert rt.leftovers(b.id, b) == []


def test_exec_with_a_terminal_over_the_console_socket(rt):
    # what containerd's shim does for `docker exec -it`: exec --process F --detach --console-socket S
    b = rt.bundle(["sleep", "60"])
    b.create().ok()
    b.start().ok()
    sock_path = str(rt.workdir / "exec-console.sock")
    server = ConsoleServer(sock_path)
    try:
        process = dict(b.process, terminal=True, args=["sh", "-c", "tty; echo exec-$((6*7))"])
        process["consoleSize"] = {"height": 30, "width": 100}
        spec_file = rt.workdir / "process.json"
        spec_file.write_text(json.dumps(process))
        pid_file = rt.workdir / "exec.pid"
        with subreaper(), open(rt.workdir / "exec.log", "w") as log:
            r = rt(
                "exec",
                "--process",
                str(spec_file),
                "--detach",
                "--pid-file",
                str(pid_file),
                "--console-socket",
                sock_path,
                b.id,
                stdout=log,
                stderr=log,
            )
        assert r.returncode == 0, (rt.workdir / "exec.log").read_text()
        master = server.wait()
        pid = int(pid_file.read_text())
        out = read_until_eof(master).decode(errors="replace").replace("\r\n", "\n")
        status = reap(pid)  # the exec'd shell was ours to reap: it exited by itself
        assert status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        assert lines[0].startswith("/dev/pts/")
        assert lines[1] == "exec-42"
        assert b.status() == "running"
    finally:
        server.close()
