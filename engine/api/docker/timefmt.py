"""Docker's time arguments (`since`, `until`): unix seconds with an optional fraction, RFC 3339 in its
variants, a date, or a Go duration meaning "that long before now" — as the daemon's timetypes accept."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from engine.errors import InvalidArgument

_UNIX = re.compile(r"^-?\d+(\.\d{1,9})?$")
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_DUR_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
          "h": 3_600_000_000_000}
_FORMATS = ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H%z",
            "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d")


def parse_time_ns(value: str, name: str = "time", now_ns: int | None = None) -> int:
    """Nanoseconds since the epoch for a Docker time argument; InvalidArgument if it is none of the forms."""
    v = value.strip()
    if not v:
        raise InvalidArgument(f"invalid value for {name}: empty")
    if _UNIX.match(v):
        sec, _, frac = v.partition(".")
        ns = int(sec) * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0) * (-1 if sec.startswith("-") else 1)
        return ns
    if _DURATION.match(v):
        total = sum(int(float(n) * _UNITS[u]) for n, u in _DUR_PART.findall(v))
        return (now_ns if now_ns is not None else time.time_ns()) - total
    text = v.replace("Z", "+00:00") if v.endswith("Z") else v
    text = re.sub(r"\.(\d{6})\d+", r".\1", text)  # Python takes microseconds at most
    for fmt in _FORMATS:
        try:
            dt = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        frac_ns = 0
        m = re.search(r"\.(\d+)", v)
        if m and "%f" in fmt:
            frac_ns = int(m.group(1)[:9].ljust(9, "0"))
            dt = dt.replace(microsecond=0)
        return int(dt.timestamp()) * 1_000_000_000 + frac_ns
    raise InvalidArgument(
        f"invalid value for {name}: {value!r} is not a unix timestamp, an RFC 3339 time, a date or a duration"
    )
