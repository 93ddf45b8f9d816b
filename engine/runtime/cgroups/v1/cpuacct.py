"""v1 cpuacct controller: CPU usage statistics only (nothing to set).

cpuacct.usage and usage_percpu are in ns; cpuacct.stat is in USER_HZ ticks (100 per
second on Linux ABI), converted to ns; cpuacct.usage_all gives per-cpu user/system ns.
"""

from __future__ import annotations

from .. import fs
from ..stats import Stats, parse_cpuacct_usage_all

NS_PER_TICK = 1_000_000_000 // 100


def stats(d: str, s: Stats) -> None:
    total = fs.read_opt(d, "cpuacct.usage")
    if total is None:
        return
    s.cpu_total = int(total)
    percpu = fs.read_opt(d, "cpuacct.usage_percpu")
    if percpu is not None:
        s.cpu_percpu = [int(x) for x in percpu.split()]
    st = fs.read_opt(d, "cpuacct.stat")
    if st is not None:
        kv = fs.parse_flat_keyed(st)
        s.cpu_user = kv.get("user", 0) * NS_PER_TICK
        s.cpu_kernel = kv.get("system", 0) * NS_PER_TICK
    all_ = fs.read_opt(d, "cpuacct.usage_all")
    if all_ is not None:
        s.cpu_percpu_kernel, s.cpu_percpu_user = parse_cpuacct_usage_all(all_)
