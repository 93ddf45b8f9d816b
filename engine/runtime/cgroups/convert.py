"""Pure conversions between OCI resource values and cgroup file values.

The OCI spec was written for cgroup v1; on v2 some values must be converted. The
formulas are the ones runc uses, so a container gets the same limits under either
runtime:

* cpu shares [2, 262144] (default 1024) -> cpu.weight [1, 10000] (default 100): a
  quadratic in log2(shares) through (2, 1), (1024, 100) and (262144, 10000), rounded up.
* blkio weight [10, 1000] -> io.weight [1, 10000]: linear, 1 + (w - 10) * 9999 / 990.
* memory.swap is memory+swap in OCI (and in v1's memory.memsw.limit_in_bytes); v2's
  memory.swap.max is swap alone, so it is swap - limit, with -1 meaning "max".
"""

from __future__ import annotations

import math

from engine.errors import InvalidArgument

MAX_UINT64 = (1 << 64) - 1


def shares_to_weight(shares: int) -> int:
    """v1 cpu.shares -> v2 cpu.weight; 0 stays 0 ("unset")."""
    if shares == 0:
        return 0
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    l2 = math.log2(shares)
    exponent = (l2 * l2 + 125 * l2) / 612.0 - 7.0 / 34.0
    return int(math.ceil(10**exponent))


def blkio_weight_to_io_weight(weight: int) -> int:
    """v1 blkio.weight -> v2 io.weight; 0 stays 0 ("unset")."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def swap_to_v2(swap: int, limit: int) -> int:
    """OCI memory.swap (memory+swap) -> v2 memory.swap.max value (-1 = max, 0 = unset)."""
    if limit == -1 and swap == 0:
        # like the v1 controller: unlimited memory with no swap given means unlimited swap
        return -1
    if swap in (-1, 0):
        return swap
    if limit == -1:
        return swap
    if limit == 0:
        raise InvalidArgument("unable to set swap limit without memory limit")
    if limit < 0:
        raise InvalidArgument(f"invalid memory value: {limit}")
    if swap < limit:
        raise InvalidArgument("memory+swap limit should be >= memory limit")
    return swap - limit


def num_or_max(value: int) -> str:
    """-1 -> "max", n -> "n" (v2 style limits)."""
    return "max" if value == -1 else str(value)


def cpu_max(quota: int, period: int) -> str:
    """The v2 cpu.max line: "<quota|max> <period>"; period 0 means the kernel default 100000."""
    q = "max" if quota <= 0 else str(quota)
    return f"{q} {period or 100000}"


def parse_cpu_max(text: str) -> tuple[int, int]:
    """cpu.max contents -> (quota, period) with quota -1 for "max"."""
    parts = text.split()
    if len(parts) != 2:
        raise InvalidArgument(f"malformed cpu.max {text!r}")
    quota = -1 if parts[0] == "max" else int(parts[0])
    return quota, int(parts[1])


def pids_max(limit: int) -> str:
    """OCI pids.limit -> pids.max: negative is "max"; 0 is a real limit of 0 (spec)."""
    return "max" if limit < 0 else str(limit)


def parse_cpu_list(text: str) -> list[int]:
    """ "0-3,7" -> [0, 1, 2, 3, 7]; raises InvalidArgument on bad syntax."""
    text = text.strip()
    out: list[int] = []
    if not text:
        return out
    for part in text.split(","):
        lo, dash, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if dash else a
        except ValueError:
            raise InvalidArgument(f"invalid cpu/mem list {text!r}") from None
        if a < 0 or b < a or not lo.isdigit() or (dash and not hi.isdigit()):
            raise InvalidArgument(f"invalid cpu/mem list {text!r}")
        out.extend(range(a, b + 1))
    return out
