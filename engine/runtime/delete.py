"""``delete``: remove a stopped (or created) container; with ``force`` kill it first.

Kills with SIGKILL through the cgroup (thawing a paused one so the signal lands), waits for
the init to be gone, destroys the cgroup, runs poststop hooks (failures are warnings), then
removes the state directory.  Deleting twice, or deleting an unknown id, is "does not exist".
"""

from __future__ import annotations

import os
import time

from engine.errors import EngineError, FailedPrecondition, NotFound
from engine.runtime import hooks
from engine.runtime import state as st
from engine.runtime.kill import current_status, manager


def wait_gone(c: st.Container, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while c.alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True


def destroy(c: st.Container, *, log=None) -> None:
    """Kill what is left, remove the cgroup and the state dir, run poststop hooks."""
    mgr = None
    if c.cgroup_path:
        try:
            mgr = manager(c)
        except EngineError:
            mgr = None
    if c.alive():
        try:  # noqa: SIM105 (contextlib costs an import on the timed path)
            os.kill(c.pid, 9)
        except OSError:
            pass
    if mgr is not None:
        try:
            # kill_all freezes the cgroup around the signals: skip it when nothing is left
            if mgr.exists() and mgr.pids():
                if mgr.is_frozen():
                    mgr.thaw()
                mgr.kill_all(9)
        except (EngineError, OSError):
            pass
    wait_gone(c)
    if mgr is not None:
        for _ in range(50):
            try:
                if mgr.exists():
                    mgr.destroy()
                break
            except (EngineError, OSError):
                time.sleep(0.01)
    h = c.config.get("hooks") or {}
    if h.get("poststop"):
        from engine.runtime.create import oci_state_json

        sj = oci_state_json(c.id, 0, st.STOPPED, c.bundle, c.config)
        hooks.run_warn(h.get("poststop"), sj, "poststop", log or (lambda m: None))
    for name in os.listdir(c.dir) if os.path.isdir(c.dir) else ():
        try:  # noqa: SIM105 (contextlib costs an import on the timed path)
            os.unlink(os.path.join(c.dir, name))
        except OSError:
            pass
    try:  # noqa: SIM105 (contextlib costs an import on the timed path)
        os.rmdir(c.dir)
    except OSError:
        pass


def delete(root: str, container_id: str, *, force: bool = False, log=None) -> None:
    try:
        c = st.load(root, container_id)
    except NotFound:
        if force:
            return  # runc: forcing the delete of an unknown id is not an error
        raise
    status = current_status(c)
    if not force and not st.can_delete(status):
        raise FailedPrecondition(f"cannot delete container {container_id} that is not stopped: {status}")
    destroy(c, log=log)
