"""v2 memory controller: memory.max, memory.low (reservation), memory.swap.max.

OCI's swap is memory+swap; memory.swap.max is swap alone, so the value is converted
(convert.swap_to_v2, runc's rules). memory.swap.max is written before memory.max, as
runc does. v2 has no per-cgroup swappiness and no switch to disable the OOM killer:
those are accepted and reported as not enforced. ``checkBeforeUpdate`` refuses a
limit at or below current usage (v2 would OOM-kill instead of failing the write).
Stats follow runc's fs2: raw memory.stat, cache = "file", usage from
memory.current/max/peak, swap = swap + memory usage with a combined limit.
"""

from __future__ import annotations

from engine.errors import FailedPrecondition, Unimplemented

from .. import fs
from ..convert import MAX_UINT64, num_or_max, swap_to_v2
from ..resources import Resources
from ..stats import MemoryData, Stats


def apply(w: fs.Writer, d: str, r: Resources) -> None:
    if r.check_before_update and (r.memory_limit > 0 or r.memory_swap > 0):
        usage = fs.read_uint(d, "memory.current")
        if r.memory_swap > 0 and r.memory_swap <= usage:
            raise FailedPrecondition(f"rejecting memory+swap limit {r.memory_swap} <= usage {usage}")
        if r.memory_limit > 0 and r.memory_limit <= usage:
            raise FailedPrecondition(f"rejecting memory limit {r.memory_limit} <= usage {usage}")
    if r.memory_limit or r.memory_swap or r.memory_reservation:
        swap = swap_to_v2(r.memory_swap, r.memory_limit)
        value = "" if swap == 0 else num_or_max(swap)
        if swap == 0 and r.memory_swap > 0:
            value = "0"  # swap == limit: no swap at all
        if value:
            try:
                w.write(d, "memory.swap.max", value)
            except Unimplemented as err:
                if value not in ("max", "0"):
                    raise FailedPrecondition(
                        "cannot set swap limit: memory.swap.max is missing (no swap accounting)"
                    ) from err
        if r.memory_limit:
            w.write(d, "memory.max", num_or_max(r.memory_limit))
        if r.memory_reservation:
            w.write(d, "memory.low", num_or_max(r.memory_reservation))
    if r.swappiness is not None:
        w.warn("memory.swappiness is not enforced on cgroup v2 (no per-cgroup swappiness)")
    if r.disable_oom_killer:
        w.warn(
            "memory.disableOOMKiller is not enforced on cgroup v2 (the OOM killer cannot be disabled per cgroup)"
        )


def _data(d: str, prefix: str) -> MemoryData | None:
    cur = fs.read_opt(d, prefix + ".current")
    if cur is None:
        return None
    m = MemoryData(usage=int(cur), limit=fs.parse_uint(fs.read_opt(d, prefix + ".max") or "max"))
    peak = fs.read_opt(d, prefix + ".peak")
    if peak is not None:
        m.max_usage = int(peak)
    return m


def stats(d: str, s: Stats) -> None:
    raw = fs.read_opt(d, "memory.stat")
    if raw is None:
        return
    s.memory_raw = fs.parse_flat_keyed(raw)
    s.memory_cache = s.memory_raw.get("file", 0)
    usage = _data(d, "memory")
    if usage is None:
        return
    s.memory_usage = usage
    swap = _data(d, "memory.swap") or MemoryData()
    combined = MemoryData(usage=swap.usage + usage.usage, limit=swap.limit)
    if swap.limit != MAX_UINT64:
        combined.limit = min(MAX_UINT64, swap.limit + usage.limit)
    s.memory_swap = combined


def oom_kill_count(d: str) -> int:
    return fs.parse_flat_keyed(fs.read(d, "memory.events")).get("oom_kill", 0)
