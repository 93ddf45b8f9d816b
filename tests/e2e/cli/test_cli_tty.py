"""`engine run -it`, `engine attach` and `engine exec -it` under a real pseudo-terminal against a real test
daemon: the shell's prompt and output come back raw, the window size reaches the container's tty, Ctrl-P
Ctrl-Q detaches with exit 0 leaving the container running, a later attach reaches the same shell, and the
session's end returns the shell's exit code."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator

import pytest

from tests.harness import ENGINE, EngineDaemon
from tests.support.images import import_busybox

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def d(shared_daemon: EngineDaemon) -> Iterator[EngineDaemon]:
    import_busybox(shared_daemon)
    yield shared_daemon


def engine(d: EngineDaemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run([ENGINE, *args], env=d.env, capture_output=True, timeout=60, input=b"")
    if check:
        assert p.returncode == 0, f"engine {args}: {p.returncode}\n{p.stdout!r}\n{p.stderr!r}"
    return p


def out(d: EngineDaemon, *args: str) -> str:
    return engine(d, *args).stdout.decode()


def _spawn(d: EngineDaemon, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))

    def ctty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([ENGINE, *args], env=d.env, stdin=slave, stdout=slave, stderr=slave,
                            preexec_fn=ctty, close_fds=True)
    os.close(slave)
    return proc, master


def _expect(master: int, want: bytes, timeout: float = 15) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while want not in buf:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {want!r}; got {buf!r}"
        if select.select([master], [], [], left)[0]:
            try:
                data = os.read(master, 4096)
            except OSError:
                data = b""
            assert data, f"the terminal closed before {want!r}; got {buf!r}"
            buf += data
    return buf


def test_run_it_detach_and_attach(d: EngineDaemon) -> None:
    proc, master = _spawn(d, "run", "-it", "--name", "tty1", "busybox", "sh")
    try:
        _expect(master, b"# ")
        os.write(master, b"stty size; echo hi-$((40+2))\r")
        seen = _expect(master, b"hi-42")
        assert b"33 111" in seen  # the window size reached the container's tty
        os.write(master, b"\x10\x11")  # ctrl-p ctrl-q: detach, the container keeps running
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    assert out(d, "inspect", "-f", "{{.State.Running}}", "tty1") == "true\n"
    proc, master = _spawn(d, "attach", "tty1")
    try:
        os.write(master, b"echo back-$((1+1))\r")
        _expect(master, b"back-2")
        os.write(master, b"exit 5\r")
        assert proc.wait(timeout=15) == 5
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    engine(d, "rm", "-f", "tty1")


def test_exec_it_under_a_pty(d: EngineDaemon) -> None:
    engine(d, "run", "-d", "--name", "tty2", "busybox", "sleep", "300")
    proc, master = _spawn(d, "exec", "-it", "tty2", "sh")
    try:
        _expect(master, b"# ")
        os.write(master, b"tty; exit 9\r")
        assert b"/dev/pts/" in _expect(master, b"/dev/pts/")
        assert proc.wait(timeout=15) == 9
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
        engine(d, "rm", "-f", "tty2", check=False)


