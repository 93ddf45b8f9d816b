"""Cgroup statistics in the JSON shape of ``runc events --stats`` (the event's "data").

Both managers fill a ``Stats`` (plain attributes named after runc's types) and call
``to_runc_json()``. The JSON keeps runc's field names and its omit rules: numbers
tagged ``omitempty`` vanish when 0, nested objects tagged ``omitzero`` vanish when
every field in them is zero, empty lists vanish. Units: cpu times in nanoseconds,
memory in bytes. ``intel_rdt`` is always ``{}`` and ``network_interfaces`` ``null``
here (the runtime can fill interfaces from the container's netns).

Also here: parsers for the v1 blkio stat lines, which both blkio and the v1 manager use.
"""

from __future__ import annotations


class MemoryData:
    __slots__ = ("usage", "max_usage", "failcnt", "limit")

    def __init__(self, usage: int = 0, max_usage: int = 0, failcnt: int = 0, limit: int = 0) -> None:
        self.usage, self.max_usage, self.failcnt, self.limit = usage, max_usage, failcnt, limit


class BlkioEntry:
    __slots__ = ("major", "minor", "op", "value")

    def __init__(self, major: int, minor: int, op: str, value: int) -> None:
        self.major, self.minor, self.op, self.value = major, minor, op, value


class Stats:
    """Collected numbers; class attributes are zero defaults, containers are made per instance."""

    cpu_total: int = 0
    cpu_kernel: int = 0
    cpu_user: int = 0
    throttle_periods: int = 0
    throttle_throttled_periods: int = 0
    throttle_throttled_time: int = 0
    memory_cache: int = 0
    pids_current: int = 0
    pids_limit: int = 0

    def __init__(self, **values: object) -> None:
        self.cpu_percpu: list[int] = []
        self.cpu_percpu_kernel: list[int] = []
        self.cpu_percpu_user: list[int] = []
        self.cpuset: dict = {}
        self.memory_usage = MemoryData()
        self.memory_swap = MemoryData()
        self.memory_kernel = MemoryData()
        self.memory_kernel_tcp = MemoryData()
        self.memory_raw: dict[str, int] = {}
        self.blkio: dict[str, list[BlkioEntry]] = {}  # runc JSON key -> entries
        self.hugetlb: dict[str, dict[str, int]] = {}  # size -> usage/max/failcnt
        for key, value in values.items():
            if not hasattr(self, key):
                raise TypeError(f"unknown stats field {key}")
            setattr(self, key, value)


CPUSET_FIELDS = (
    "cpu_exclusive",
    "mem_hardwall",
    "mem_exclusive",
    "memory_migrate",
    "memory_spread_page",
    "memory_spread_slab",
    "memory_pressure",
    "sched_load_balance",
    "sched_relax_domain_level",
)

BLKIO_KEYS = (
    "ioServiceBytesRecursive",
    "ioServicedRecursive",
    "ioQueueRecursive",
    "ioServiceTimeRecursive",
    "ioWaitTimeRecursive",
    "ioMergedRecursive",
    "ioTimeRecursive",
    "sectorsRecursive",
)


def _omitempty(d: dict) -> dict:
    return {k: v for k, v in d.items() if v not in (0, "", None, [], {})}


def _mem_entry(m: MemoryData) -> dict | None:
    if not (m.usage or m.max_usage or m.failcnt or m.limit):
        return None  # omitzero
    out = {"limit": m.limit}
    if m.usage:
        out["usage"] = m.usage
    if m.max_usage:
        out["max"] = m.max_usage
    out["failcnt"] = m.failcnt
    return out


def to_runc_json(s: Stats) -> dict:
    """The dict that json.dumps() turns into runc's stats JSON."""
    cpu: dict = {}
    usage = _omitempty(
        {
            "total": s.cpu_total,
            "percpu": s.cpu_percpu,
            "percpu_kernel": s.cpu_percpu_kernel,
            "percpu_user": s.cpu_percpu_user,
        }
    )
    if usage or s.cpu_kernel or s.cpu_user:
        usage["kernel"] = s.cpu_kernel
        usage["user"] = s.cpu_user
        cpu["usage"] = usage
    throttling = _omitempty(
        {
            "periods": s.throttle_periods,
            "throttledPeriods": s.throttle_throttled_periods,
            "throttledTime": s.throttle_throttled_time,
        }
    )
    if throttling:
        cpu["throttling"] = throttling
    cpuset: dict = {}
    if s.cpuset.get("cpus"):
        cpuset["cpus"] = s.cpuset["cpus"]
    for name in CPUSET_FIELDS[:1]:
        cpuset[name] = s.cpuset.get(name, 0)
    if s.cpuset.get("mems"):
        cpuset["mems"] = s.cpuset["mems"]
    for name in CPUSET_FIELDS[1:]:
        cpuset[name] = s.cpuset.get(name, 0)
    memory: dict = {}
    if s.memory_cache:
        memory["cache"] = s.memory_cache
    for key, entry in (
        ("usage", s.memory_usage),
        ("swap", s.memory_swap),
        ("kernel", s.memory_kernel),
        ("kernelTCP", s.memory_kernel_tcp),
    ):
        e = _mem_entry(entry)
        if e is not None:
            memory[key] = e
    if s.memory_raw:
        memory["raw"] = dict(s.memory_raw)
    blkio = {}
    for key in BLKIO_KEYS:
        entries = s.blkio.get(key)
        if entries:
            blkio[key] = [
                _omitempty({"major": e.major, "minor": e.minor, "op": e.op, "value": e.value})
                for e in entries
            ]
    hugetlb = {
        size: {
            **_omitempty({"usage": h.get("usage", 0), "max": h.get("max", 0)}),
            "failcnt": h.get("failcnt", 0),
        }
        for size, h in s.hugetlb.items()
    }
    return {
        "cpu": cpu,
        "cpuset": cpuset,
        "memory": memory,
        "pids": _omitempty({"current": s.pids_current, "limit": s.pids_limit}),
        "blkio": blkio,
        "hugetlb": hugetlb,
        "intel_rdt": {},
        "network_interfaces": None,
    }


def parse_blkio_lines(text: str) -> list[BlkioEntry]:
    """v1 blkio stat files: "8:0 Read 1282048" or "8:0 6792"; "Total N" lines are skipped."""
    out: list[BlkioEntry] = []
    for line in text.splitlines():
        fields = line.replace(":", " ").split()
        if not fields or fields[0] == "Total":
            continue
        if len(fields) == 4:
            out.append(BlkioEntry(int(fields[0]), int(fields[1]), fields[2], int(fields[3])))
        elif len(fields) == 3:
            out.append(BlkioEntry(int(fields[0]), int(fields[1]), "", int(fields[2])))
    return out


def parse_io_stat(text: str) -> dict[str, list[BlkioEntry]]:
    """v2 io.stat ("254:0 rbytes=1 wbytes=2 rios=3 wios=4 ...") in runc's blkio keys."""
    names = {
        "rbytes": ("ioServiceBytesRecursive", "Read"),
        "wbytes": ("ioServiceBytesRecursive", "Write"),
        "rios": ("ioServicedRecursive", "Read"),
        "wios": ("ioServicedRecursive", "Write"),
    }
    out: dict[str, list[BlkioEntry]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0].count(":") != 1:
            continue
        major_s, minor_s = parts[0].split(":")
        for item in parts[1:]:
            key, eq, val = item.partition("=")
            if not eq or key not in names:
                continue
            table, op = names[key]
            out.setdefault(table, []).append(BlkioEntry(int(major_s), int(minor_s), op, int(val)))
    return out


def parse_cpuacct_usage_all(text: str) -> tuple[list[int], list[int]]:
    """cpuacct.usage_all ("cpu user system" header, then one line per cpu) -> (kernel, user)."""
    kernel: list[int] = []
    user: list[int] = []
    lines = text.splitlines()
    if not lines or not lines[0].startswith("cpu user system"):
        return kernel, user
    for line in lines[1:]:
        f = line.split()
        if len(f) >= 3:
            user.append(int(f[1]))
            kernel.append(int(f[2]))
    return kernel, user
