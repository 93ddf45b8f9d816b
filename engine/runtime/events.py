"""``events``: runc's event stream for one container: a stats event every ``--interval`` and an
``oom`` event when the kernel's OOM killer hits the container; ``--stats`` prints one stats event."""

from __future__ import annotations

import json
import sys
import time

from engine.errors import FailedPrecondition, InvalidArgument
from engine.runtime import state as st
from engine.runtime.kill import current_status, manager


def _interval(v: str) -> float:
    try:
        if v.endswith("ms"):
            return float(v[:-2]) / 1000
        if v.endswith("s"):
            return float(v[:-1])
        if v.endswith("m"):
            return float(v[:-1]) * 60
        return float(v)
    except ValueError as e:
        raise InvalidArgument(f"invalid interval {v!r}") from e


def events(root: str, container_id: str, *, stats: bool = False, interval: str = "5s") -> int:
    c = st.load(root, container_id)
    mgr = manager(c)
    if current_status(c, mgr) == st.STOPPED:
        raise FailedPrecondition("container not running")
    every = _interval(interval)
    try:
        ooms = mgr.oom_kill_count()
    except Exception:  # no memory controller: no OOM events
        ooms = None
    while True:
        ev = {"type": "stats", "id": container_id, "data": mgr.stats()}
        sys.stdout.write(json.dumps(ev) + "\n")
        sys.stdout.flush()
        if stats:
            return 0
        deadline = time.monotonic() + every
        while time.monotonic() < deadline:
            time.sleep(min(0.2, every))
            if ooms is not None:
                try:
                    now = mgr.oom_kill_count()
                except Exception:  # the cgroup went away with the container
                    now = ooms
                if now > ooms:
                    ooms = now
                    sys.stdout.write(json.dumps({"type": "oom", "id": container_id}) + "\n")
                    sys.stdout.flush()
            if not c.alive():
                return 0
