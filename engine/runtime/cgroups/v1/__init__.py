"""The cgroup v1 manager: one cgroup path applied in every mounted v1 hierarchy.

Path resolution (as runc's fs driver): an absolute path "/engine/abc" becomes
<mountpoint>/engine/abc in each hierarchy; a relative path is taken under this
process's own cgroup in that hierarchy (from /proc/self/cgroup). Co-mounted
controllers ("cpu,cpuacct") share one directory.

Which hierarchies are joined: every v1 controller hierarchy that is mounted, plus the
named "name=systemd" hierarchy and, in the hybrid layout, the cgroup2 tree at
/sys/fs/cgroup/unified. runc joins those two as well; doing the same keeps tools that
read /proc/<pid>/cgroup (systemd-cgls, ps -o cgroup, docker top) pointing at the
container's cgroup, and it lets hugetlb work on hosts (like this one) where hugetlb is
bound to cgroup2 rather than v1. Failures in the named/unified trees are not fatal,
except that hugepage limits need the unified tree when hugetlb lives there. The
devices hierarchy is required: without it a container could open any device node.

One file per controller sits beside this module (cpu, cpuacct, cpuset, memory, pids,
blkio, hugetlb, devices, freezer).
"""

from __future__ import annotations

import os

from engine.errors import EngineError, FailedPrecondition, InvalidArgument

from .. import fs, notify
from .. import layout as det
from .. import resources as resmod
from ..base import CgroupManager
from ..stats import Stats, to_runc_json
from . import blkio, cpu, cpuacct, cpuset, devices, freezer, hugetlb, memory, pids

UNIFIED = ""  # key of the hybrid cgroup2 tree in paths()


def _optional(name: str) -> bool:
    return name == UNIFIED or name.startswith("name=")


class V1Manager(CgroupManager):
    version = "v1"

    def __init__(
        self,
        path: str,
        mounts: list[det.Mount] | None = None,
        unified: det.Mount | None = None,
        own: dict[str, str] | None = None,
    ) -> None:
        super().__init__(path)
        if mounts is None:
            mounts = det.v1_mounts()
            unified = det.hybrid_unified()
        relative = not path.startswith("/")
        if relative and own is None:
            own = det.own_cgroups()
        self._dirs: dict[str, str] = {}
        self._mounts: dict[str, str] = {}  # dir -> mountpoint of its hierarchy
        entries = [(m, m.subsystems) for m in mounts]
        if unified is not None:
            entries.append((unified, [UNIFIED]))
        for m, subs in entries:
            if relative:
                base = (own or {}).get(subs[0], "/")
                rel = os.path.relpath(base, m.root) if base.startswith(m.root) else "."
                d = os.path.normpath(os.path.join(m.mountpoint, rel, path))
            else:
                d = m.mountpoint + path
            for sub in subs:
                self._dirs[sub] = d
            self._mounts[d] = m.mountpoint
        for candidate in ("devices", "freezer", "pids", "memory", "cpu"):
            if candidate in self._dirs:
                self._primary = self._dirs[candidate]
                break
        else:
            raise FailedPrecondition("no cgroup v1 controller hierarchy is mounted")

    # helpers -------------------------------------------------------------------------
    def _unique(self) -> list[tuple[str, str]]:
        """(first subsystem name, dir) per distinct directory."""
        seen: dict[str, str] = {}
        for name, d in self._dirs.items():
            seen.setdefault(d, name)
        return [(name, d) for d, name in seen.items()]

    def _dir(self, controller: str, purpose: str) -> str:
        d = self._dirs.get(controller)
        if d is None:
            raise FailedPrecondition(f"cannot {purpose}: the {controller} cgroup controller is not mounted")
        return d

    def _hugetlb_dir(self) -> tuple[str, bool] | None:
        if "hugetlb" in self._dirs:
            return self._dirs["hugetlb"], False
        d = self._dirs.get(UNIFIED)
        if d is not None:
            root = self._mounts[d]
            if "hugetlb" in (fs.read_opt(root, "cgroup.controllers") or "").split():
                return d, True
        return None

    def _enable_unified(self, d: str, controller: str) -> None:
        """Enable a controller in cgroup.subtree_control of every ancestor in the cgroup2 tree."""
        root = self._mounts[d]
        cur = root
        for part in os.path.relpath(d, root).split(os.sep):
            if controller not in (fs.read(cur, "cgroup.subtree_control")).split():
                fs.write(cur, "cgroup.subtree_control", f"+{controller}")
            cur = os.path.join(cur, part)

    # lifecycle -----------------------------------------------------------------------
    def create(self) -> None:
        if "devices" not in self._dirs:
            raise FailedPrecondition(
                "the devices cgroup controller is not mounted; refusing to create a cgroup "
                "without device access control"
            )
        made: list[str] = []
        try:
            for name, d in self._unique():
                try:
                    if name == "cpuset":
                        self._makedirs(d, made, cpuset_mount=self._mounts[d])
                    else:
                        self._makedirs(d, made)
                except (OSError, EngineError):
                    if _optional(name):
                        continue
                    raise
        except OSError as err:
            self._undo(made)
            raise EngineError(f"create cgroup {self.path}: {err.strerror or err}".lower()) from err
        except EngineError:
            self._undo(made)
            raise

    def _makedirs(self, d: str, made: list[str], cpuset_mount: str | None = None) -> None:
        missing = []
        cur = d
        while not os.path.isdir(cur):
            missing.append(cur)
            cur = os.path.dirname(cur)
        if cpuset_mount is not None:
            cpuset.ensure(cpuset_mount, d)
        else:
            for p in reversed(missing):
                try:
                    os.mkdir(p, 0o755)
                except FileExistsError:
                    continue
        made.extend(reversed(missing))

    @staticmethod
    def _undo(made: list[str]) -> None:
        for p in reversed(made):
            try:  # noqa: SIM105  (contextlib costs ~2.7 ms of engine-runtime start-up)
                os.rmdir(p)
            except OSError:
                pass

    def exists(self) -> bool:
        return os.path.isdir(self._primary)

    def destroy(self) -> None:
        # killed processes take a moment to leave; live ones make rmdir fail (EBUSY) anyway
        live = self.pids() if self.exists() and not self.wait_empty(0.5) else []
        if live:
            raise FailedPrecondition(
                f"destroy cgroup {self.path}: {len(live)} process(es) still in it "
                f"(pids {', '.join(map(str, live[:8]))}); kill them first"
            )
        errors = []
        for name, d in self._unique():
            try:
                fs.rmdir_tree(d)
            except EngineError as err:
                errors.append(f"{name or 'unified'}: {err}")
        if errors:
            raise FailedPrecondition(f"destroy cgroup {self.path}: " + "; ".join(errors))

    def add(self, pid: int) -> None:
        for name, d in self._unique():
            try:
                fs.write_pid(d, pid)
            except EngineError:
                if _optional(name):
                    continue
                raise

    def paths(self) -> dict[str, str]:
        return dict(self._dirs)

    # resources -----------------------------------------------------------------------
    def set(self, resources: dict | None) -> list[str]:
        r = resmod.parse(resources, det.hugepage_sizes())
        if r.unified:
            raise InvalidArgument("invalid configuration: cannot use unified resources on cgroup v1")
        needs = [
            ("cpuset", r.wants_cpuset()),
            ("devices", r.devices is not None),
            ("memory", r.wants_memory()),
            ("cpu", r.wants_cpu()),
            ("pids", r.pids_limit is not None),
            ("blkio", r.wants_blkio()),
        ]
        for controller, wanted in needs:
            if wanted:
                self._dir(controller, f"set {controller} resources")
        huge = None
        if r.hugepages:
            huge = self._hugetlb_dir()
            if huge is None:
                raise FailedPrecondition("cannot set hugepage limits: the hugetlb controller is not mounted")
        w = fs.Writer()
        w.warnings.extend(r.ignored)
        try:
            if r.wants_cpuset():
                cpuset.apply(w, self._dirs["cpuset"], r)
            if r.devices is not None:
                devices.apply(w, self._dirs["devices"], r)
            if (r.wants_memory() or r.check_before_update) and "memory" in self._dirs:
                memory.apply(w, self._dirs["memory"], r)
            if r.wants_cpu():
                cpu.apply(w, self._dirs["cpu"], r)
            if r.pids_limit is not None:
                pids.apply(w, self._dirs["pids"], r)
            if r.wants_blkio():
                blkio.apply(w, self._dirs["blkio"], r)
            if huge is not None:
                d, v2 = huge
                if v2:
                    self._enable_unified(d, "hugetlb")
                hugetlb.apply(w, d, r, v2)
        except EngineError as err:
            raise fs.fail_with_rollback(w, err) from err
        self.warnings = list(w.warnings)
        return self.warnings

    def stats(self) -> dict:
        s = Stats()
        d = self._dirs.get
        for name, fn in (
            ("cpu", cpu.stats),
            ("cpuacct", cpuacct.stats),
            ("cpuset", cpuset.stats),
            ("memory", memory.stats),
            ("pids", pids.stats),
            ("blkio", blkio.stats),
        ):
            path = d(name)
            if path is not None and os.path.isdir(path):
                fn(path, s)
        huge = self._hugetlb_dir()
        if huge is not None and os.path.isdir(huge[0]):
            hugetlb.stats(huge[0], s, huge[1])
        return to_runc_json(s)

    # processes -----------------------------------------------------------------------
    def pids(self) -> list[int]:
        return fs.walk_pids(self._primary)

    def can_freeze(self) -> bool:
        return "freezer" in self._dirs

    def freeze(self) -> None:
        freezer.freeze(self._dir("freezer", "freeze"))

    def thaw(self) -> None:
        freezer.thaw(self._dir("freezer", "thaw"))

    def is_frozen(self) -> bool:
        d = self._dirs.get("freezer")
        if d is None or not os.path.isdir(d):
            return False
        return freezer.is_frozen(d)

    # oom -----------------------------------------------------------------------------
    def oom_kill_count(self) -> int:
        return memory.oom_kill_count(self._dir("memory", "read oom kills"))

    def oom_event_fd(self) -> int:
        return notify.oom_eventfd_v1(self._dir("memory", "watch for oom"))
