"""``GET /containers/{id}/stats``: Docker's stats JSON from the container's cgroup (v1 or v2) and netns.

The shim reads the cgroup (runc's stats shape, engine/runtime/cgroups/stats.py) and this module turns it
into Docker's ``ContainerStatsResponse``: ``cpu_stats``/``precpu_stats`` (with the host's
``system_cpu_usage`` from /proc/stat and ``online_cpus``, so the CLI computes CPU % as Docker's does),
``memory_stats`` (usage, limit, and the raw ``stats`` the CLI subtracts the page cache with),
``pids_stats``, ``blkio_stats`` and ``networks`` (from ``/proc/<pid>/net/dev``, the container's own
network namespace). ``stream=true`` (the default) sends one object a second until the client goes or the
container stops; ``stream=false`` samples twice a second apart so ``precpu_stats`` is filled, and
``one-shot=true`` answers at once with an empty ``precpu_stats``. A container that is not running gets
Docker's all-zero object.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from engine.api.docker.http import Request, Response, StreamResponse
from engine.errors import EngineError, NotFound
from engine.services import Services

NAMESPACE = "moby"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_ZERO_TIME = "0001-01-01T00:00:00Z"
_BLKIO_KEYS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
               "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive", "io_time_recursive",
               "sectors_recursive")
_RUNC_BLKIO = {"io_service_bytes_recursive": "ioServiceBytesRecursive", "io_serviced_recursive": "ioServicedRecursive",
               "io_queue_recursive": "ioQueuedRecursive", "io_service_time_recursive": "ioServiceTimeRecursive",
               "io_wait_time_recursive": "ioWaitTimeRecursive", "io_merged_recursive": "ioMergedRecursive",
               "io_time_recursive": "ioTimeRecursive", "sectors_recursive": "sectorsRecursive"}


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def system_cpu_usage() -> int:
    """The host's total CPU time in nanoseconds (all CPUs, all modes), as Docker reads it from /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields) * 1_000_000_000 // _CLK_TCK


def net_dev(pid: int) -> dict[str, dict[str, int]]:
    """Per-interface counters of the network namespace `pid` is in (loopback left out, as Docker does)."""
    out: dict[str, dict[str, int]] = {}
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.readlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        v = [int(x) for x in rest.split()]
        if name == "lo" or len(v) < 16:
            continue
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                     "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11]}
    return out


def _cpu(runc: dict[str, Any], ncpu: int, system: int) -> dict[str, Any]:
    cpu = runc.get("cpu") or {}
    usage = cpu.get("usage") or {}
    thr = cpu.get("throttling") or {}
    cu: dict[str, Any] = {"total_usage": usage.get("total", 0), "usage_in_kernelmode": usage.get("kernel", 0),
                          "usage_in_usermode": usage.get("user", 0)}
    if usage.get("percpu"):
        cu["percpu_usage"] = usage["percpu"]
    return {"cpu_usage": cu, "system_cpu_usage": system, "online_cpus": ncpu,
            "throttling_data": {"periods": thr.get("periods", 0), "throttled_periods": thr.get("throttledPeriods", 0),
                                "throttled_time": thr.get("throttledTime", 0)}}


def _memory(runc: dict[str, Any]) -> dict[str, Any]:
    mem = runc.get("memory") or {}
    usage = mem.get("usage") or {}
    raw = dict(mem.get("raw") or {})
    out: dict[str, Any] = {"usage": usage.get("usage", 0), "stats": raw}
    limit = usage.get("limit", 0)
    if not limit or limit >= 1 << 62:  # no limit: Docker reports the host's memory
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    out["limit"] = limit
    if "max_usage" in usage:
        out["max_usage"] = usage["max_usage"]
    if "failcnt" in usage:
        out["failcnt"] = usage["failcnt"]
    return out


def _blkio(runc: dict[str, Any]) -> dict[str, Any]:
    b = runc.get("blkio") or {}
    out: dict[str, Any] = {}
    for key in _BLKIO_KEYS:
        entries = b.get(_RUNC_BLKIO[key])
        out[key] = [{"major": e.get("major", 0), "minor": e.get("minor", 0), "op": e.get("op", ""),
                     "value": e.get("value", 0)} for e in entries] if entries else None
    return out


def docker_stats(runc: dict[str, Any], *, cid: str, name: str, pid: int, pre: dict[str, Any] | None,
                 preread: str) -> dict[str, Any]:
    """One Docker stats object from a runc stats dict; `pre` is the previous sample's ``cpu_stats``."""
    ncpu = os.cpu_count() or 1
    pids = runc.get("pids") or {}
    out: dict[str, Any] = {
        "name": name, "id": cid, "read": now_rfc3339(), "preread": preread,
        "pids_stats": {k: v for k, v in (("current", pids.get("current", 0)), ("limit", pids.get("limit"))) if v},
        "blkio_stats": _blkio(runc), "num_procs": 0, "storage_stats": {},
        "cpu_stats": _cpu(runc, ncpu, system_cpu_usage()),
        "precpu_stats": pre or {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
        "memory_stats": _memory(runc),
    }
    nets = net_dev(pid) if pid else {}
    if nets:
        out["networks"] = nets
    return out


def zero_stats(cid: str, name: str) -> dict[str, Any]:
    empty_cpu = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                 "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    return {"name": name, "id": cid, "read": _ZERO_TIME, "preread": _ZERO_TIME, "pids_stats": {},
            "blkio_stats": dict.fromkeys(_BLKIO_KEYS), "num_procs": 0, "storage_stats": {},
            "cpu_stats": empty_cpu, "precpu_stats": empty_cpu, "memory_stats": {}}


_enc = msgspec.json.Encoder()


async def get_stats(services: Services, req: Request) -> Response | StreamResponse:
    docker = getattr(services, "docker", None)
    if docker is None or services.tasks is None:  # a daemon without the dockerd role has no containers
        raise NotFound(f"No such container: {req.params['id']}")
    c = await docker.resolve(req.params["id"])
    cid, name = c.id, c.name
    stream = req.flag("stream", True)
    one_shot = req.flag("one-shot", False)
    tasks = services.tasks

    async def sample() -> tuple[dict[str, Any], int] | None:
        try:
            t = await tasks.get(NAMESPACE, cid)
            if t.status not in ("running", "paused"):
                return None
            return await tasks.metrics(NAMESPACE, cid), t.pid
        except EngineError:
            return None

    if not stream:
        first = await sample()
        if first is None:
            return Response.json(zero_stats(cid, name))
        if one_shot:
            return Response.json(docker_stats(first[0], cid=cid, name=name, pid=first[1], pre=None,
                                              preread=_ZERO_TIME))
        pre_read, pre_cpu = now_rfc3339(), _cpu(first[0], os.cpu_count() or 1, system_cpu_usage())
        await asyncio.sleep(1)
        second = await sample() or first
        return Response.json(docker_stats(second[0], cid=cid, name=name, pid=second[1], pre=pre_cpu,
                                          preread=pre_read))

    async def frames() -> AsyncIterator[bytes]:
        pre: dict[str, Any] | None = None
        preread = _ZERO_TIME
        while True:
            s = await sample()
            if s is None:
                yield _enc.encode(zero_stats(cid, name)) + b"\n"
                return
            obj = docker_stats(s[0], cid=cid, name=name, pid=s[1], pre=pre, preread=preread)
            yield _enc.encode(obj) + b"\n"
            pre, preread = obj["cpu_stats"], obj["read"]
            await asyncio.sleep(1)

    return StreamResponse(frames(), "application/json")


def register(r: Any, services: Services) -> None:
    import functools

    r.add("GET", "/containers/{id}/stats", functools.partial(get_stats, services))
