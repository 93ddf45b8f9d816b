"""``kill``: send a signal to the init, or with ``all`` to every process in the cgroup.

``current_status`` is the status with the freezer consulted (paused), used by every operation.
"""

from __future__ import annotations

import os

from engine.errors import FailedPrecondition
from engine.runtime import state as st


def manager(c: st.Container):
    from engine.runtime.cgroups import open_manager

    return open_manager(c.cgroup_path)


def current_status(c: st.Container, mgr=None) -> str:
    status = c.status()
    if status == st.RUNNING and c.cgroup_path:
        try:
            m = mgr or manager(c)
            if m.exists() and m.is_frozen():
                return st.PAUSED
        except Exception:  # a half-removed cgroup is not paused
            pass
    return status


def kill(root: str, container_id: str, sig: int, *, all_processes: bool = False) -> None:
    c = st.load(root, container_id)
    status = current_status(c)
    if all_processes:
        # runc allows --all on a stopped container: without a pid namespace processes can
        # outlive the init, and a shim uses this to clean them up
        mgr = manager(c)
        if mgr.exists():
            mgr.kill_all(sig)
        elif status != st.STOPPED:
            raise FailedPrecondition("container not running")
        return
    if not st.can_kill(status):
        raise FailedPrecondition("container not running")
    try:
        os.kill(c.pid, sig)
    except ProcessLookupError as e:
        raise FailedPrecondition("container not running") from e
