"""The cgroup v2 manager: one directory in the unified tree.

An absolute path "/engine/abc" is <root>/engine/abc (root = /sys/fs/cgroup); a relative
path is taken under this process's own cgroup. ``create()`` makes the missing levels
and, in every ancestor, enables in cgroup.subtree_control the controllers available
there (all at once, else one by one, ignoring the ones the kernel refuses) so the
leaf gets every controller it can have, as runc does. Freezing (cgroup.freeze),
killing (cgroup.kill) and process lists (cgroup.procs) are core cgroup2 files that
work without any controller, which is why the integration tests can exercise this
manager on the hybrid host's /sys/fs/cgroup/unified tree.

Device rules are enforced with an eBPF device filter (v2/bpf.py). Not enforced on v2
(reported as warnings by set()): memory.swappiness, memory.disableOOMKiller, realtime
cpu, blkio leaf weights.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from engine.errors import EngineError, FailedPrecondition

from .. import fs, notify
from .. import layout as det
from .. import resources as resmod
from ..base import CgroupManager
from ..stats import Stats, to_runc_json
from . import cpu, cpuset, devices, freezer, hugetlb, io, memory, pids, unified


class V2Manager(CgroupManager):
    version = "v2"

    def __init__(self, path: str, root: str = det.CGROUP_ROOT, own: str | None = None) -> None:
        super().__init__(path)
        self.root = root
        if path.startswith("/"):
            self.dir = root + path
        else:
            if own is None:
                own = det.own_cgroups().get("", "/")
            self.dir = os.path.normpath(os.path.join(root + own, path))

    # lifecycle -----------------------------------------------------------------------
    def create(self) -> None:
        made: list[str] = []
        try:
            rel = os.path.relpath(self.dir, self.root)
            cur = self.root
            for part in rel.split(os.sep):
                self._enable_all(cur)
                cur = os.path.join(cur, part)
                try:
                    os.mkdir(cur, 0o755)
                    made.append(cur)
                except FileExistsError:
                    pass
        except OSError as err:
            for p in reversed(made):
                with contextlib.suppress(OSError):
                    os.rmdir(p)
            raise EngineError(f"create cgroup {self.path}: {(err.strerror or str(err)).lower()}") from err

    @staticmethod
    def _enable_all(d: str) -> None:
        available = (fs.read_opt(d, "cgroup.controllers") or "").split()
        enabled = set((fs.read_opt(d, "cgroup.subtree_control") or "").split())
        missing = [c for c in available if c not in enabled]
        if not missing:
            return
        try:
            fs.write(d, "cgroup.subtree_control", " ".join("+" + c for c in missing))
        except EngineError:
            for c in missing:
                try:
                    fs.write(d, "cgroup.subtree_control", "+" + c)
                except EngineError:
                    continue

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    def destroy(self) -> None:
        # killed processes take a moment to leave; live ones make rmdir fail (EBUSY) anyway
        live = self.pids() if self.exists() and not self.wait_empty(0.5) else []
        if live:
            raise FailedPrecondition(
                f"destroy cgroup {self.path}: {len(live)} process(es) still in it "
                f"(pids {', '.join(map(str, live[:8]))}); kill them first"
            )
        try:
            fs.rmdir_tree(self.dir)
        except EngineError as err:
            raise FailedPrecondition(f"destroy cgroup {self.path}: {err}") from err

    def add(self, pid: int) -> None:
        try:
            fs.write_pid(self.dir, pid)
        except FailedPrecondition as err:
            if (fs.read_opt(self.dir, "cgroup.subtree_control") or "").strip():
                raise FailedPrecondition(
                    f'{err} (cgroup v2 "no internal processes" rule: {self.path} enables '
                    f"controllers for its children, so processes must go into a leaf)"
                ) from err
            raise

    def paths(self) -> dict[str, str]:
        return {"": self.dir}

    def controllers(self) -> set[str]:
        return set((fs.read_opt(self.dir, "cgroup.controllers") or "").split())

    # resources -----------------------------------------------------------------------
    def set(self, resources: dict | None) -> list[str]:
        r = resmod.parse(resources, det.hugepage_sizes())
        have = self.controllers()
        needs = [
            ("memory", r.memory_limit or r.memory_swap or r.memory_reservation),
            ("cpu", r.wants_cpu()),
            ("cpuset", r.wants_cpuset()),
            ("pids", r.pids_limit is not None),
            ("io", r.wants_blkio()),
            ("hugetlb", bool(r.hugepages)),
        ]
        for controller, wanted in needs:
            if wanted and controller not in have:
                raise FailedPrecondition(
                    f"cannot set {controller} resources: the {controller} controller is not enabled for {self.dir}"
                )
        if r.unified:
            unified.check(self.dir, r.unified)
        w = fs.Writer()
        w.warnings.extend(r.ignored)
        try:
            if r.pids_limit is not None:
                pids.apply(w, self.dir, r)
            if r.wants_memory() or r.check_before_update:
                memory.apply(w, self.dir, r)
            if r.wants_blkio():
                io.apply(w, self.dir, r)
            if r.wants_cpu():
                cpu.apply(w, self.dir, r)
            devices.apply(w, self.dir, r)
            if r.wants_cpuset():
                cpuset.apply(w, self.dir, r)
            if r.hugepages:
                hugetlb.apply(w, self.dir, r)
            if r.unified:
                unified.apply(w, self.dir, r.unified)
        except EngineError as err:
            raise fs.fail_with_rollback(w, err) from err
        self.warnings = list(w.warnings)
        return self.warnings

    def stats(self) -> dict:
        s = Stats()
        if os.path.isdir(self.dir):
            for fn in (pids.stats, memory.stats, io.stats, cpu.stats, hugetlb.stats):
                fn(self.dir, s)
            if s.pids_current == 0 and fs.read_opt(self.dir, "pids.current") is None:
                s.pids_current = len(fs.read_pids(self.dir))
        return to_runc_json(s)

    # processes -----------------------------------------------------------------------
    def pids(self) -> list[int]:
        return fs.walk_pids(self.dir)

    def can_freeze(self) -> bool:
        return fs.exists(self.dir, "cgroup.freeze")

    def freeze(self) -> None:
        freezer.freeze(self.dir)

    def thaw(self) -> None:
        freezer.thaw(self.dir)

    def is_frozen(self) -> bool:
        return freezer.is_frozen(self.dir)

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        if sig == signal.SIGKILL and fs.exists(self.dir, "cgroup.kill"):
            fs.write(self.dir, "cgroup.kill", "1")
            return
        super().kill_all(sig)

    def wait_empty(self, timeout: float = 5.0) -> bool:
        """Wait until no process is left in the subtree (cgroup.events populated 0)."""
        deadline = time.monotonic() + timeout
        while True:
            text = fs.read_opt(self.dir, "cgroup.events")
            if text is None or fs.parse_flat_keyed(text).get("populated", 0) == 0:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)

    # oom -----------------------------------------------------------------------------
    def oom_kill_count(self) -> int:
        if not fs.exists(self.dir, "memory.events"):
            raise FailedPrecondition(
                f"cannot read oom kills: the memory controller is not enabled for {self.dir}"
            )
        return memory.oom_kill_count(self.dir)

    def oom_event_fd(self) -> int:
        path = os.path.join(self.dir, "memory.events")
        if not os.path.exists(path):
            raise FailedPrecondition(
                f"cannot watch for oom: the memory controller is not enabled for {self.dir}"
            )
        return notify.inotify_fd(path)
