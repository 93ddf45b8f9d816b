"""Docker API argument parsing: time forms, filters, and the event filter semantics of dockerd."""

from __future__ import annotations

import pytest

from engine.api.docker.events import EVENT_FILTERS, docker_message, matches
from engine.api.docker.filters import parse_filters
from engine.api.docker.timefmt import parse_time_ns
from engine.errors import InvalidArgument
from engine.events.types import DaemonReloaded, Envelope

NOW = 1_700_000_000_000_000_000


@pytest.mark.parametrize("value,expected", [
    ("1700000000", 1_700_000_000_000_000_000),
    ("1700000000.5", 1_700_000_000_500_000_000),
    ("1700000000.000000001", 1_700_000_000_000_000_001),
    ("0", 0),
    ("2023-11-14T22:13:20Z", 1_700_000_000_000_000_000),
    ("2023-11-14T22:13:20.25Z", 1_700_000_000_250_000_000),
    ("2023-11-14T22:13:20.123456789Z", 1_700_000_000_123_456_789),
    ("2023-11-14T23:13:20+01:00", 1_700_000_000_000_000_000),
    ("2023-11-14T22:13:20", 1_700_000_000_000_000_000),
    ("2023-11-14", 1_699_920_000_000_000_000),
    ("10m", NOW - 600_000_000_000),
    ("1h30m", NOW - 5_400_000_000_000),
    ("1.5s", NOW - 1_500_000_000),
])
def test_time_forms(value: str, expected: int) -> None:
    assert parse_time_ns(value, "since", NOW) == expected


@pytest.mark.parametrize("value", ["", "yesterday", "12:00", "2023-13-45", "10x", "1e9", "--1"])
def test_bad_times(value: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid value for since"):
        parse_time_ns(value, "since", NOW)


def test_filters_both_forms() -> None:
    assert parse_filters('{"type":{"daemon":true,"container":false}}', EVENT_FILTERS) == {"type": ["daemon"]}
    assert parse_filters('{"type":["daemon"]}', EVENT_FILTERS) == {"type": ["daemon"]}
    assert parse_filters("", EVENT_FILTERS) == {}
    assert parse_filters(None, EVENT_FILTERS) == {}


@pytest.mark.parametrize("raw,msg", [
    ("{", "invalid filter"),
    ("[]", "expected a JSON object"),
    ('{"nope":{"a":true}}', "invalid filter 'nope'"),
    ('{"type":"daemon"}', "invalid filter 'type'"),
    ('{"type":{"daemon":"yes"}}', "values must map to true"),
    ('{"type":[1]}', "invalid filter 'type'"),
])
def test_bad_filters(raw: str, msg: str) -> None:
    with pytest.raises(InvalidArgument, match=msg):
        parse_filters(raw, EVENT_FILTERS)


def _reload(attrs: dict[str, str]) -> dict:
    env = Envelope(7, NOW, "", "daemon.reloaded", "d1", "signal:SIGHUP", "reload", 1,
                   DaemonReloaded(daemon_id="d1", name="host", attributes=attrs), b"", b"")
    msg = docker_message(env)
    assert msg is not None
    return msg


def test_docker_message_shape() -> None:
    msg = _reload({"labels": "a=b"})
    assert msg == {"Type": "daemon", "Action": "reload",
                   "Actor": {"ID": "d1", "Attributes": {"name": "host", "labels": "a=b"}},
                   "scope": "local", "time": NOW // 10**9, "timeNano": NOW}


def test_event_filter_semantics() -> None:
    msg = _reload({"labels": "a=b", "env": "prod"})
    assert matches(msg, {})
    assert matches(msg, {"type": ["daemon"]})
    assert not matches(msg, {"type": ["container"]})
    assert matches(msg, {"type": ["container", "daemon"]})  # values of one key: alternatives
    assert matches(msg, {"event": ["reload"]}) and not matches(msg, {"event": ["start"]})
    assert matches(msg, {"daemon": ["d1"]}) and matches(msg, {"daemon": ["host"]})
    assert not matches(msg, {"daemon": ["other"]})
    assert matches(msg, {"label": ["env=prod"]}) and matches(msg, {"label": ["env"]})
    assert not matches(msg, {"label": ["env=dev"]})
    assert not matches(msg, {"container": ["d1"]})  # a container filter only passes container events
    assert not matches(msg, {"type": ["daemon"], "event": ["start"]})  # keys: all must match
    assert matches(msg, {"scope": ["local"]}) and not matches(msg, {"scope": ["swarm"]})


def test_events_without_docker_name_are_not_docker_events() -> None:
    from engine.services.namespaces import NamespaceCreated

    env = Envelope(1, NOW, "x", "namespace.created", "x", "t", "api", 1, NamespaceCreated(name="x"), b"", b"")
    assert docker_message(env) is None
