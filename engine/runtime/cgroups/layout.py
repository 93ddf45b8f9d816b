"""Which cgroup layout this host has, and where each hierarchy is mounted.

``detect()`` answers "v2" only when /sys/fs/cgroup itself is a cgroup2 mount (the
unified layout). Everything else with v1 controller mounts is "v1", including the
systemd "hybrid" layout where a cgroup2 tree sits at /sys/fs/cgroup/unified beside
the v1 controllers (crun refuses that layout; runc copes, and so do we: the v1
manager also joins the unified tree there, and uses it for hugetlb when hugetlb is
bound to cgroup2 instead of v1).

The v1 mount table comes from /proc/self/mountinfo: the super options of a ``cgroup``
mount name its controllers (``rw,cpu,cpuacct``) or a named hierarchy
(``name=systemd``). Results are cached per process; tests may pass their own text.
"""

from __future__ import annotations

import os

CGROUP_ROOT = "/sys/fs/cgroup"
HYBRID_UNIFIED = "/sys/fs/cgroup/unified"
CGROUP2_SUPER_MAGIC = 0x63677270

# v1 controllers the engine knows how to drive (others are joined but not configured).
KNOWN_V1 = (
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
)


class Mount:
    """One cgroup mount (a plain class: dataclasses would cost the CLI ~6 ms of imports)."""

    __slots__ = ("mountpoint", "root", "fstype", "subsystems")

    def __init__(self, mountpoint: str, root: str, fstype: str, subsystems: list[str] | None = None) -> None:
        self.mountpoint = mountpoint
        self.root = root  # the cgroup path visible at the mountpoint ("/" normally)
        self.fstype = fstype  # "cgroup" or "cgroup2"
        self.subsystems = subsystems if subsystems is not None else []  # controllers, or "name=xyz"

    def __repr__(self) -> str:
        return f"Mount({self.mountpoint!r}, {self.root!r}, {self.fstype!r}, {self.subsystems!r})"


def _unescape(s: str) -> str:
    # mountinfo octal-escapes space, tab, newline and backslash
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1 : i + 4].isdigit() and len(s[i + 1 : i + 4]) == 3:
            out.append(chr(int(s[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts in a /proc/<pid>/mountinfo text."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf = left.split()
        rf = right.split()
        if len(lf) < 5 or len(rf) < 3:
            continue
        fstype = rf[0]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        subs: list[str] = []
        if fstype == "cgroup":
            for opt in rf[2].split(","):
                if opt in KNOWN_V1 or opt.startswith("name="):
                    subs.append(opt)
        mounts.append(
            Mount(mountpoint=_unescape(lf[4]), root=_unescape(lf[3]), fstype=fstype, subsystems=subs)
        )
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup as {subsystem: path}; the cgroup2 entry is keyed by ""."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for sub in parts[1].split(","):
            out[sub] = parts[2]
    return out


_cache: dict[str, object] = {}


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def mounts() -> list[Mount]:
    m = _cache.get("mounts")
    if m is None:
        m = parse_mountinfo(_read("/proc/self/mountinfo"))
        _cache["mounts"] = m
    return m  # type: ignore[return-value]


def _fs_magic(path: str) -> int:
    # os.statvfs has no f_type; the mount table tells us the type of a mountpoint.
    real = os.path.realpath(path)
    for m in mounts():
        if m.mountpoint == real:
            return CGROUP2_SUPER_MAGIC if m.fstype == "cgroup2" else 0
    return 0


def detect() -> str:
    """ "v2" if /sys/fs/cgroup is a cgroup2 mount, else "v1" (hybrid counts as v1)."""
    v = _cache.get("version")
    if v is None:
        v = "v2" if _fs_magic(CGROUP_ROOT) == CGROUP2_SUPER_MAGIC else "v1"
        _cache["version"] = v
    return v  # type: ignore[return-value]


def v1_mounts() -> list[Mount]:
    """The v1 hierarchies, first mount of each (a hierarchy may be mounted twice)."""
    seen: set[tuple[str, ...]] = set()
    out: list[Mount] = []
    for m in mounts():
        if m.fstype != "cgroup" or not m.subsystems:
            continue
        key = tuple(sorted(m.subsystems))
        if key in seen:
            continue
        seen.add(key)
        out.append(m)
    return out


def hybrid_unified() -> Mount | None:
    """The cgroup2 mount that sits beside v1 controllers (hybrid layout), if any."""
    if detect() != "v1":
        return None
    for m in mounts():
        if m.fstype == "cgroup2":
            return m
    return None


def own_cgroups() -> dict[str, str]:
    return parse_proc_cgroup(_read("/proc/self/cgroup"))


def clean_path(path: str) -> str:
    """Lexically clean a cgroupsPath; a relative path may not climb out of its base."""
    if path.startswith("/"):
        return os.path.normpath("/" + path.lstrip("/"))
    cleaned = os.path.normpath("/" + path)
    return cleaned.lstrip("/")


def hugepage_sizes() -> list[str]:
    """Page sizes as the hugetlb controller names them ("2MB", "1GB"), from sysfs."""
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return []
    out = []
    for name in sorted(names):
        if not name.startswith("hugepages-") or not name.endswith("kB"):
            continue
        try:
            kb = int(name[len("hugepages-") : -2])
        except ValueError:
            continue
        out.append(format_pagesize_kb(kb))
    return out


def format_pagesize_kb(kb: int) -> str:
    if kb >= 1 << 20:
        return f"{kb >> 20}GB"
    if kb >= 1 << 10:
        return f"{kb >> 10}MB"
    return f"{kb}KB"
