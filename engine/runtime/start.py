"""``start``: release a created container's init, which is blocked opening the exec FIFO.

We open the FIFO for reading without blocking, which lets the init's open complete; it writes
one byte and execs.  Reading that byte (polling, and checking that the init is still alive so
a dead container cannot hang us) proves the release; then the FIFO is removed, which is what
turns the derived status from ``created`` into ``running``.  poststart hooks run afterwards.
"""

from __future__ import annotations

import os
import select
import time

from engine.errors import FailedPrecondition
from engine.runtime import hooks
from engine.runtime import state as st


def start(root: str, container_id: str, *, log=None) -> st.Container:
    c = st.load(root, container_id)
    status = c.status()
    if not st.can_start(status):
        if status == st.STOPPED:
            raise FailedPrecondition("cannot start a container that has stopped")
        raise FailedPrecondition(f"cannot start an already {status} container")
    release(c)
    h = c.config.get("hooks") or {}
    if h.get("poststart"):
        from engine.runtime.create import oci_state_json

        sj = oci_state_json(c.id, c.pid, st.RUNNING, c.bundle, c.config)
        hooks.run_warn(h.get("poststart"), sj, "poststart", log or (lambda m: None))
    return c


def release(c: st.Container, timeout: float = 30.0) -> None:
    try:
        fd = os.open(c.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise FailedPrecondition("cannot start an already running container") from e
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            try:
                data = os.read(fd, 1)
            except BlockingIOError:
                data = None
            if data:
                break
            if not c.alive():
                try:  # it may have written its byte, exec'd and exited since the read above (a quick /bin/true)
                    data = os.read(fd, 1)
                except BlockingIOError:
                    data = None
                if data:
                    break
                raise FailedPrecondition("container process exited before it was started")
            if data == b"" and not os.path.exists(c.fifo):
                # another start read the byte first and removed the FIFO
                raise FailedPrecondition("cannot start an already running container")
            if time.monotonic() > deadline:
                raise FailedPrecondition("timed out waiting for the container process to start")
            poller.poll(5)
            if data == b"":
                time.sleep(0.0005)
    finally:
        os.close(fd)
    try:  # noqa: SIM105 (contextlib costs an import on the timed path)
        os.unlink(c.fifo)
    except FileNotFoundError:
        pass
