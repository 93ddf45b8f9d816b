"""The one interface both cgroup managers implement (v1 in v1/, v2 in v2/).

A manager stands for one cgroup path (e.g. "/engine/abc"): on v1 that path exists in
every mounted hierarchy, on v2 once in the unified tree. Callers use only these
methods; which version is behind them is decided once by ``detect()``.

``set()`` validates the whole OCI resources object first (bad input changes nothing),
then writes controller by controller through an ``fs.Writer``; if the kernel refuses a
value, earlier writes are rolled back and the error says whether the rollback was
complete. It returns warnings for settings accepted but not enforced (e.g. kernel
memory limits, swappiness on cgroup v2), which the runtime should log.

``kill_all`` is shared: freeze, signal every process (recursively), thaw — so no
process can fork away between reading the list and signalling it. v2 overrides it
with ``cgroup.kill`` for SIGKILL when the kernel has it.
"""

from __future__ import annotations

import os
import time

from engine.errors import EngineError

# the number, not the signal module: `import signal` pulls in enum, ~1.5 ms on engine-runtime's timed path
SIGKILL = 9


class CgroupManager:
    """Common interface; see v1.V1Manager and v2.V2Manager."""

    version = ""

    def __init__(self, path: str) -> None:
        self.path = path
        self.warnings: list[str] = []

    # lifecycle -----------------------------------------------------------------------
    def create(self) -> None:
        raise NotImplementedError

    def exists(self) -> bool:
        raise NotImplementedError

    def destroy(self) -> None:
        raise NotImplementedError

    def add(self, pid: int) -> None:
        raise NotImplementedError

    def paths(self) -> dict[str, str]:
        """Directory per hierarchy ({"": dir} on v2), for state files and debugging."""
        raise NotImplementedError

    # resources -----------------------------------------------------------------------
    def set(self, resources: dict | None) -> list[str]:
        raise NotImplementedError

    def stats(self) -> dict:
        raise NotImplementedError

    # processes -----------------------------------------------------------------------
    def pids(self) -> list[int]:
        raise NotImplementedError

    def freeze(self) -> None:
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def is_frozen(self) -> bool:
        raise NotImplementedError

    def can_freeze(self) -> bool:
        return True

    def kill_all(self, sig: int = SIGKILL) -> None:
        """Signal every process in the cgroup and its descendants."""
        frozen = False
        if self.can_freeze():
            try:
                self.freeze()
                frozen = True
            except EngineError:
                frozen = False
        try:
            for pid in self.pids():
                try:  # noqa: SIM105  (contextlib costs ~2.7 ms of engine-runtime start-up)
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if frozen:
                self.thaw()

    def wait_empty(self, timeout: float = 5.0) -> bool:
        """Wait until no process is left in the cgroup or its descendants."""
        deadline = time.monotonic() + timeout
        while self.pids():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    # oom -----------------------------------------------------------------------------
    def oom_kill_count(self) -> int:
        raise NotImplementedError

    def oom_event_fd(self) -> int:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"
