"""Shared fixtures: `engine_daemon` (an isolated daemon per test) and `shared_daemon` (one per module
for tests that only read or create uniquely named objects)."""

from __future__ import annotations

import ctypes
import os

import pytest

from tests.harness import EngineDaemon

PR_SET_CHILD_SUBREAPER = 36


def pytest_configure(config: pytest.Config) -> None:
    # PID 1 here does not reap promptly: adopt orphans (daemons, shims) so tests can wait for them.
    if os.geteuid() == 0:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name in ("engine_daemon", "shared_daemon", "d"):
            daemon = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if isinstance(daemon, EngineDaemon):
                report.sections.append((f"{name} log", daemon.log()))


@pytest.fixture
def engine_daemon():  # type: ignore[no-untyped-def]
    d = EngineDaemon()
    try:
        yield d.start()
    finally:
        d.cleanup()


@pytest.fixture(scope="module")
def shared_daemon():  # type: ignore[no-untyped-def]
    d = EngineDaemon()
    try:
        yield d.start()
    finally:
        d.cleanup()


@pytest.fixture
def daemon_factory():  # type: ignore[no-untyped-def]
    made: list[EngineDaemon] = []

    def make(*extra: str, start: bool = True) -> EngineDaemon:
        d = EngineDaemon(list(extra))
        made.append(d)
        return d.start() if start else d

    try:
        yield make
    finally:
        for d in made:
            d.cleanup()
