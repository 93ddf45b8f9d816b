"""v2 cpuset controller: cpuset.cpus and cpuset.mems (empty means "inherit", no copying needed)."""

from __future__ import annotations

from .. import fs
from ..resources import Resources


def apply(w: fs.Writer, d: str, r: Resources) -> None:
    if r.cpus:
        w.write(d, "cpuset.cpus", r.cpus)
    if r.mems:
        w.write(d, "cpuset.mems", r.mems)
