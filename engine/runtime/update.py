"""``update``: change a live container's resources, from runc's flags or ``-r resources.json``.

Flags map onto the OCI ``linux.resources`` object (spec field names), which the cgroup manager
validates and applies as a whole; the new values are also kept in state.json so that later
readers see what was asked.  ``-r -`` reads the JSON from stdin.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from engine.errors import FailedPrecondition, InvalidArgument
from engine.runtime import state as st
from engine.runtime.kill import current_status, manager

# flag -> (section, field, parser)
_FLAGS: dict[str, tuple[str, str, Any]] = {
    "blkio-weight": ("blockIO", "weight", int),
    "cpu-period": ("cpu", "period", int),
    "cpu-quota": ("cpu", "quota", int),
    "cpu-rt-period": ("cpu", "realtimePeriod", int),
    "cpu-rt-runtime": ("cpu", "realtimeRuntime", int),
    "cpu-share": ("cpu", "shares", int),
    "cpuset-cpus": ("cpu", "cpus", str),
    "cpuset-mems": ("cpu", "mems", str),
    "kernel-memory": ("memory", "kernel", "bytes"),
    "kernel-memory-tcp": ("memory", "kernelTCP", "bytes"),
    "memory": ("memory", "limit", "bytes"),
    "memory-reservation": ("memory", "reservation", "bytes"),
    "memory-swap": ("memory", "swap", "bytes"),
    "pids-limit": ("pids", "limit", int),
}

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
}


def parse_bytes(v: str) -> int:
    s = v.strip().lower()
    if s == "-1":
        return -1
    num = s.rstrip("kmgtbi")
    unit = s[len(num) :].replace("i", "")
    try:
        return int(float(num) * _UNITS[unit])
    except (ValueError, KeyError) as e:
        raise InvalidArgument(f"invalid value {v!r}: not a size") from e


def resources_from_flags(opts: dict) -> dict:
    res: dict = {}
    path = opts.get("resources")
    if path:
        try:
            raw = sys.stdin.read() if path == "-" else open(path).read()  # noqa: SIM115
            res = json.loads(raw)
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"read resources from {path}: {e}") from e
        if not isinstance(res, dict):
            raise InvalidArgument("resources must be a JSON object")
    for flag, (section, field, parse) in _FLAGS.items():
        v = opts.get(flag)
        if v is None:
            continue
        try:
            val = parse_bytes(v) if parse == "bytes" else parse(v)
        except ValueError as e:
            raise InvalidArgument(f"invalid value for --{flag}: {v!r}") from e
        res.setdefault(section, {})[field] = val
    return res


def update(root: str, container_id: str, resources: dict) -> list[str]:
    c = st.load(root, container_id)
    mgr = manager(c)
    status = current_status(c, mgr)
    if status == st.STOPPED:
        raise FailedPrecondition("container not running")
    warnings = mgr.set(resources) or []
    cfg = c.config
    linux = cfg.setdefault("linux", {})
    merged = linux.setdefault("resources", {})
    for k, v in resources.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k].update(v)
        else:
            merged[k] = v
    c.save()
    return list(warnings)
