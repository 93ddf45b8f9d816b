"""v1 pids controller (same files as v2): pids.max, and pids.current for stats."""

from __future__ import annotations

from .. import fs
from ..convert import MAX_UINT64, pids_max
from ..resources import Resources
from ..stats import Stats


def apply(w: fs.Writer, d: str, r: Resources) -> None:
    if r.pids_limit is not None:
        w.write(d, "pids.max", pids_max(r.pids_limit))


def stats(d: str, s: Stats) -> None:
    current = fs.read_opt(d, "pids.current")
    if current is None:
        return
    s.pids_current = int(current)
    limit = fs.parse_uint(fs.read(d, "pids.max"))
    s.pids_limit = 0 if limit == MAX_UINT64 else limit
