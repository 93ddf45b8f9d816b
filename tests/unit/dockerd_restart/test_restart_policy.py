"""Docker's restart policies: parsing with Docker's messages, the restart decision after an exit and at daemon
start, and the doubling delay that resets after a run of 10 s."""

from __future__ import annotations

import pytest

from engine.errors import InvalidArgument
from engine.services.dockerd.restart import Policy, next_delay, parse, should_restart


def test_parse() -> None:
    assert parse(None) == Policy() and not parse({}).restarts
    assert parse({"Name": "on-failure", "MaximumRetryCount": 3}) == Policy("on-failure", 3)
    assert parse({"Name": "always"}).restarts


@pytest.mark.parametrize(("policy", "match"), [
    ({"Name": "sometimes"}, "unknown policy 'sometimes'"),
    ({"Name": "on-failure", "MaximumRetryCount": -1}, "maximum retry count cannot be negative"),
    ({"Name": "always", "MaximumRetryCount": 2}, "can only be used with 'on-failure'"),
    ({"Name": 3}, "wrong type"),
])
def test_parse_refuses(policy: dict, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        parse(policy)


@pytest.mark.parametrize(("policy", "code", "count", "manual", "start", "want"), [
    (Policy("no"), 1, 0, False, False, False),
    (Policy("always"), 0, 5, False, False, True),
    (Policy("always"), 0, 0, True, False, False),
    (Policy("always"), 0, 0, True, True, True),  # a hand stop lasts until the daemon goes away
    (Policy("unless-stopped"), 0, 0, True, True, False),  # remembered across daemon restarts
    (Policy("unless-stopped"), 3, 0, False, False, True),
    (Policy("on-failure", 3), 1, 2, False, False, True),
    (Policy("on-failure", 3), 1, 3, False, False, False),
    (Policy("on-failure", 3), 0, 0, False, False, False),
    (Policy("on-failure"), 1, 100, False, False, True),
    (Policy("on-failure"), 1, 0, True, False, False),
])
def test_should_restart(policy: Policy, code: int, count: int, manual: bool, start: bool, want: bool) -> None:
    assert should_restart(policy, exit_code=code, restart_count=count, manually_stopped=manual,
                          at_daemon_start=start) is want


def test_delay_doubles_to_a_minute_and_resets() -> None:
    d, seen = 0.0, []
    for _ in range(12):
        d = next_delay(d, 0.5)
        seen.append(d)
    assert seen[:4] == [0.1, 0.2, 0.4, 0.8] and seen[-1] == 60.0
    assert next_delay(60.0, 10.0) == 0.1
