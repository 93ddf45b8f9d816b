"""Docker health checks: the configuration (image HEALTHCHECK merged with ``--health-*``), and the state
machine that turns probe results into ``State.Health``.

Rules restated from Docker's: a probe is ``CMD`` (argv), ``CMD-SHELL`` (``/bin/sh -c``) or ``NONE``
(disabled; ``--no-healthcheck``); durations are nanoseconds with defaults interval 30 s, timeout 30 s,
start period 0, start interval 5 s, retries 3, and a value set but below 1 ms is refused. The status starts
as ``starting``; a success makes it ``healthy`` and resets the failing streak; a failure during the start
period does not count; otherwise ``retries`` consecutive failures make it ``unhealthy``. A probe that
outlives its timeout fails with exit code -1. The log keeps the last 5 results, each output cut to
4096 bytes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidArgument

DEFAULT_INTERVAL_NS = 30_000_000_000
DEFAULT_TIMEOUT_NS = 30_000_000_000
DEFAULT_START_INTERVAL_NS = 5_000_000_000
DEFAULT_RETRIES = 3
MIN_DURATION_NS = 1_000_000
LOG_ENTRIES = 5
MAX_OUTPUT = 4096

STARTING, HEALTHY, UNHEALTHY, NONE = "starting", "healthy", "unhealthy", "none"


@dataclass(frozen=True)
class Check:
    test: tuple[str, ...]
    interval_ns: int = DEFAULT_INTERVAL_NS
    timeout_ns: int = DEFAULT_TIMEOUT_NS
    start_period_ns: int = 0
    start_interval_ns: int = DEFAULT_START_INTERVAL_NS
    retries: int = DEFAULT_RETRIES

    def argv(self) -> list[str]:
        if self.test[0] == "CMD-SHELL":
            return ["/bin/sh", "-c", self.test[1]]
        return list(self.test[1:])


def _duration(cfg: dict[str, Any], key: str) -> int:
    v = cfg.get(key) or 0
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidArgument(f"{key} in Healthcheck must be an integer (nanoseconds)")
    if v != 0 and v < MIN_DURATION_NS:
        raise InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    return v


def validate(cfg: dict[str, Any] | None) -> None:
    """Docker's checks on a ``Config.Healthcheck`` at container create (400 on failure)."""
    if not cfg:
        return
    if not isinstance(cfg, dict):
        raise InvalidArgument("Healthcheck must be an object")
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        _duration(cfg, key)
    retries = cfg.get("Retries") or 0
    if not isinstance(retries, int) or retries < 0:
        raise InvalidArgument("Retries in Healthcheck cannot be negative")
    test = cfg.get("Test")
    if test is not None and (not isinstance(test, list) or not all(isinstance(x, str) for x in test)):
        raise InvalidArgument("Test in Healthcheck must be a list of strings")
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL", ""):
        raise InvalidArgument(f"unknown Healthcheck type '{test[0]}'")


def merge(image: dict[str, Any] | None, container: dict[str, Any] | None) -> Check | None:
    """The effective check: the container's fields override the image's; None when there is none or NONE."""
    image, container = dict(image or {}), dict(container or {})
    validate(container)
    test = container.get("Test") or image.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    if test[0] == "":  # inherit the image's test
        test = image.get("Test") or []
        if not test or test[0] == "NONE":
            return None
    if test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2:
        raise InvalidArgument(f"invalid Healthcheck test {test!r}")

    def pick(key: str, default: int) -> int:
        return container.get(key) or image.get(key) or default

    return Check(tuple(test), pick("Interval", DEFAULT_INTERVAL_NS), pick("Timeout", DEFAULT_TIMEOUT_NS),
                 pick("StartPeriod", 0), pick("StartInterval", DEFAULT_START_INTERVAL_NS),
                 pick("Retries", DEFAULT_RETRIES))


@dataclass
class Result:
    start: str  # RFC 3339 with nanoseconds
    end: str
    exit_code: int
    output: str

    def docker(self) -> dict[str, Any]:
        return {"Start": self.start, "End": self.end, "ExitCode": self.exit_code, "Output": self.output}


@dataclass
class Health:
    status: str = STARTING
    failing_streak: int = 0
    log: deque[Result] = field(default_factory=lambda: deque(maxlen=LOG_ENTRIES))

    def record(self, check: Check, r: Result, *, in_start_period: bool) -> bool:
        """Add a probe result; True when the status changed."""
        r.output = r.output[:MAX_OUTPUT]
        self.log.append(r)
        before = self.status
        if r.exit_code == 0:
            self.failing_streak = 0
            self.status = HEALTHY
        elif not (in_start_period and self.status == STARTING):
            self.failing_streak += 1
            if self.failing_streak >= check.retries:
                self.status = UNHEALTHY
        return self.status != before

    def docker(self) -> dict[str, Any]:
        return {"Status": self.status, "FailingStreak": self.failing_streak, "Log": [r.docker() for r in self.log]}
