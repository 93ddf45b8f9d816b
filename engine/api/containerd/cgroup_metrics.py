"""The shim's runc-shaped cgroup stats as containerd's ``io.containerd.cgroups.v1.Metrics`` (an Any).

``ctr tasks metrics`` and other Go clients decode the Metric's data by its type URL; the cgroups v1
message is not among our generated protos, so this module writes its protobuf wire format directly
(every field is a uint64, a string or a nested message — a dozen lines of encoder). Field numbers
follow containerd/cgroups' stats/v1 metrics.proto; blkio, rdma and network are left out (empty), and
memory's raw ``memory.stat`` counters map by name to the MemoryStat fields.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import any_pb2

TYPE_URL = "io.containerd.cgroups.v1.Metrics"

# memory.stat key -> MemoryStat field number (1..32)
_MEMORY_RAW = (
    "cache", "rss", "rss_huge", "mapped_file", "dirty", "writeback", "pgpgin", "pgpgout", "pgfault",
    "pgmajfault", "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable",
    "hierarchical_memory_limit", "hierarchical_memsw_limit",
)
_MEMORY_FIELDS = {name: i + 1 for i, name in enumerate(_MEMORY_RAW)}
_MEMORY_FIELDS.update({"total_" + name: i + 18 for i, name in enumerate(_MEMORY_RAW[:15])})


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _u64(field: int, value: object) -> bytes:
    v = int(value or 0)  # type: ignore[call-overload]
    return _varint(field << 3) + _varint(v) if v else b""


def _bytes(field: int, data: bytes, *, keep_empty: bool = False) -> bytes:
    if not data and not keep_empty:
        return b""
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _packed(field: int, values: Iterable[int]) -> bytes:
    return _bytes(field, b"".join(_varint(int(v)) for v in values))


def _entry(d: dict | None) -> bytes:
    d = d or {}
    return _u64(1, d.get("limit")) + _u64(2, d.get("usage")) + _u64(3, d.get("max")) + _u64(4, d.get("failcnt"))


def encode(stats: dict) -> bytes:
    """Serialized io.containerd.cgroups.v1.Metrics for runc's stats JSON (``runc events --stats`` data)."""
    out = bytearray()
    for size, h in sorted((stats.get("hugetlb") or {}).items()):
        out += _bytes(1, _u64(1, h.get("usage")) + _u64(2, h.get("max")) + _u64(3, h.get("failcnt"))
                      + _bytes(4, size.encode()), keep_empty=True)
    pids = stats.get("pids") or {}
    out += _bytes(2, _u64(1, pids.get("current")) + _u64(2, pids.get("limit")))
    cpu = stats.get("cpu") or {}
    usage, thr = cpu.get("usage") or {}, cpu.get("throttling") or {}
    cpu_usage = (_u64(1, usage.get("total")) + _u64(2, usage.get("kernel")) + _u64(3, usage.get("user"))
                 + _packed(4, usage.get("percpu") or []))
    throttle = _u64(1, thr.get("periods")) + _u64(2, thr.get("throttledPeriods")) + _u64(3, thr.get("throttledTime"))
    out += _bytes(3, _bytes(1, cpu_usage) + _bytes(2, throttle))
    mem = stats.get("memory") or {}
    raw = mem.get("raw") or mem.get("stats") or {}
    body = bytearray()
    for name, num in sorted(_MEMORY_FIELDS.items(), key=lambda kv: kv[1]):
        body += _u64(num, raw.get(name))
    if "cache" not in raw and mem.get("cache"):
        body = bytearray(_u64(1, mem["cache"])) + body
    for num, key in ((33, "usage"), (34, "swap"), (35, "kernel"), (36, "kernelTCP")):
        body += _bytes(num, _entry(mem.get(key)))
    out += _bytes(4, bytes(body))
    return bytes(out)


def pack(stats: dict) -> any_pb2.Any:
    return any_pb2.Any(type_url=TYPE_URL, value=encode(stats))
