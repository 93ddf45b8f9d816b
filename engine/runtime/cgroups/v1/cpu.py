"""v1 cpu controller: shares, CFS quota/period/burst, idle, realtime runtime/period.

The kernel checks quota and burst against the period in force, so a new period may be
refused until the quota changes; like runc we try the period first and, when the
kernel says EINVAL and a quota is also being set, write it again after the quota.
The same retry applies to the realtime pair. Realtime runtime needs budget in every
ancestor (cpu.rt_runtime_us of a new parent is 0), so it usually fails unless the
caller provisioned the parents; the error says so.
Stats: nr_periods / nr_throttled / throttled_time (ns) from cpu.stat.
"""

from __future__ import annotations

from engine.errors import InvalidArgument

from .. import fs
from ..resources import Resources
from ..stats import Stats


def _pair(w: fs.Writer, d: str, first: tuple[str, int], second: tuple[str, int]) -> None:
    """Write ``first`` (a period); if refused and ``second`` is set, retry it after ``second``."""
    (pname, pval), (qname, qval) = first, second
    retry = False
    if pval:
        try:
            w.write(d, pname, str(pval))
        except InvalidArgument:
            if not qval:
                raise
            retry = True
    if qval:
        w.write(d, qname, str(qval))
    if retry:
        w.write(d, pname, str(pval))


def set_rt(w: fs.Writer, d: str, r: Resources) -> None:
    try:
        _pair(w, d, ("cpu.rt_period_us", r.rt_period), ("cpu.rt_runtime_us", r.rt_runtime))
    except InvalidArgument as err:
        raise InvalidArgument(f"{err} (realtime runtime also needs budget in every parent cgroup)") from None


def apply(w: fs.Writer, d: str, r: Resources) -> None:
    if r.cpu_shares:
        w.write(d, "cpu.shares", str(r.cpu_shares))
    burst_deferred = False
    if r.cpu_burst is not None:
        if not fs.exists(d, "cpu.cfs_burst_us"):
            w.warn("cpu.burst is not enforced: this kernel has no cpu.cfs_burst_us")
        else:
            try:
                w.write(d, "cpu.cfs_burst_us", str(r.cpu_burst))
            except InvalidArgument:
                if not r.cpu_quota:
                    raise
                burst_deferred = True
    _pair(w, d, ("cpu.cfs_period_us", r.cpu_period), ("cpu.cfs_quota_us", r.cpu_quota))
    if burst_deferred:
        w.write(d, "cpu.cfs_burst_us", str(r.cpu_burst))
    if r.cpu_idle is not None:
        w.write(d, "cpu.idle", str(r.cpu_idle))
    if r.rt_period or r.rt_runtime:
        set_rt(w, d, r)


def stats(d: str, s: Stats) -> None:
    text = fs.read_opt(d, "cpu.stat")
    if text is None:
        return
    kv = fs.parse_flat_keyed(text)
    s.throttle_periods = kv.get("nr_periods", 0)
    s.throttle_throttled_periods = kv.get("nr_throttled", 0)
    s.throttle_throttled_time = kv.get("throttled_time", 0)
