"""v2 cpu controller: cpu.weight (from OCI shares), cpu.max, cpu.max.burst, cpu.idle.

Shares are converted with convert.shares_to_weight (runc's curve). Quota and period go
together into cpu.max as "<quota|max> <period>"; an unset period means the kernel
default 100000. Realtime scheduling knobs have no v2 counterpart and are reported
as not enforced. Stats: usage/user/system and throttling from cpu.stat (usec -> ns).
"""

from __future__ import annotations

from engine.errors import InvalidArgument

from .. import fs
from ..convert import cpu_max, shares_to_weight
from ..resources import Resources
from ..stats import Stats


def apply(w: fs.Writer, d: str, r: Resources) -> None:
    if r.cpu_idle is not None:
        w.write(d, "cpu.idle", str(r.cpu_idle))
    if r.cpu_shares:
        w.write(d, "cpu.weight", str(shares_to_weight(r.cpu_shares)))
    burst_deferred = False
    if r.cpu_burst is not None:
        try:
            w.write(d, "cpu.max.burst", str(r.cpu_burst))
        except InvalidArgument:
            if not r.cpu_quota:
                raise
            burst_deferred = True
    if r.cpu_quota or r.cpu_period:
        w.write(d, "cpu.max", cpu_max(r.cpu_quota, r.cpu_period))
    if burst_deferred:
        w.write(d, "cpu.max.burst", str(r.cpu_burst))
    if r.rt_runtime or r.rt_period:
        w.warn("cpu.realtimeRuntime/realtimePeriod are not enforced on cgroup v2")


def stats(d: str, s: Stats) -> None:
    text = fs.read_opt(d, "cpu.stat")
    if text is None:
        return
    kv = fs.parse_flat_keyed(text)
    s.cpu_total = kv.get("usage_usec", 0) * 1000
    s.cpu_user = kv.get("user_usec", 0) * 1000
    s.cpu_kernel = kv.get("system_usec", 0) * 1000
    s.throttle_periods = kv.get("nr_periods", 0)
    s.throttle_throttled_periods = kv.get("nr_throttled", 0)
    s.throttle_throttled_time = kv.get("throttled_usec", 0) * 1000
