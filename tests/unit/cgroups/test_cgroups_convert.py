"""Value conversions between OCI resources and cgroup files (runc's formulas)."""

import re

import pytest

from engine.errors import InvalidArgument
from engine.runtime.cgroups import convert


@pytest.mark.parametrize(
    ("shares", "weight"),
    [
        (0, 0),  # unset stays unset
        (1, 1),  # below the kernel minimum
        (2, 1),
        (3, 2),
        (1024, 100),  # the two defaults map onto each other
        (262143, 10000),
        (262144, 10000),
        (262145, 10000),
    ],
)
def test_shares_to_weight_matches_runc_table(shares, weight):
    assert convert.shares_to_weight(shares) == weight


def test_shares_to_weight_is_monotonic_and_in_range():
    prev = 0
    for shares in range(2, 262145, 97):
        w = convert.shares_to_weight(shares)
        assert 1 <= w <= 10000
        assert w >= prev
        prev = w


@pytest.mark.parametrize(("blkio", "io"), [(0, 0), (10, 1), (100, 910), (500, 4950), (1000, 10000)])
def test_blkio_weight_to_io_weight(blkio, io):
    assert convert.blkio_weight_to_io_weight(blkio) == io


@pytest.mark.parametrize(
    ("swap", "limit", "expected"),
    [
        (0, 0, 0),
        (-1, 0, -1),
        (-1, -1, -1),
        (0, -1, -1),  # unlimited memory and no swap given: unlimited swap, like v1
        (-1, 1000, -1),
        (1000, 1000, 0),  # memory+swap == memory: no swap
        (500, 200, 300),
        (500, -1, 500),
    ],
)
def test_swap_to_v2(swap, limit, expected):
    assert convert.swap_to_v2(swap, limit) == expected


@pytest.mark.parametrize(
    ("swap", "limit", "message"),
    [
        (300, 400, "memory+swap limit should be >= memory limit"),
        (300, 0, "unable to set swap limit without memory limit"),
        (300, -5, "invalid memory value"),
    ],
)
def test_swap_to_v2_errors(swap, limit, message):
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        convert.swap_to_v2(swap, limit)


@pytest.mark.parametrize(
    ("quota", "period", "line"),
    [
        (50000, 100000, "50000 100000"),
        (-1, 0, "max 100000"),
        (0, 2000, "max 2000"),
        (25000, 0, "25000 100000"),
    ],
)
def test_cpu_max_format(quota, period, line):
    assert convert.cpu_max(quota, period) == line
    q, p = convert.parse_cpu_max(line)
    assert p == (period or 100000)
    assert q == (quota if quota > 0 else -1)


def test_pids_max_keeps_zero_and_maps_negative_to_max():
    assert convert.pids_max(-1) == "max"
    assert convert.pids_max(-5) == "max"
    assert convert.pids_max(0) == "0"
    assert convert.pids_max(64) == "64"


def test_num_or_max():
    assert convert.num_or_max(-1) == "max"
    assert convert.num_or_max(4096) == "4096"


@pytest.mark.parametrize(("text", "cpus"), [("0-3,7", [0, 1, 2, 3, 7]), ("1", [1]), ("", []), ("0-0", [0])])
def test_parse_cpu_list(text, cpus):
    assert convert.parse_cpu_list(text) == cpus


@pytest.mark.parametrize("bad", ["a", "3-1", "1,,2", "-1", "1-", "0 1"])
def test_parse_cpu_list_rejects(bad):
    with pytest.raises(InvalidArgument):
        convert.parse_cpu_list(bad)
