"""v2 freezer: cgroup.freeze (core cgroup2 file, no controller needed).

Writing "1" asks the kernel to freeze; the cgroup is frozen once cgroup.events says
"frozen 1", which we wait for (up to 10 s) like runc. ``is_frozen`` answers for this
cgroup's own request (cgroup.freeze), waiting for a freeze in progress to finish.
"""

from __future__ import annotations

import time

from engine.errors import EngineError, Unimplemented

from .. import fs


def _events_frozen(d: str) -> bool:
    return fs.parse_flat_keyed(fs.read(d, "cgroup.events")).get("frozen", 0) == 1


def freeze(d: str) -> None:
    if not fs.exists(d, "cgroup.freeze"):
        raise Unimplemented(f"cannot freeze {d}: this kernel has no cgroup.freeze")
    fs.write(d, "cgroup.freeze", "1")
    deadline = time.monotonic() + 10
    while not _events_frozen(d):
        if time.monotonic() > deadline:
            fs.write(d, "cgroup.freeze", "0")
            raise EngineError(f"timeout waiting for {d} to freeze")
        time.sleep(0.001)


def thaw(d: str) -> None:
    if fs.exists(d, "cgroup.freeze"):
        fs.write(d, "cgroup.freeze", "0")


def is_frozen(d: str) -> bool:
    text = fs.read_opt(d, "cgroup.freeze")
    if text is None or text.strip() != "1":
        return False
    deadline = time.monotonic() + 10
    while not _events_frozen(d):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True
