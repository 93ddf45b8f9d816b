"""v1 cpuset controller: cpus and mems, plus making new cpuset cgroups usable.

A new v1 cpuset cgroup starts with empty cpuset.cpus and cpuset.mems, and no task can
join it until both are filled; so ``ensure`` creates each missing level from the
mount root down and copies the parent's values into any level that is still empty.
"""

from __future__ import annotations

import os

from .. import fs
from ..convert import parse_cpu_list
from ..resources import Resources
from ..stats import CPUSET_FIELDS, Stats


def ensure(mount: str, d: str) -> None:
    """Create ``d`` (under the hierarchy mounted at ``mount``) with inherited cpus/mems."""
    rel = os.path.relpath(d, mount)
    cur = mount
    for part in [] if rel == "." else rel.split(os.sep):
        parent, cur = cur, os.path.join(cur, part)
        try:  # noqa: SIM105  (contextlib costs ~2.7 ms of engine-runtime start-up)
            os.mkdir(cur, 0o755)
        except FileExistsError:
            pass
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not fs.read(cur, name).strip():
                fs.write(cur, name, fs.read(parent, name).strip())


def apply(w: fs.Writer, d: str, r: Resources) -> None:
    if r.cpus:
        w.write(d, "cpuset.cpus", r.cpus)
    if r.mems:
        w.write(d, "cpuset.mems", r.mems)


def stats(d: str, s: Stats) -> None:
    cpus = fs.read_opt(d, "cpuset.cpus")
    if cpus is None:
        return
    out: dict = {"cpus": parse_cpu_list(cpus), "mems": parse_cpu_list(fs.read(d, "cpuset.mems"))}
    for name in CPUSET_FIELDS:
        text = fs.read_opt(d, f"cpuset.{name}")
        if text is not None and text.strip().lstrip("-").isdigit():
            out[name] = int(text)
    s.cpuset = out
