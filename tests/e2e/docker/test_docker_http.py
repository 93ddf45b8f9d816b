"""The Docker Engine API socket at the HTTP level: what the docker CLI and docker-py rely on, and bad input.

Raw sockets and http.client against one daemon per module: ping headers, version prefixes, 404/405
shapes, filters and since/until validation, backlog-then-close for a past `until`, keep-alive, a
malformed request, and a client that walks away from /events freeing its subscription.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from dockerapi_util import (
    connect,
    dechunk,
    events_listeners,
    journal,
    raw,
    read_until_close,
    read_until_last_chunk,
    reload,
    reload_daemon,
    split_response,
    wait_for,
)

from tests.harness import UnixHTTPConnection

pytestmark = pytest.mark.e2e

PING_HEADERS = {"api-version": "1.50", "ostype": "linux", "docker-experimental": "false", "builder-version": "1",
                "swarm": "inactive"}


@pytest.fixture(scope="module")
def shared_daemon():  # type: ignore[no-untyped-def]
    d = reload_daemon()
    try:
        yield d.start()
    finally:
        d.cleanup()


@pytest.fixture(scope="module")
def reloads(shared_daemon):  # type: ignore[no-untyped-def]
    """Two `daemon reload` events in the journal, 50 ms apart."""
    first = reload(shared_daemon)
    time.sleep(0.05)
    second = reload(shared_daemon)
    return first, second


def get(d, path: str, method: str = "GET", headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    conn = UnixHTTPConnection(d.docker_sock, 10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def events(d, **query: str) -> list[dict]:  # type: ignore[no-untyped-def]
    qs = "&".join(f"{k}={quote(v)}" for k, v in query.items())
    status, headers, body = get(d, f"/v1.50/events?{qs}")
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def rfc3339(ns: int) -> str:
    sec, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:09d}Z"


def unix_frac(ns: int) -> str:
    sec, rest = divmod(ns, 1_000_000_000)
    return f"{sec}.{rest:09d}"


# ---- /_ping and versions ----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/v1.24", "/v1.41", "/v1.50"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_ping_headers(shared_daemon, prefix: str, method: str) -> None:
    status, headers, body = get(shared_daemon, f"{prefix}/_ping", method)
    assert status == 200
    for k, v in PING_HEADERS.items():
        assert headers.get(k) == v, (k, headers)
    assert headers["content-type"].startswith("text/plain")
    assert body == (b"OK" if method == "GET" else b"")


@pytest.mark.parametrize("v", [f"1.{n}" for n in range(24, 51)])
def test_every_supported_version_is_accepted(shared_daemon, v: str) -> None:
    status, _, body = get(shared_daemon, f"/v{v}/version")
    assert status == 200, body
    doc = json.loads(body)
    assert doc["ApiVersion"] == "1.50" and doc["MinAPIVersion"] == "1.24"


@pytest.mark.parametrize("v", ["1.23", "1.12", "0.9"])
def test_too_old_version_is_refused(shared_daemon, v: str) -> None:
    for path in (f"/v{v}/version", f"/v{v}/_ping"):
        status, headers, body = get(shared_daemon, path)
        assert status == 400
        assert headers["content-type"] == "application/json"
        msg = json.loads(body)["message"]
        assert msg.startswith(f"client version {v} is too old. Minimum supported API version is 1.24"), msg


@pytest.mark.parametrize("v", ["1.51", "2.0"])
def test_too_new_version_is_refused(shared_daemon, v: str) -> None:
    status, _, body = get(shared_daemon, f"/v{v}/version")
    assert status == 400
    assert f"client version {v} is too new" in json.loads(body)["message"]


@pytest.mark.parametrize("path", ["/nope", "/v1.50/nope", "/containers/json/extra/x", "/v1.50/", "/"])
def test_unknown_path_is_404_page_not_found(shared_daemon, path: str) -> None:
    status, headers, body = get(shared_daemon, path)
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"message": "page not found"}


@pytest.mark.parametrize("method,path", [("POST", "/_ping"), ("DELETE", "/v1.50/version"), ("PUT", "/info"),
                                         ("POST", "/events")])
def test_wrong_method_is_an_error_with_a_message(shared_daemon, method: str, path: str) -> None:
    status, headers, body = get(shared_daemon, path, method)
    assert status in (404, 405)
    assert headers["content-type"] == "application/json"
    assert isinstance(json.loads(body)["message"], str) and json.loads(body)["message"]


def test_version_and_info_documents(shared_daemon) -> None:
    status, _, body = get(shared_daemon, "/version")
    assert status == 200
    v = json.loads(body)
    assert v["ApiVersion"] == "1.50" and v["MinAPIVersion"] == "1.24" and v["Os"] == "linux"
    assert v["Components"][0]["Name"] == "Engine"
    status, _, body = get(shared_daemon, "/v1.50/info")
    assert status == 200
    info = json.loads(body)
    assert info["DockerRootDir"] == str(shared_daemon.root)
    assert info["Containerd"]["Address"] == shared_daemon.containerd_sock
    assert info["OSType"] == "linux" and info["NCPU"] >= 1 and info["MemTotal"] > 0
    assert info["Labels"] == ["e2e=docker"]
    first = journal(shared_daemon)[0]
    assert first["type"] == "daemon.initialized"
    assert info["ID"] == first["subject"]


# ---- /events: validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("filters,needle", [
    ("nope", "invalid filter"),
    ("{\"type\":", "invalid filter"),
    ("[1, 2]", "invalid filter"),
    ("{\"foo\": {\"bar\": true}}", "invalid filter 'foo'"),
    ("{\"type\": \"daemon\"}", "invalid filter 'type'"),
    ("{\"type\": {\"daemon\": \"yes\"}}", "invalid filter 'type'"),
    ("{\"type\": [1]}", "invalid filter 'type'"),
    ("{\"type\": {\"spaceship\": true}}", "spaceship"),
])
def test_bad_event_filters_are_400(shared_daemon, filters: str, needle: str) -> None:
    last = journal(shared_daemon)[-1]["seq"]
    status, headers, body = get(shared_daemon, f"/events?until=0&filters={quote(filters)}")
    assert status == 400, body
    assert headers["content-type"] == "application/json"
    assert needle in json.loads(body)["message"]
    assert journal(shared_daemon)[-1]["seq"] == last  # nothing written


@pytest.mark.parametrize("query,needle", [
    ("since=abc", "since"),
    ("until=yesterday", "until"),
    ("since=12:00", "since"),
    ("until=1e9", "until"),
    ("since=1.2.3", "since"),
    ("since=20&until=10", "`since` time must be before `until` time"),
    ("since=2030-01-01T00:00:00Z&until=2029-01-01T00:00:00Z", "`since` time must be before `until` time"),
])
def test_bad_since_until_is_400(shared_daemon, query: str, needle: str) -> None:
    status, _, body = get(shared_daemon, f"/events?{query}")
    assert status == 400, body
    assert needle in json.loads(body)["message"]


# ---- /events: content ----------------------------------------------------------------------------------


def test_events_past_until_returns_the_backlog_and_closes(shared_daemon, reloads) -> None:
    first, second = reloads
    t0 = time.monotonic()
    got = events(shared_daemon, since="0", until=unix_frac(time.time_ns()))
    assert time.monotonic() - t0 < 5
    mine = [e for e in got if e["Actor"]["ID"] == first["subject"]]
    assert [e["timeNano"] for e in mine][-2:] == [first["time_ns"], second["time_ns"]]
    msg = mine[-1]
    assert msg["Type"] == "daemon" and msg["Action"] == "reload" and msg["scope"] == "local"
    assert msg["time"] == second["time_ns"] // 1_000_000_000
    assert msg["Actor"]["Attributes"]["labels"] == "e2e=docker"
    assert "name" in msg["Actor"]["Attributes"]
    assert "status" not in msg and "id" not in msg  # the legacy fields are for container/image only
    # every line is a full Docker message
    for e in got:
        assert set(e) >= {"Type", "Action", "Actor", "scope", "time", "timeNano"}


def test_events_since_as_unix_seconds_with_fraction(shared_daemon, reloads) -> None:
    first, second = reloads
    until = unix_frac(second["time_ns"] + 1_000_000)
    got = events(shared_daemon, since=unix_frac(first["time_ns"] + 1000), until=until)
    assert [e["timeNano"] for e in got] == [second["time_ns"]]
    got = events(shared_daemon, since=unix_frac(first["time_ns"] - 1000), until=until)
    assert [e["timeNano"] for e in got] == [first["time_ns"], second["time_ns"]]
    got = events(shared_daemon, since=unix_frac(first["time_ns"] - 1000), until=unix_frac(second["time_ns"] - 1000))
    assert [e["timeNano"] for e in got] == [first["time_ns"]]


def test_events_since_as_rfc3339(shared_daemon, reloads) -> None:
    first, second = reloads
    until = rfc3339(second["time_ns"] + 1_000_000)
    got = events(shared_daemon, since=rfc3339(first["time_ns"] + 1000), until=until)
    assert [e["timeNano"] for e in got] == [second["time_ns"]]
    got = events(shared_daemon, since=rfc3339(first["time_ns"] - 1000), until=until)
    assert [e["timeNano"] for e in got] == [first["time_ns"], second["time_ns"]]
    # with a numeric zone offset instead of Z
    sec = first["time_ns"] // 1_000_000_000
    local = datetime.fromtimestamp(sec - 1, UTC).astimezone(timezone(timedelta(hours=2)))
    local_text = local.strftime("%Y-%m-%dT%H:%M:%S+02:00")
    got = events(shared_daemon, since=local_text, until=until)
    assert first["time_ns"] in [e["timeNano"] for e in got]


@pytest.mark.parametrize("filters,expect", [
    ({"type": {"daemon": True}}, True),
    ({"type": ["daemon"]}, True),
    ({"type": {"container": True}}, False),
    ({"event": {"reload": True}}, True),
    ({"event": {"start": True}}, False),
    ({"type": {"daemon": True}, "event": {"reload": True}}, True),
    ({"type": {"daemon": True}, "event": {"die": True}}, False),
    ({"label": {"labels=e2e=docker": True}}, True),  # the reload's attributes are its labels, as in dockerd
    ({"label": {"labels": True}}, True),
    ({"label": {"labels=e2e=other": True}}, False),
    ({"label": {"e2e=docker": True}}, False),
    ({"scope": {"local": True}}, True),
    ({"scope": {"swarm": True}}, False),
])
def test_events_filters(shared_daemon, reloads, filters: dict, expect: bool) -> None:
    first, second = reloads
    got = events(shared_daemon, since=unix_frac(first["time_ns"] - 1000),
                 until=unix_frac(second["time_ns"] + 1000), filters=json.dumps(filters))
    assert bool(got) == expect, got
    if expect:
        assert [e["timeNano"] for e in got] == [first["time_ns"], second["time_ns"]]


def test_events_with_future_until_streams_live_then_closes(shared_daemon) -> None:
    until_ns = time.time_ns() + 2_500_000_000
    with connect(shared_daemon) as s:
        s.sendall(f"GET /v1.50/events?until={unix_frac(until_ns)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        # the stream's headers come at once, before any event
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"transfer-encoding: chunked" in head.lower()
        wait_for(lambda: events_listeners(shared_daemon) >= 1, what="the subscription")
        ev = reload(shared_daemon)
        data = read_until_last_chunk(s, head)
        t_end = time.time_ns()
        # the stream ended, the connection did not: it serves the next request
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200 OK")
    payload, done = dechunk(data.partition(b"\r\n\r\n")[2])
    assert done, "the stream must end with the zero chunk at `until`"
    assert t_end >= until_ns - 50_000_000
    lines = [json.loads(x) for x in payload.splitlines() if x.strip()]
    assert [e["timeNano"] for e in lines] == [ev["time_ns"]]


# ---- the HTTP layer ---------------------------------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(shared_daemon) -> None:
    conn = UnixHTTPConnection(shared_daemon.docker_sock, 10)
    try:
        conn.request("GET", "/_ping")
        r1 = conn.getresponse()
        assert r1.status == 200 and r1.read() == b"OK"
        sock = conn.sock
        conn.request("GET", "/v1.50/version")
        r2 = conn.getresponse()
        assert r2.status == 200 and json.loads(r2.read())["ApiVersion"] == "1.50"
        conn.request("GET", "/nope")
        r3 = conn.getresponse()
        assert r3.status == 404 and json.loads(r3.read()) == {"message": "page not found"}
        conn.request("GET", "/_ping")
        assert conn.getresponse().read() == b"OK"
        assert conn.sock is sock, "http.client reconnected: the daemon closed a keep-alive connection"
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(shared_daemon) -> None:
    data = raw(shared_daemon, b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"
                              b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                              b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"200", b"404", b"200"]


def test_http10_without_keep_alive_is_closed_after_the_response(shared_daemon) -> None:
    data = raw(shared_daemon, b"GET /_ping HTTP/1.0\r\n\r\n", timeout=5)
    status, _, body = split_response(data)
    assert status == 200 and body == b"OK"


@pytest.mark.parametrize("junk", [
    b"GARBAGE\r\n\r\n",
    b"GET /_ping HTTP/9.9.9\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n",  # a TLS hello on the plain socket
])
def test_malformed_request_gets_400_and_the_connection_closed(shared_daemon, junk: bytes) -> None:
    t0 = time.monotonic()
    data = raw(shared_daemon, junk, timeout=5)
    assert time.monotonic() - t0 < 4, "the daemon kept a broken connection open"
    status, headers, body = split_response(data)
    assert status == 400, data
    assert headers.get("connection") == "close"
    assert "message" in json.loads(body)
    # and the daemon is fine
    assert shared_daemon.request("GET", "/_ping")[0] == 200


def test_disconnect_mid_stream_frees_the_subscription(shared_daemon) -> None:
    base = events_listeners(shared_daemon)
    socks = []
    try:
        for path in ("/events", "/v1.41/events?filters=%7B%22type%22%3A%7B%22daemon%22%3Atrue%7D%7D",
                     "/engine/journal?follow=1"):
            s = connect(shared_daemon)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            socks.append(s)
        wait_for(lambda: events_listeners(shared_daemon) == base + 3, what="three listeners")
        socks.pop().close()
        wait_for(lambda: events_listeners(shared_daemon) == base + 2, what="a listener to go")
    finally:
        for s in socks:
            s.close()
    wait_for(lambda: events_listeners(shared_daemon) == base, what="every listener to go")
    # a live event after the clients left does not trip over their dead connections
    reload(shared_daemon)
    assert shared_daemon.request("GET", "/_ping")[0] == 200


def test_huge_headers_are_refused(shared_daemon) -> None:
    data = raw(shared_daemon, b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
    status, headers, body = split_response(data)
    assert status == 400 and headers.get("connection") == "close"
    assert "headers larger than" in json.loads(body)["message"]


def test_a_request_answered_before_its_body_arrives_keeps_the_connection_usable(shared_daemon) -> None:
    with connect(shared_daemon, timeout=5) as s:
        s.sendall(b"POST /v1.50/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 404")  # answered without waiting for the body
        s.sendall(b"hello")
        time.sleep(0.05)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"OK"), reply


def test_an_unread_large_body_does_not_stall_the_connection(shared_daemon) -> None:
    body = b"x" * (5 << 20)  # far beyond what the server buffers for a handler that never reads it
    out = b""
    with connect(shared_daemon, timeout=10) as s:
        sender = threading.Thread(target=s.sendall, args=(
            b"POST /engine/journal/verify HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            + b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",), daemon=True)
        sender.start()
        while chunk := s.recv(65536):
            out += chunk
        sender.join(10)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", out) == [b"200", b"200"]
    assert out.endswith(b"OK")


def test_a_request_pipelined_behind_a_stream_is_answered_after_it(shared_daemon) -> None:
    until = unix_frac(time.time_ns() + 500_000_000)
    data = raw(shared_daemon, f"GET /events?until={until} HTTP/1.1\r\nHost: x\r\n\r\n"
                              "GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", data) == [b"200", b"200"]
    first, _, second = data.partition(b"\r\n0\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in first and second.endswith(b"OK")


def test_post_with_a_body_then_get_on_one_connection(shared_daemon) -> None:
    conn = UnixHTTPConnection(shared_daemon.docker_sock, 10)
    try:
        conn.request("POST", "/engine/journal/verify", body=b'{"ignored": true}',
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["ok"] is True
        conn.request("GET", "/_ping")
        assert conn.getresponse().read() == b"OK"
    finally:
        conn.close()


def test_events_since_and_until_are_inclusive_to_the_nanosecond(shared_daemon, reloads) -> None:
    first, second = reloads
    got = events(shared_daemon, since=unix_frac(first["time_ns"]), until=unix_frac(second["time_ns"]))
    assert [e["timeNano"] for e in got] == [first["time_ns"], second["time_ns"]]
    got = events(shared_daemon, since=unix_frac(first["time_ns"] + 1), until=unix_frac(second["time_ns"] - 1))
    assert got == []
    got = events(shared_daemon, since=rfc3339(first["time_ns"]), until=rfc3339(first["time_ns"]))
    assert [e["timeNano"] for e in got] == [first["time_ns"]]


def test_events_daemon_filter_by_id_and_name(shared_daemon, reloads) -> None:
    first, second = reloads
    window = {"since": unix_frac(first["time_ns"]), "until": unix_frac(second["time_ns"])}
    name = events(shared_daemon, **window)[0]["Actor"]["Attributes"]["name"]
    for value, expect in ((first["subject"], 2), (first["subject"][:8], 2), (name, 2), ("not-this-daemon", 0)):
        got = events(shared_daemon, **window, filters=json.dumps({"daemon": {value: True}}))
        assert len(got) == expect, value


def test_events_since_0_gives_the_backlog_then_live_without_a_gap(shared_daemon, reloads) -> None:
    backlog = events(shared_daemon, since="0", until=unix_frac(time.time_ns()))
    with connect(shared_daemon) as s:
        s.sendall(b"GET /v1.50/events?since=0&filters=%7B%22type%22%3A%7B%22daemon%22%3Atrue%7D%7D HTTP/1.1\r\n"
                  b"Host: x\r\n\r\n")
        buf = b""
        want = len(backlog) + 1
        ev = None
        while buf.count(b"}\n") < want:
            if ev is None and buf.count(b"}\n") >= len(backlog):
                ev = reload(shared_daemon)  # a live one, once the whole backlog is in
            chunk = s.recv(65536)
            assert chunk, buf
            buf += chunk
    payload, _ = dechunk(buf.partition(b"\r\n\r\n")[2])
    got = [json.loads(x) for x in payload.splitlines() if x.strip()]
    assert [e["timeNano"] for e in got] == [e["timeNano"] for e in backlog] + [ev["time_ns"]]


@pytest.mark.parametrize("query,needle", [
    ("from_seq=-1", "from_seq must not be negative"),
    ("to_seq=abc", "to_seq must be an integer"),
    ("tail=x", "tail must be an integer"),
    ("since=whenever", "invalid value for since"),
    ("until=1.2.3", "invalid value for until"),
])
def test_engine_journal_bad_query_is_400(shared_daemon, query: str, needle: str) -> None:
    status, headers, body = get(shared_daemon, f"/engine/journal?{query}")
    assert status == 400 and headers["content-type"] == "application/json"
    assert needle in json.loads(body)["message"]


def test_engine_journal_queries(shared_daemon, reloads) -> None:
    first, second = reloads
    every = journal(shared_daemon)
    assert [e["seq"] for e in every] == list(range(1, len(every) + 1))
    assert journal(shared_daemon, "tail=1") == every[-1:]
    reloaded = journal(shared_daemon, "type=daemon.reloaded")
    assert reloaded == [e for e in every if e["type"] == "daemon.reloaded"] and first in reloaded
    assert journal(shared_daemon, "type=daemon.reloaded&tail=2") == reloaded[-2:]
    assert journal(shared_daemon, f"from_seq={first['seq']}&to_seq={first['seq']}") == [first]
    assert journal(shared_daemon, "actor=signal:SIGHUP&type=daemon.*")[0]["type"] == "daemon.reloaded"
    assert journal(shared_daemon, "type=nothing.matches") == []
    for e in every:  # the chain, as served
        assert len(e["hash"]) == 64
    for prev, cur in zip(every, every[1:], strict=False):
        assert cur["prev_hash"] == prev["hash"]


def test_many_concurrent_clients(shared_daemon) -> None:
    errors: list[str] = []

    def client(n: int) -> None:
        conn = UnixHTTPConnection(shared_daemon.docker_sock, 20)
        try:
            for i in range(40):
                path = ("/_ping", "/v1.44/version", "/nope", "/info")[(n + i) % 4]
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                want = 404 if path == "/nope" else 200
                if r.status != want or (path == "/_ping" and body != b"OK"):
                    errors.append(f"{path}: {r.status} {body[:80]!r}")
        except Exception as err:  # noqa: BLE001
            errors.append(repr(err))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]


def test_head_on_a_streaming_route_has_no_body_and_keeps_the_connection(shared_daemon) -> None:
    conn = UnixHTTPConnection(shared_daemon.docker_sock, 5)
    try:
        for path in ("/events", "/v1.50/events?since=0&until=1", "/engine/journal?follow=1", "/events?since=abc"):
            conn.request("HEAD", path)
            r = conn.getresponse()
            assert r.read() == b""
            assert r.status == (400 if "abc" in path else 200), path
            conn.request("GET", "/_ping")  # the next response parses: nothing was left on the wire
            r = conn.getresponse()
            assert (r.status, r.read()) == (200, b"OK"), path
    finally:
        conn.close()
    wait_for(lambda: events_listeners(shared_daemon) == 0, what="no subscription left by HEAD")


def test_an_endless_request_target_is_refused(shared_daemon) -> None:
    with connect(shared_daemon, timeout=10) as s:
        s.sendall(b"GET /_ping?x=")
        sent = 0
        try:
            while sent < (8 << 20):  # the daemon must give up long before this
                s.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = read_until_close(s)
    status, _, body = split_response(data)
    assert status == 400 and "request target longer than" in json.loads(body)["message"]
