"""Docker health checks: the effective check from image and container settings, Docker's refusals, and the
starting → healthy → unhealthy state machine with its start period, failing streak and 5-entry log."""

from __future__ import annotations

import pytest

from engine.errors import InvalidArgument
from engine.services.dockerd.health import HEALTHY, STARTING, UNHEALTHY, Check, Health, Result, merge

IMAGE = {"Test": ["CMD-SHELL", "test -f /ok"], "Interval": 2_000_000_000, "Retries": 2}


def test_merge() -> None:
    c = merge(IMAGE, None)
    assert c is not None and c.argv() == ["/bin/sh", "-c", "test -f /ok"] and c.interval_ns == 2_000_000_000
    assert c.retries == 2 and c.timeout_ns == 30_000_000_000
    c2 = merge(IMAGE, {"Test": ["CMD", "true"], "Retries": 5})
    assert c2 is not None and c2.argv() == ["true"] and c2.retries == 5 and c2.interval_ns == 2_000_000_000
    assert merge(IMAGE, {"Test": ["NONE"]}) is None  # --no-healthcheck
    assert merge(None, None) is None
    c3 = merge(IMAGE, {"Test": [""], "Interval": 5_000_000})  # --health-interval only: the image's test
    assert c3 is not None and c3.test == ("CMD-SHELL", "test -f /ok") and c3.interval_ns == 5_000_000


@pytest.mark.parametrize(("cfg", "match"), [
    ({"Test": ["CMD", "true"], "Interval": -1}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "Timeout": 10}, "Timeout in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "Retries": -2}, "Retries in Healthcheck cannot be negative"),
    ({"Test": ["WHAT", "x"]}, "unknown Healthcheck type"),
])
def test_refused(cfg: dict, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        merge(None, cfg)


def _r(code: int) -> Result:
    return Result("s", "e", code, "x" * 5000)


def test_state_machine() -> None:
    check = Check(("CMD", "true"), retries=2)
    h = Health()
    assert not h.record(check, _r(1), in_start_period=True) and h.status == STARTING and h.failing_streak == 0
    assert h.record(check, _r(0), in_start_period=True) and h.status == HEALTHY
    assert not h.record(check, _r(1), in_start_period=False) and h.failing_streak == 1
    assert h.record(check, _r(1), in_start_period=False) and h.status == UNHEALTHY
    for _ in range(5):
        h.record(check, _r(1), in_start_period=False)
    d = h.docker()
    assert len(d["Log"]) == 5 and len(d["Log"][0]["Output"]) == 4096 and d["FailingStreak"] == 7
    assert h.record(check, _r(0), in_start_period=False) and h.failing_streak == 0
