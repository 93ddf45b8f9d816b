"""Docker's stats object from a runc stats dict: the fields the docker CLI computes CPU % and memory from,
the host's system CPU time, the all-zero object of a stopped container, and network counters read from a
process's own network namespace."""

from __future__ import annotations

import os

from engine.api.docker.stats import docker_stats, net_dev, system_cpu_usage, zero_stats

RUNC = {
    "cpu": {"usage": {"total": 5_000_000, "percpu": [3_000_000, 2_000_000], "kernel": 1_000_000, "user": 4_000_000},
            "throttling": {"periods": 3, "throttledPeriods": 1, "throttledTime": 7}},
    "memory": {"usage": {"usage": 4 << 20, "max_usage": 5 << 20, "limit": 64 << 20, "failcnt": 2},
               "raw": {"total_inactive_file": 1 << 20, "cache": 1 << 20}},
    "pids": {"current": 3, "limit": 100},
    "blkio": {"ioServiceBytesRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 4096}]},
}


def test_shape_the_cli_reads() -> None:
    pre = {"cpu_usage": {"total_usage": 1_000_000}, "system_cpu_usage": 1}
    s = docker_stats(RUNC, cid="a" * 64, name="/web", pid=os.getpid(), pre=pre, preread="2026-01-01T00:00:00Z")
    assert s["id"] == "a" * 64 and s["name"] == "/web" and s["read"].endswith("Z")
    assert s["cpu_stats"]["cpu_usage"] == {"total_usage": 5_000_000, "usage_in_kernelmode": 1_000_000,
                                           "usage_in_usermode": 4_000_000, "percpu_usage": [3_000_000, 2_000_000]}
    assert s["cpu_stats"]["online_cpus"] == os.cpu_count() and s["cpu_stats"]["system_cpu_usage"] > 0
    assert s["cpu_stats"]["throttling_data"] == {"periods": 3, "throttled_periods": 1, "throttled_time": 7}
    assert s["precpu_stats"] is pre
    assert s["memory_stats"] == {"usage": 4 << 20, "max_usage": 5 << 20, "failcnt": 2, "limit": 64 << 20,
                                 "stats": {"total_inactive_file": 1 << 20, "cache": 1 << 20}}
    assert s["pids_stats"] == {"current": 3, "limit": 100}
    assert s["blkio_stats"]["io_service_bytes_recursive"] == [{"major": 8, "minor": 0, "op": "Read", "value": 4096}]
    assert s["blkio_stats"]["io_serviced_recursive"] is None


def test_no_memory_limit_reports_host_memory() -> None:
    s = docker_stats({"memory": {"usage": {"usage": 1, "limit": 1 << 63}}}, cid="b", name="/b", pid=0, pre=None,
                     preread="")
    assert s["memory_stats"]["limit"] == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert "networks" not in s


def test_zero_and_system_cpu() -> None:
    z = zero_stats("c", "/c")
    assert z["read"] == "0001-01-01T00:00:00Z" and z["memory_stats"] == {} and z["pids_stats"] == {}
    a = system_cpu_usage()
    assert a > 0 and system_cpu_usage() >= a


def test_net_dev_reads_a_namespace_without_lo() -> None:
    devs = net_dev(os.getpid())
    assert "lo" not in devs
    for counters in devs.values():
        assert set(counters) == {"rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes", "tx_packets",
                                 "tx_errors", "tx_dropped"}
    assert net_dev(2**22 + 12345) == {}
