"""Where a container's cgroup is, and what an OCI ``cgroup`` mount shows inside it.

``resolve(cgroups_path, id)``: an absolute ``linux.cgroupsPath`` is used as given; a relative
one is taken relative to the runtime's own cgroup (as runc's fs driver); an empty one is
``/<id>``.  systemd-style "slice:prefix:name" paths are turned into a plain path, since this
runtime drives cgroupfs directly.

``mount_entries(pid, new_cgroupns)`` lists, per host hierarchy (v1 ones only on a hybrid host,
as runc), what plan.py mounts at ``/sys/fs/cgroup/<name>``: with a new cgroup namespace a fresh cgroup mount (the namespace
makes the container's cgroup its root); without one, a bind of the container's own cgroup
directory, so the container never sees its siblings.
"""

from __future__ import annotations

import os

from engine.runtime import mounts as m


def _own_cgroup() -> str:
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return "/"
    by_ctrl = {}
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(","):
            by_ctrl[c] = path
    for c in ("pids", "cpu", "memory", ""):
        if c in by_ctrl:
            return by_ctrl[c]
    return "/"


def resolve(cgroups_path: str | None, container_id: str) -> str:
    path = cgroups_path or ""
    if path and ":" in path and not path.startswith("/"):
        # systemd driver syntax "system.slice:docker:<id>" -> /system.slice/docker-<id>.scope
        slice_, prefix, name = (path.split(":") + ["", ""])[:3]
        slice_ = slice_ or "system.slice"
        path = f"/{slice_}/{prefix + '-' if prefix else ''}{name}.scope"
    if not path:
        return "/" + container_id
    if path.startswith("/"):
        return os.path.normpath(path)
    return os.path.normpath(os.path.join(_own_cgroup(), path))


def _proc_cgroups(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f.read().splitlines():
            _, ctrls, path = line.split(":", 2)
            out[ctrls] = path
    return out


def mount_entries(
    pid: int, new_cgroupns: bool, dirs: list[str] | None = None
) -> list[tuple[str, str, str, str, bool]]:
    """(name under /sys/fs/cgroup, source, fstype, data, is_bind) per host cgroup hierarchy.

    A single entry named "" means the unified (v2) layout: mount it at the destination itself.
    ``dirs`` (the cgroup manager's directories) lets a bind be planned before the process has
    joined its cgroup; hierarchies it does not cover are read from /proc/<pid>/cgroup.
    """
    hier = [h for h in m.host_cgroup_mounts() if h[0].startswith("/sys/fs/cgroup")]
    if any(h[2] == "cgroup" for h in hier):
        # hybrid host: show the v1 hierarchies only, as runc does (the cgroup2 tree there
        # holds nothing a container manages)
        hier = [h for h in hier if h[2] == "cgroup"]
    if dirs is not None and not new_cgroupns:
        out = []
        for mp, _root, fstype, _superopts in hier:
            if not mp.startswith("/sys/fs/cgroup"):
                continue
            src = next((d for d in dirs if d.startswith(mp + "/")), None)
            if src is None:
                return mount_entries(pid, new_cgroupns)
            out.append((mp[len("/sys/fs/cgroup") :].lstrip("/"), src, fstype, "", True))
        return out
    procs = _proc_cgroups(pid)
    out = []
    for mp, root, fstype, superopts in hier:
        if not mp.startswith("/sys/fs/cgroup"):
            continue
        name = mp[len("/sys/fs/cgroup") :].lstrip("/")
        key: str | None = ""
        if fstype != "cgroup2":
            opts = [o for o in superopts.split(",") if o in _V1 or o.startswith("name=")]
            key = next((k for k in procs if k and set(k.split(",")) == set(opts)), None)
            if key is None:
                continue
            superopts = ",".join(opts)
        cg = procs.get(key or "", "/")
        if new_cgroupns:
            out.append((name, "cgroup", fstype, "" if fstype == "cgroup2" else superopts, False))
        else:
            rel = os.path.relpath(cg, root) if root != "/" else cg.lstrip("/")
            src = os.path.normpath(os.path.join(mp, rel))
            out.append((name, src, fstype, "", True))
    return out


_V1 = {
    "cpuset",
    "cpu",
    "cpuacct",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
}
