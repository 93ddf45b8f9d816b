"""docker-py (the `docker` package) against engine's Docker API socket: ping, version, info, events with
since/until/filters/decode, live events, and API errors surfacing as docker.errors.APIError."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import docker
import pytest
from dockerapi_util import events_listeners, journal, reload, reload_daemon, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shared_daemon():  # type: ignore[no-untyped-def]
    d = reload_daemon()
    try:
        yield d.start()
    finally:
        d.cleanup()


@pytest.fixture
def client(shared_daemon):  # type: ignore[no-untyped-def]
    c = docker.DockerClient(base_url=shared_daemon.docker_host, timeout=30)
    try:
        yield c
    finally:
        c.close()


def test_ping_version_info(client, shared_daemon) -> None:
    assert client.ping() is True
    v = client.version()
    assert v["ApiVersion"] == "1.50" and v["MinAPIVersion"] == "1.24"
    assert v["Components"][0]["Name"] == "Engine"
    info = client.info()
    assert info["ID"] == journal(shared_daemon)[0]["subject"]
    assert info["Labels"] == ["e2e=docker"]


def test_from_env_with_auto_version(shared_daemon) -> None:
    c = docker.from_env(environment={"DOCKER_HOST": shared_daemon.docker_host}, version="auto")
    try:
        assert c.api.api_version == "1.50"
        assert c.version()["ApiVersion"] == "1.50"
    finally:
        c.close()


@pytest.mark.parametrize("version", ["1.24", "1.41", "1.50"])
def test_pinned_api_versions(shared_daemon, version: str) -> None:
    api = docker.APIClient(base_url=shared_daemon.docker_host, version=version)
    try:
        assert api.ping() is True
        assert api.version()["ApiVersion"] == "1.50"
        assert api.info()["OSType"] == "linux"
    finally:
        api.close()


def test_too_new_api_version_is_an_api_error(shared_daemon) -> None:
    api = docker.APIClient(base_url=shared_daemon.docker_host, version="1.51")
    try:
        with pytest.raises(docker.errors.APIError) as err:
            api.version()
        assert err.value.status_code == 400
        assert "client version 1.51 is too new" in str(err.value.explanation)
    finally:
        api.close()


def test_events_since_until_decode_filters(client, shared_daemon) -> None:
    t0 = datetime.now(UTC)
    first = reload(shared_daemon)
    second = reload(shared_daemon)
    # docker-py sends datetimes as whole seconds: wait until the whole-second `until` is past
    until_s = second["time_ns"] // 1_000_000_000 + 1
    time.sleep(max(0.0, until_s - time.time() + 0.01))
    got = list(client.events(since=t0, until=datetime.fromtimestamp(until_s, UTC), decode=True))
    assert [e["timeNano"] for e in got][-2:] == [first["time_ns"], second["time_ns"]]
    assert all(e["Type"] == "daemon" and e["Action"] == "reload" for e in got)
    # unix seconds with a fraction, through the low-level client, with filters
    since, until = first["time_ns"] / 1e9 - 0.0001, second["time_ns"] / 1e9 + 0.0001
    got = list(client.api.events(since=since, until=until, decode=True, filters={"type": "daemon", "event": "reload"}))
    assert [e["timeNano"] for e in got] == [first["time_ns"], second["time_ns"]]
    got = list(client.api.events(since=since, until=until, decode=True, filters={"type": "container"}))
    assert got == []


def test_events_bad_input_is_a_400_with_a_message(client) -> None:
    # docker-py's events() turns any OSError (APIError is one) into the end of the stream, so the
    # status is checked on the response it would have read
    url = client.api._url("/events")
    for params, needle in (({"filters": '{"nonsense": ["x"]}', "until": "1"}, "invalid filter 'nonsense'"),
                           ({"since": "abc"}, "invalid value for since"),
                           ({"since": "20", "until": "10"}, "`since` time must be before `until` time")):
        resp = client.api._get(url, params=params)
        assert resp.status_code == 400, params
        assert needle in resp.json()["message"]
        with pytest.raises(docker.errors.APIError) as err:
            client.api._raise_for_status(resp)
        assert needle in str(err.value.explanation)
    assert list(client.api.events(since=0, until=1, decode=True, filters={"nonsense": "x"})) == []


def test_live_events_and_close(client, shared_daemon) -> None:
    before = events_listeners(shared_daemon)
    stream = client.events(decode=True, filters={"type": "daemon"})
    got: list[dict] = []
    reader = threading.Thread(target=lambda: got.extend([next(stream)]), daemon=True)
    reader.start()
    wait_for(lambda: events_listeners(shared_daemon) > before, what="docker-py to subscribe")
    ev = reload(shared_daemon)
    reader.join(10)
    assert [e["timeNano"] for e in got] == [ev["time_ns"]]
    stream.close()
    wait_for(lambda: events_listeners(shared_daemon) == before, what="the subscription to end with the stream")
