"""Validate an OCI ``linux.resources`` object before anything is written.

``parse(obj)`` checks every field (types, ranges, cross-field rules) and returns a
``Resources`` with plain attributes, so that bad input is refused whole and changes
nothing; only errors the kernel alone can judge (a cpuset naming a CPU that does not
exist, a limit below current usage) surface during the writes, and those are rolled
back (see fs.Writer).

Conventions follow runc: 0 means "unset" for memory, cpu and blkio numbers; -1 means
unlimited for memory limits, cpu quota and pids. The checks also match runc's: cpu
shares must land in the kernel's [2, 262144] (runc writes and reads back; we check
first), swappiness is 0..100, memory+swap must be >= memory. There is no minimum
memory limit here: runc has none; the 6 MiB floor users see is dockerd's API check.
"""

from __future__ import annotations

from engine.errors import InvalidArgument

from . import devices as devmod
from .convert import parse_cpu_list

THROTTLE_KEYS = {
    "throttleReadBpsDevice": "rbps",
    "throttleWriteBpsDevice": "wbps",
    "throttleReadIOPSDevice": "riops",
    "throttleWriteIOPSDevice": "wiops",
}


class WeightDevice:
    __slots__ = ("major", "minor", "weight", "leaf_weight")

    def __init__(self, major: int, minor: int, weight: int = 0, leaf_weight: int = 0) -> None:
        self.major, self.minor, self.weight, self.leaf_weight = major, minor, weight, leaf_weight


class ThrottleDevice:
    __slots__ = ("major", "minor", "rate")

    def __init__(self, major: int, minor: int, rate: int) -> None:
        self.major, self.minor, self.rate = major, minor, rate


class Resources:
    """Validated resources; class attributes are the "unset" defaults (plain class, cheap import)."""

    memory_limit: int = 0
    memory_reservation: int = 0
    memory_swap: int = 0
    memory_kernel: int | None = None
    memory_kernel_tcp: int | None = None
    swappiness: int | None = None
    disable_oom_killer: bool | None = None
    check_before_update: bool = False
    cpu_shares: int = 0
    cpu_quota: int = 0
    cpu_period: int = 0
    cpu_burst: int | None = None
    rt_runtime: int = 0
    rt_period: int = 0
    cpus: str = ""
    mems: str = ""
    cpu_idle: int | None = None
    pids_limit: int | None = None
    blkio_weight: int = 0
    blkio_leaf_weight: int = 0
    devices: list[devmod.Rule] | None = None
    unified: dict[str, str] | None = None

    def __init__(self) -> None:
        self.weight_devices: list[WeightDevice] = []
        self.throttle: dict[str, list[ThrottleDevice]] = {}  # key: rbps/wbps/riops/wiops
        self.hugepages: list[tuple[str, int]] = []
        self.ignored: list[str] = []  # fields we accept but do not apply

    def wants_memory(self) -> bool:
        return bool(
            self.memory_limit
            or self.memory_reservation
            or self.memory_swap
            or self.swappiness is not None
            or self.disable_oom_killer
        )

    def wants_cpu(self) -> bool:
        return bool(
            self.cpu_shares
            or self.cpu_quota
            or self.cpu_period
            or self.cpu_burst is not None
            or self.rt_runtime
            or self.rt_period
            or self.cpu_idle is not None
        )

    def wants_cpuset(self) -> bool:
        return bool(self.cpus or self.mems)

    def wants_blkio(self) -> bool:
        return bool(
            self.blkio_weight or self.blkio_leaf_weight or self.weight_devices or any(self.throttle.values())
        )


def _obj(parent: dict, key: str) -> dict:
    v = parent.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise InvalidArgument(f"linux.resources.{key} must be an object")
    return v


def _int(obj: dict, key: str, where: str, lo: int | None = None, hi: int | None = None) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidArgument(f"{where}.{key} must be an integer, got {v!r}")
    if lo is not None and v < lo:
        raise InvalidArgument(f"{where}.{key} must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise InvalidArgument(f"{where}.{key} must be <= {hi}, got {v}")
    return v


def _limit(obj: dict, key: str, where: str) -> int:
    """A byte limit: -1 (unlimited), 0 (unset) or positive."""
    v = _int(obj, key, where)
    if v is None:
        return 0
    if v < -1:
        raise InvalidArgument(f"{where}.{key} must be -1 (unlimited) or a positive number of bytes, got {v}")
    return v


def _parse_memory(mem: dict, r: Resources) -> None:
    w = "memory"
    r.memory_limit = _limit(mem, "limit", w)
    r.memory_reservation = _limit(mem, "reservation", w)
    r.memory_swap = _limit(mem, "swap", w)
    if r.memory_limit > 0 and r.memory_swap > 0 and r.memory_swap < r.memory_limit:
        raise InvalidArgument("memory+swap limit should be >= memory limit")
    for key, attr in (("kernel", "memory_kernel"), ("kernelTCP", "memory_kernel_tcp")):
        v = _int(mem, key, w)
        if v is not None:
            setattr(r, attr, v)
            r.ignored.append(
                f"memory.{key} is ignored: kernel memory limits are deprecated (runc ignores them too)"
            )
    sw = mem.get("swappiness")
    if sw is not None:
        if isinstance(sw, bool) or not isinstance(sw, int):
            raise InvalidArgument(f"memory.swappiness must be an integer, got {sw!r}")
        # -1 and 2**64-1 both mean "unset" in practice (docker sends -1)
        if sw not in (-1, (1 << 64) - 1):
            if not 0 <= sw <= 100:
                raise InvalidArgument(f"invalid memory swappiness value: {sw} (valid range is 0-100)")
            r.swappiness = sw
    for key, attr in (
        ("disableOOMKiller", "disable_oom_killer"),
        ("checkBeforeUpdate", "check_before_update"),
    ):
        v = mem.get(key)
        if v is not None:
            if not isinstance(v, bool):
                raise InvalidArgument(f"memory.{key} must be a boolean")
            setattr(r, attr, v)
    if mem.get("useHierarchy") is not None:
        r.ignored.append(
            "memory.useHierarchy is ignored: hierarchical accounting is always on in current kernels"
        )


def _parse_cpu(cpu: dict, r: Resources) -> None:
    w = "cpu"
    shares = _int(cpu, "shares", w) or 0
    if shares:
        if shares < 2:
            raise InvalidArgument("the minimum allowed cpu-shares is 2")
        if shares > 262144:
            raise InvalidArgument("the maximum allowed cpu-shares is 262144")
    r.cpu_shares = shares
    quota = _int(cpu, "quota", w) or 0
    if quota < -1:
        raise InvalidArgument(
            f"cpu.quota must be -1 (unlimited) or a positive number of microseconds, got {quota}"
        )
    if 0 < quota < 1000:
        raise InvalidArgument(f"cpu.quota must be at least 1000 microseconds, got {quota}")
    r.cpu_quota = quota
    period = _int(cpu, "period", w, lo=0) or 0
    if period and not 1000 <= period <= 1000000:
        raise InvalidArgument(f"cpu.period must be between 1000 and 1000000 microseconds, got {period}")
    r.cpu_period = period
    r.cpu_burst = _int(cpu, "burst", w, lo=0)
    r.rt_runtime = _int(cpu, "realtimeRuntime", w, lo=-1) or 0
    r.rt_period = _int(cpu, "realtimePeriod", w, lo=0) or 0
    for key in ("cpus", "mems"):
        v = cpu.get(key)
        if v is None or v == "":
            continue
        if not isinstance(v, str):
            raise InvalidArgument(f"cpu.{key} must be a string")
        parse_cpu_list(v)
        setattr(r, key, v.strip())
    idle = _int(cpu, "idle", w)
    if idle is not None:
        if idle not in (0, 1):
            raise InvalidArgument(f"cpu.idle must be 0 or 1, got {idle}")
        r.cpu_idle = idle


def _device_numbers(entry: object, where: str) -> tuple[int, int, dict]:
    if not isinstance(entry, dict):
        raise InvalidArgument(f"{where} must be an object")
    major = _int(entry, "major", where, lo=0)
    minor = _int(entry, "minor", where, lo=0)
    if major is None or minor is None:
        raise InvalidArgument(f"{where} needs major and minor")
    return major, minor, entry


def _parse_blkio(bio: dict, r: Resources) -> None:
    w = "blockIO"
    r.blkio_weight = _int(bio, "weight", w, lo=0, hi=1000) or 0
    if r.blkio_weight and r.blkio_weight < 10:
        raise InvalidArgument(f"blockIO.weight must be between 10 and 1000, got {r.blkio_weight}")
    r.blkio_leaf_weight = _int(bio, "leafWeight", w, lo=0, hi=1000) or 0
    if r.blkio_leaf_weight and r.blkio_leaf_weight < 10:
        raise InvalidArgument(f"blockIO.leafWeight must be between 10 and 1000, got {r.blkio_leaf_weight}")
    for i, entry in enumerate(bio.get("weightDevice") or []):
        where = f"blockIO.weightDevice[{i}]"
        major, minor, e = _device_numbers(entry, where)
        wd = WeightDevice(
            major, minor, _int(e, "weight", where, 0, 1000) or 0, _int(e, "leafWeight", where, 0, 1000) or 0
        )
        for val in (wd.weight, wd.leaf_weight):
            if val and val < 10:
                raise InvalidArgument(f"{where} weights must be between 10 and 1000, got {val}")
        r.weight_devices.append(wd)
    for key, short in THROTTLE_KEYS.items():
        items = bio.get(key) or []
        if not isinstance(items, list):
            raise InvalidArgument(f"blockIO.{key} must be a list")
        for i, entry in enumerate(items):
            where = f"blockIO.{key}[{i}]"
            major, minor, e = _device_numbers(entry, where)
            rate = _int(e, "rate", where, lo=0)
            if rate is None:
                raise InvalidArgument(f"{where} needs a rate")
            r.throttle.setdefault(short, []).append(ThrottleDevice(major, minor, rate))


def _parse_hugepages(items: object, r: Resources, sizes: list[str] | None) -> None:
    if not isinstance(items, list):
        raise InvalidArgument("hugepageLimits must be a list")
    for i, entry in enumerate(items):
        where = f"hugepageLimits[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{where} must be an object")
        size = entry.get("pageSize")
        if not isinstance(size, str) or not size:
            raise InvalidArgument(f"{where}.pageSize is required")
        if sizes is not None and size not in sizes:
            raise InvalidArgument(
                f"{where}: page size {size!r} is not supported here (have {', '.join(sizes) or 'none'})"
            )
        limit = _int(entry, "limit", where, lo=0)
        if limit is None:
            raise InvalidArgument(f"{where}.limit is required")
        r.hugepages.append((size, limit))


def parse(obj: object, hugepage_sizes: list[str] | None = None) -> Resources:
    """Validate OCI linux.resources into Resources; raise InvalidArgument on bad input."""
    r = Resources()
    if obj is None:
        return r
    if not isinstance(obj, dict):
        raise InvalidArgument("linux.resources must be an object")
    _parse_memory(_obj(obj, "memory"), r)
    _parse_cpu(_obj(obj, "cpu"), r)
    pids = _obj(obj, "pids")
    if "limit" in pids:
        r.pids_limit = _int(pids, "limit", "pids")
    _parse_blkio(_obj(obj, "blockIO"), r)
    if obj.get("hugepageLimits") is not None:
        _parse_hugepages(obj["hugepageLimits"], r, hugepage_sizes)
    if obj.get("devices") is not None:
        r.devices = devmod.parse_rules(obj["devices"])
    uni = obj.get("unified")
    if uni is not None:
        if not isinstance(uni, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in uni.items()
        ):
            raise InvalidArgument("linux.resources.unified must map file names to strings")
        for k in uni:
            if "/" in k or k in ("", ".", ".."):
                raise InvalidArgument(f"unified resource {k!r} must be a file name (no slashes)")
            if "." not in k:
                raise InvalidArgument(f"unified resource {k!r} must be in the form CONTROLLER.PARAMETER")
        r.unified = dict(uni)
    for key in ("network", "rdma"):
        if obj.get(key):
            r.ignored.append(f"{key} resources are not applied by this runtime")
    return r
