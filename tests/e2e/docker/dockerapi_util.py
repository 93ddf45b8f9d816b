"""Helpers shared by the Docker API e2e tests: a daemon with a daemon.json (so SIGHUP makes `daemon reload`
events), raw-socket requests for what http.client will not send, and chunked-stream readers."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from typing import Any

from tests.harness import EngineDaemon


def reload_daemon() -> EngineDaemon:
    """A not-yet-started daemon with a daemon.json, so SIGHUP reloads it and journals a reload."""
    d = EngineDaemon()
    d.base.mkdir(parents=True, exist_ok=True)
    cfg = d.base / "daemon.json"
    cfg.write_text(json.dumps({"labels": ["e2e=docker"]}))
    d.extra_args = ["--config", str(cfg)]
    return d


def journal(d: EngineDaemon, query: str = "") -> list[dict[str, Any]]:
    """Every journal event matching `query` (engine's own endpoint), oldest first."""
    status, body = d.request("GET", "/engine/journal" + (f"?{query}" if query else ""))
    assert status == 200, body
    if body is None:
        return []
    if isinstance(body, dict):
        return [body]
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def reload(d: EngineDaemon, timeout: float = 10) -> dict[str, Any]:
    """SIGHUP the daemon and return the `daemon.reloaded` journal event it wrote."""
    before = {e["seq"] for e in journal(d, "type=daemon.reloaded")}
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [e for e in journal(d, "type=daemon.reloaded") if e["seq"] not in before]
        if new:
            assert len(new) == 1, new
            return new[0]
        time.sleep(0.02)
    raise AssertionError(f"no daemon.reloaded event after SIGHUP:\n{d.log()}")


def connect(d: EngineDaemon, timeout: float = 10) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(d.docker_sock)
    return s


def read_until_close(s: socket.socket, limit: int = 1 << 20) -> bytes:
    out = b""
    while len(out) < limit:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        out += data
    return out


def read_until_last_chunk(s: socket.socket, data: bytes = b"") -> bytes:
    """Read a chunked response until its zero chunk (the connection stays open: keep-alive)."""
    while not data.endswith(b"\r\n0\r\n\r\n") and not data.endswith(b"\r\n\r\n0\r\n\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def raw(d: EngineDaemon, data: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, half-close nothing, and read everything until the daemon closes."""
    with connect(d, timeout) as s:
        s.sendall(data)
        return read_until_close(s)


def split_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def dechunk(body: bytes) -> tuple[bytes, bool]:
    """(payload, whether the terminating zero chunk was seen)."""
    out = b""
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out, True
        out += rest[:size]
        body = rest[size + 2:]
    return out, False


def events_listeners(d: EngineDaemon) -> int:
    status, info = d.request("GET", "/info")
    assert status == 200
    return int(info["NEventsListener"])


def wait_for(pred, timeout: float = 10, interval: float = 0.02, what: str = "condition") -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def docker_env(d: EngineDaemon) -> dict[str, str]:
    env = dict(d.env)
    os.makedirs(env["DOCKER_CONFIG"], exist_ok=True)
    return env
