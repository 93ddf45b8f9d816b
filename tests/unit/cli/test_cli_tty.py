"""`engine run -it` under a real pseudo-terminal against the recording API stand-in: the tty goes raw
(typed bytes arrive unbuffered, without a newline), the window size is sent after the start and again
on SIGWINCH, Ctrl-P Ctrl-Q detaches client-side (the keys never reach the daemon, exit 0), and a
session that ends returns the container's exit code."""

from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator

import pytest

from tests.harness import ENGINE
from tests.unit.cli.fakeapi import FakeAPI, Resp

CID = "d" * 64


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    a = FakeAPI()
    yield a
    a.close()


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def spawn(api: FakeAPI, *args: str) -> tuple[subprocess.Popen, int]:
    master, slave = os.openpty()
    set_winsize(master, 30, 100)

    def ctty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([ENGINE, "-H", api.host, *args], stdin=slave, stdout=slave, stderr=slave,
                            preexec_fn=ctty, close_fds=True)
    os.close(slave)
    return proc, master


def read_master(master: int, want: bytes, timeout: float = 10) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while want not in out:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {want!r}; got {out!r}"
        r, _, _ = select.select([master], [], [], left)
        if r:
            try:
                out += os.read(master, 4096)
            except OSError:
                break
    return out


def wait_for(pred, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def routes(api: FakeAPI, session, code: int = 0) -> None:  # type: ignore[no-untyped-def]
    api.route("POST", "/containers/create", Resp(201, {"Id": CID, "Warnings": []}))
    api.route("POST", f"/containers/{CID}/attach", Resp(hijack=session, content_type="application/vnd.docker.raw-stream"))
    api.route("POST", f"/containers/{CID}/wait", Resp(200, {"StatusCode": code}))
    api.route("POST", f"/containers/{CID}/start", Resp(204))
    api.route("POST", f"/containers/{CID}/resize", Resp(200))


def test_run_it_raw_resize_and_detach_keys(api: FakeAPI) -> None:
    got = bytearray()
    closed = threading.Event()

    def session(sock: socket.socket) -> None:
        sock.sendall(b"/ # ")
        while chunk := sock.recv(4096):
            got.extend(chunk)
            if b"ab" in got:
                sock.sendall(b"ECHO:" + bytes(got))
        closed.set()

    routes(api, session)
    proc, master = spawn(api, "run", "-it", "--rm", "busybox", "sh")
    try:
        read_master(master, b"/ # ")
        body = api.find("POST", "/containers/create")[0].json()
        assert body["Tty"] and body["OpenStdin"] and body["HostConfig"]["ConsoleSize"] == [30, 100]
        wait_for(lambda: len(api.find("POST", f"/containers/{CID}/resize")) >= 1)
        first = api.find("POST", f"/containers/{CID}/resize")[0]
        assert (first.q("h"), first.q("w")) == ("30", "100")
        set_winsize(master, 40, 120)  # the kernel sends SIGWINCH to the session's foreground group
        wait_for(lambda: any(r.q("h") == "40" and r.q("w") == "120"
                             for r in api.find("POST", f"/containers/{CID}/resize")))
        os.write(master, b"ab")  # no newline: only a raw tty passes it on at once
        read_master(master, b"ECHO:ab")
        os.write(master, b"\x10\x11")  # ctrl-p ctrl-q
        assert proc.wait(timeout=10) == 0
        assert closed.wait(5) and bytes(got) == b"ab"
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


def test_run_it_partial_detach_sequence_is_sent_and_exit_code_returned(api: FakeAPI) -> None:
    got = bytearray()

    def session(sock: socket.socket) -> None:
        while chunk := sock.recv(4096):
            got.extend(chunk)
            if got.endswith(b"exit\r"):
                sock.sendall(b"bye\r\n")
                break
        sock.close()

    routes(api, session, code=42)
    proc, master = spawn(api, "run", "-it", "busybox", "sh")
    try:
        wait_for(lambda: api.find("POST", f"/containers/{CID}/start"))
        os.write(master, b"\x10x")  # ctrl-p then not ctrl-q: both bytes go through
        os.write(master, b"exit\r")
        read_master(master, b"bye")
        assert proc.wait(timeout=10) == 42
        assert bytes(got) == b"\x10xexit\r"
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


def test_custom_detach_keys(api: FakeAPI) -> None:
    got = bytearray()

    def session(sock: socket.socket) -> None:
        sock.sendall(b"ready")
        while chunk := sock.recv(4096):
            got.extend(chunk)

    routes(api, session)
    proc, master = spawn(api, "run", "-it", "--detach-keys", "ctrl-a,x", "busybox", "sh")
    try:
        read_master(master, b"ready")
        os.write(master, b"\x10\x11q\x01x")
        assert proc.wait(timeout=10) == 0
        wait_for(lambda: bytes(got) == b"\x10\x11q")
        assert api.find("POST", f"/containers/{CID}/attach")[0].q("detachKeys") == "ctrl-a,x"
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
