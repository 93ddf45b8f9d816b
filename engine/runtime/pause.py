"""``pause`` / ``resume``: freeze and thaw the container's cgroup (the freezer)."""

from __future__ import annotations

from engine.errors import FailedPrecondition
from engine.runtime import state as st
from engine.runtime.kill import current_status, manager


def pause(root: str, container_id: str) -> None:
    c = st.load(root, container_id)
    mgr = manager(c)
    status = current_status(c, mgr)
    if not st.can_pause(status):
        raise FailedPrecondition("container not running or created")
    mgr.freeze()


def resume(root: str, container_id: str) -> None:
    c = st.load(root, container_id)
    mgr = manager(c)
    status = current_status(c, mgr)
    if not st.can_resume(status):
        raise FailedPrecondition("container not paused")
    mgr.thaw()
