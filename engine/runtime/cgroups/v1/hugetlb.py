"""hugetlb limits and stats, for a v1 hugetlb hierarchy or a cgroup2 tree.

v1 names the files hugetlb.<size>.limit_in_bytes / usage_in_bytes /
max_usage_in_bytes / failcnt; cgroup2 names them hugetlb.<size>.max / current and
counts failures in hugetlb.<size>.events ("max N"). Newer kernels also have the
reservation ("rsvd") variants, which the spec prefers; we set both when the rsvd file
exists. The v1 manager calls the cgroup2 flavour for the hybrid layout, where
hugetlb is bound to the unified tree instead of a v1 hierarchy (as on this host).
"""

from __future__ import annotations

from .. import fs
from ..layout import hugepage_sizes
from ..resources import Resources
from ..stats import Stats


def apply(w: fs.Writer, d: str, r: Resources, v2: bool) -> None:
    suffix = ".max" if v2 else ".limit_in_bytes"
    for size, limit in r.hugepages:
        prefix = f"hugetlb.{size}"
        w.write(d, prefix + suffix, str(limit))
        if fs.exists(d, prefix + ".rsvd" + suffix):
            w.write(d, prefix + ".rsvd" + suffix, str(limit))


def stats(d: str, s: Stats, v2: bool) -> None:
    for size in hugepage_sizes():
        prefix = f"hugetlb.{size}"
        if v2:
            usage = fs.read_opt(d, prefix + ".rsvd.current") or fs.read_opt(d, prefix + ".current")
            if usage is None:
                continue
            events = fs.parse_flat_keyed(fs.read_opt(d, prefix + ".events") or "")
            s.hugetlb[size] = {"usage": int(usage), "failcnt": events.get("max", 0)}
        else:
            rsvd = ".rsvd" if fs.exists(d, prefix + ".rsvd.usage_in_bytes") else ""
            usage = fs.read_opt(d, prefix + rsvd + ".usage_in_bytes")
            if usage is None:
                continue
            s.hugetlb[size] = {
                "usage": int(usage),
                "max": int(fs.read(d, prefix + rsvd + ".max_usage_in_bytes")),
                "failcnt": int(fs.read(d, prefix + rsvd + ".failcnt")),
            }
