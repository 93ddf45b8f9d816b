"""v1 freezer controller: freeze, thaw and read the state.

Writing FROZEN can leave the cgroup in FREEZING when a task is busy in the kernel; as
runc does, we keep re-writing FROZEN, and every so often thaw briefly and retry, since
some tasks only become freezable after a thaw. "Frozen" for callers means this cgroup
itself was frozen (freezer.self_freezing = 1), not merely a frozen parent.
"""

from __future__ import annotations

import time

from engine.errors import EngineError

from .. import fs


def freeze(d: str) -> None:
    for i in range(1000):
        if i % 50 == 49:
            fs.write(d, "freezer.state", "THAWED")
            time.sleep(0.01)
        fs.write(d, "freezer.state", "FROZEN")
        if i % 25 == 24:
            time.sleep(0.00001)
        state = fs.read(d, "freezer.state").strip()
        if state == "FROZEN":
            return
        if state != "FREEZING":
            fs.write(d, "freezer.state", "THAWED")
            raise EngineError(f"unexpected freezer state {state!r} while freezing {d}")
    fs.write(d, "freezer.state", "THAWED")
    raise EngineError(f"unable to freeze {d}")


def thaw(d: str) -> None:
    fs.write(d, "freezer.state", "THAWED")


def is_frozen(d: str) -> bool:
    for _ in range(1000):
        state = fs.read(d, "freezer.state").strip()
        if state == "THAWED":
            return False
        if state == "FROZEN":
            return fs.read(d, "freezer.self_freezing").strip() == "1"
        time.sleep(0.001)
    return False
