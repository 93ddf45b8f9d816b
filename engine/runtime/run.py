"""``run``: create + start, and unless detached, wait and delete, returning the exit status.

In the foreground we become a child subreaper before creating, so the init is our child (or
reparented to us on the stage-1 path) and ``waitpid`` gives its status; signals we receive
are forwarded to it, as runc does.  With ``process.terminal`` and no console socket we make the
pty ourselves (tty.py).  The exit code is the container's: its status, or 128+signal.
"""

from __future__ import annotations

import _signal
import os

from engine.runtime.create import create
from engine.runtime.delete import destroy
from engine.runtime.start import start

FORWARDED = (1, 2, 3, 10, 12, 14, 15, 28)  # HUP INT QUIT USR1 USR2 ALRM TERM WINCH


def wait_exit(pid: int) -> int:
    while True:
        try:
            wpid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if wpid == pid:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)


def forward_signals(pid: int) -> None:
    def fwd(signum, _frame):
        try:  # noqa: SIM105 (contextlib costs an import on the timed path)
            os.kill(pid, signum)
        except OSError:
            pass

    for s in FORWARDED:
        _signal.signal(s, fwd)


def run(
    root: str,
    container_id: str,
    bundle: str,
    *,
    detach: bool = False,
    pid_file: str | None = None,
    console_socket: str | None = None,
    no_pivot: bool = False,
    preserve_fds: int = 0,
    keep: bool = False,
    new_keyring: bool = True,
    log=None,
) -> int:
    if detach:
        c = create(
            root,
            container_id,
            bundle,
            pid_file=pid_file,
            console_socket=console_socket,
            no_pivot=no_pivot,
            preserve_fds=preserve_fds,
            new_keyring=new_keyring,
        )
        try:
            start(root, container_id, log=log)
        except BaseException:
            destroy(c, log=log)
            raise
        return 0
    own_tty = None
    console_fd = -1
    from engine.runtime import spec as spec_mod

    spec_mod.check_id(container_id)
    loaded = spec_mod.load_bundle(bundle)
    if not console_socket:  # noqa: SIM102
        if (loaded[0].get("process") or {}).get("terminal"):
            from engine.runtime import tty

            own_tty = tty.console_pair()
            console_fd = own_tty[1].fileno()
    c = create(
        root,
        container_id,
        bundle,
        pid_file=pid_file,
        console_socket=console_socket,
        console_fd=console_fd,
        no_pivot=no_pivot,
        preserve_fds=preserve_fds,
        subreaper=True,
        loaded=loaded,
        new_keyring=new_keyring,
    )
    try:
        master = -1
        saved = None
        if own_tty is not None:
            from engine.runtime import tty

            own_tty[1].close()
            master = tty.recv_master(own_tty[0])
            own_tty[0].close()
            saved = tty.prepare(master)
        forward_signals(c.pid)
        if master >= 0:
            from engine.runtime import tty

            tty.follow_resizes(master)
        start(root, container_id, log=log)
        if master >= 0:
            from engine.runtime import tty

            tty.proxy(master, c.pid, saved)
        code = wait_exit(c.pid)
    except BaseException:
        destroy(c, log=log)
        raise
    if not keep:
        destroy(c, log=log)
    return code
