"""v1 memory controller: limit, soft limit (reservation), memory+swap, OOM killer, swappiness.

memory.limit_in_bytes and memory.memsw.limit_in_bytes must always satisfy
memsw >= limit, so the write order depends on the direction of the change (as in
runc): when raising swap (or making it unlimited) write memsw first, else the limit
first. ``limit=-1`` with no swap given also makes memsw unlimited, because otherwise
the kernel refuses an unlimited memory limit above a finite memsw.
Stats come from memory.stat ("raw") and the usage/max/failcnt/limit quadruples of
memory, memory.memsw, memory.kmem and memory.kmem.tcp.
"""

from __future__ import annotations

from engine.errors import FailedPrecondition

from .. import fs
from ..resources import Resources
from ..stats import MemoryData, Stats

LIMIT = "memory.limit_in_bytes"
SWAP = "memory.memsw.limit_in_bytes"


def _set_limit(w: fs.Writer, d: str, value: int) -> None:
    if value == 0:
        return
    try:
        w.write(d, LIMIT, str(value))
    except FailedPrecondition:
        usage = fs.read_uint(d, "memory.usage_in_bytes")
        peak = fs.read_uint(d, "memory.max_usage_in_bytes")
        raise FailedPrecondition(
            f"unable to set memory limit to {value} (current usage: {usage}, peak usage: {peak})"
        ) from None


def _set_swap(w: fs.Writer, d: str, value: int) -> None:
    if value == 0:
        return
    if not fs.exists(d, SWAP):
        raise FailedPrecondition(
            "cannot set memory+swap limit: memory.memsw.limit_in_bytes is missing (swap accounting is off)"
        )
    w.write(d, SWAP, str(value))


def apply(w: fs.Writer, d: str, r: Resources) -> None:
    limit, swap = r.memory_limit, r.memory_swap
    if r.check_before_update and limit > 0:
        usage = fs.read_uint(d, "memory.usage_in_bytes")
        if limit <= usage:
            raise FailedPrecondition(f"rejecting memory limit {limit} <= usage {usage}")
    if limit == -1 and swap == 0 and fs.exists(d, SWAP):
        swap = -1
    if limit and swap:
        current = fs.read_uint(d, LIMIT)
        if swap == -1 or current < swap:
            _set_swap(w, d, swap)
            _set_limit(w, d, limit)
        else:
            _set_limit(w, d, limit)
            _set_swap(w, d, swap)
    else:
        _set_limit(w, d, limit)
        _set_swap(w, d, swap)
    if r.memory_reservation:
        w.write(d, "memory.soft_limit_in_bytes", str(r.memory_reservation))
    if r.disable_oom_killer is not None:
        current = fs.parse_flat_keyed(fs.read(d, "memory.oom_control")).get("oom_kill_disable", 0)
        wanted = 1 if r.disable_oom_killer else 0
        if current != wanted:
            w.write(d, "memory.oom_control", str(wanted), old=str(current))
    if r.swappiness is not None:
        w.write(d, "memory.swappiness", str(r.swappiness))


def _data(d: str, prefix: str) -> MemoryData:
    usage = fs.read_opt(d, f"{prefix}.usage_in_bytes")
    if usage is None:
        return MemoryData()
    m = MemoryData(usage=fs.parse_uint(usage))
    for attr, suffix in (
        ("max_usage", "max_usage_in_bytes"),
        ("failcnt", "failcnt"),
        ("limit", "limit_in_bytes"),
    ):
        text = fs.read_opt(d, f"{prefix}.{suffix}")
        if text is not None:
            setattr(m, attr, fs.parse_uint(text))
    return m


def stats(d: str, s: Stats) -> None:
    raw = fs.read_opt(d, "memory.stat")
    if raw is None:
        return
    s.memory_raw = fs.parse_flat_keyed(raw)
    s.memory_cache = s.memory_raw.get("cache", 0)
    s.memory_usage = _data(d, "memory")
    s.memory_swap = _data(d, "memory.memsw")
    s.memory_kernel = _data(d, "memory.kmem")
    s.memory_kernel_tcp = _data(d, "memory.kmem.tcp")


def oom_kill_count(d: str) -> int:
    return fs.parse_flat_keyed(fs.read(d, "memory.oom_control")).get("oom_kill", 0)
