"""Validation of OCI linux.resources: bad input is refused before anything is written."""

import re

import pytest

from engine.errors import InvalidArgument
from engine.runtime.cgroups import resources


def test_empty_and_none():
    r = resources.parse(None)
    assert not r.wants_memory() and not r.wants_cpu() and r.devices is None and r.pids_limit is None
    assert resources.parse({}).ignored == []


def test_full_object_parses():
    r = resources.parse(
        {
            "memory": {
                "limit": 64 << 20,
                "reservation": 32 << 20,
                "swap": 128 << 20,
                "swappiness": 10,
                "disableOOMKiller": True,
            },
            "cpu": {
                "shares": 512,
                "quota": 50000,
                "period": 100000,
                "cpus": "0-1",
                "mems": "0",
                "idle": 0,
                "realtimeRuntime": 1000,
                "realtimePeriod": 100000,
            },
            "pids": {"limit": 0},
            "blockIO": {
                "weight": 300,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            },
            "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
            "devices": [{"allow": False, "access": "rwm"}],
            "unified": {"memory.high": "max"},
        },
        hugepage_sizes=["2MB", "1GB"],
    )
    assert (r.memory_limit, r.memory_reservation, r.memory_swap, r.swappiness) == (
        64 << 20,
        32 << 20,
        128 << 20,
        10,
    )
    assert r.disable_oom_killer is True
    assert (r.cpu_shares, r.cpu_quota, r.cpu_period, r.cpus, r.mems, r.cpu_idle) == (
        512,
        50000,
        100000,
        "0-1",
        "0",
        0,
    )
    assert r.pids_limit == 0
    assert r.blkio_weight == 300 and r.weight_devices[0].weight == 500
    assert r.throttle["rbps"][0].rate == 1048576
    assert r.hugepages == [("2MB", 0)]
    assert r.devices is not None and len(r.devices) == 1
    assert r.unified == {"memory.high": "max"}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"memory": {"limit": -2}}, "memory.limit must be -1"),
        ({"memory": {"limit": "64m"}}, "memory.limit must be an integer"),
        ({"memory": {"limit": True}}, "memory.limit must be an integer"),
        ({"memory": {"limit": 100 << 20, "swap": 50 << 20}}, "memory+swap limit should be >= memory limit"),
        ({"memory": {"swappiness": 101}}, "invalid memory swappiness value: 101 (valid range is 0-100)"),
        ({"memory": {"disableOOMKiller": 1}}, "memory.disableOOMKiller must be a boolean"),
        ({"cpu": {"shares": -1}}, "the minimum allowed cpu-shares is 2"),
        ({"cpu": {"shares": 1}}, "the minimum allowed cpu-shares is 2"),
        ({"cpu": {"shares": 262145}}, "the maximum allowed cpu-shares is 262144"),
        ({"cpu": {"quota": -5}}, "cpu.quota must be -1"),
        ({"cpu": {"quota": 500}}, "cpu.quota must be at least 1000"),
        ({"cpu": {"period": 999}}, "cpu.period must be between 1000 and 1000000"),
        ({"cpu": {"period": -1}}, "cpu.period must be >= 0"),
        ({"cpu": {"cpus": "0-"}}, "invalid cpu/mem list"),
        ({"cpu": {"idle": 2}}, "cpu.idle must be 0 or 1"),
        ({"pids": {"limit": "10"}}, "pids.limit must be an integer"),
        ({"blockIO": {"weight": 5}}, "blockIO.weight must be between 10 and 1000"),
        ({"blockIO": {"weight": 2000}}, "blockIO.weight must be <= 1000"),
        ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}}, "needs major and minor"),
        ({"blockIO": {"throttleWriteIOPSDevice": [{"major": 8, "minor": 0}]}}, "needs a rate"),
        ({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}, "page size '3MB' is not supported"),
        ({"hugepageLimits": [{"pageSize": "2MB"}]}, "limit is required"),
        ({"devices": [{"allow": True}]}, "device access at 0 field cannot be empty"),
        ({"unified": {"../memory.max": "1"}}, "must be a file name"),
        ({"unified": {"memorymax": "1"}}, "CONTROLLER.PARAMETER"),
        ({"unified": {"memory.max": 1}}, "map file names to strings"),
        ({"memory": []}, "linux.resources.memory must be an object"),
        ([], "linux.resources must be an object"),
    ],
)
def test_bad_values_are_refused_with_clear_messages(obj, message):
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        resources.parse(obj, hugepage_sizes=["2MB", "1GB"])


def test_unset_conventions():
    r = resources.parse({"memory": {"limit": 0, "swappiness": -1}, "cpu": {"shares": 0, "quota": -1}})
    assert r.memory_limit == 0 and r.swappiness is None
    assert r.cpu_shares == 0 and r.cpu_quota == -1
    assert not r.wants_memory()


def test_kernel_memory_is_accepted_but_reported():
    r = resources.parse({"memory": {"kernel": 1 << 20, "kernelTCP": 1 << 20}})
    assert len(r.ignored) == 2 and all("ignored" in m for m in r.ignored)


def test_no_minimum_memory_limit_like_runc():
    # runc has no floor; dockerd's 6 MiB minimum is an API-level check, not the runtime's
    assert resources.parse({"memory": {"limit": 4096}}).memory_limit == 4096
