"""A terminal for a foreground ``run``/``exec`` without a console socket, as runc does itself.

The container makes the pty inside its own devpts (so the slave belongs to the container) and
sends the master over a socket; here we hold the other end of a socketpair instead of a
user's console socket, receive the master with SCM_RIGHTS, and copy bytes between our stdio
and the master until the process exits (a pidfd tells us when), with our terminal in raw mode.
"""

from __future__ import annotations

import _socket
import array
import os
import select


def console_pair() -> tuple[_socket.socket, _socket.socket]:
    return _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM, 0)


def recv_master(sock: _socket.socket) -> int:
    fds = array.array("i")
    msg, anc, _flags, _addr = sock.recvmsg(4096, _socket.CMSG_SPACE(fds.itemsize))
    for level, typ, data in anc:
        if level == _socket.SOL_SOCKET and typ == _socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not fds:
        raise OSError("no pty master received from the container")
    return fds[0]


def prepare(master: int) -> list | None:
    """Give the pty our terminal's size and put our terminal in raw mode, before the process
    starts (it may ask for the size at once); returns the settings to restore."""
    if not os.isatty(0):
        return None
    import termios
    import tty

    from engine import native

    try:
        rows, cols = native.get_winsize(0)
        native.set_winsize(master, rows, cols)
    except OSError:
        pass
    old = termios.tcgetattr(0)
    tty.setraw(0)
    return old


def follow_resizes(master: int) -> None:
    """On SIGWINCH give the pty our terminal's new size (the kernel then signals the process)."""
    import _signal

    from engine import native

    def resize(_signum, _frame):
        try:
            rows, cols = native.get_winsize(0)
            native.set_winsize(master, rows, cols)
        except OSError:
            pass

    _signal.signal(28, resize)  # SIGWINCH


def proxy(master: int, pid: int, old: list | None = None) -> None:
    """Copy stdin -> master and master -> stdout until ``pid`` exits and the master drains."""
    import termios

    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(master, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        stdin_open = True
        try:
            poller.register(0, select.POLLIN)
        except (OSError, ValueError):
            stdin_open = False
        exited = False
        while True:
            for fd, ev in poller.poll(100 if exited else -1):
                if fd == master:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        return
                    os.write(1, data)
                elif fd == 0 and stdin_open:
                    data = os.read(0, 65536) if ev & (select.POLLIN | select.POLLHUP) else b""
                    if data:
                        os.write(master, data)
                    else:
                        poller.unregister(0)
                        stdin_open = False
                        os.write(master, b"\x04")
                elif fd == pidfd:
                    poller.unregister(pidfd)
                    exited = True
            if exited:
                # drain what is left, then stop
                r, _, _ = select.select([master], [], [], 0.05)
                if not r:
                    return
    finally:
        os.close(pidfd)
        if old is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, old)
