"""The registry HTTP client's framing and connection handling against a raw asyncio server that writes exact
bytes: chunked and content-length bodies, keep-alive reuse, a server that closed an idle connection, HEAD,
redirects, a body cut short; plus the pure helpers (challenges, X-Registry-Auth, insecure hosts)."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from engine.errors import Unavailable
from engine.images.registry import HttpClient, endpoint, from_header, is_insecure
from engine.images.registry.auth import parse_challenges
from engine.services.pull import human, progress_bar


class RawServer:
    """Answers each request by path with canned bytes; counts connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self.close_after_first = False

    async def start(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                method, path, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
                if path == "/chunked":
                    w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
                elif path == "/length":
                    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n" + (b"" if method == "HEAD" else b"abc"))
                elif path == "/redirect":
                    w.write(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /length\r\nContent-Length: 0\r\n\r\n")
                elif path == "/short":
                    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-this")
                    await w.drain()
                    w.close()
                    return
                await w.drain()
                if self.close_after_first:
                    w.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


async def test_bodies_keep_alive_redirect_head_and_short_bodies() -> None:
    srv = await RawServer().start()
    http = HttpClient()
    base = f"http://127.0.0.1:{srv.port}"
    try:
        resp = await http.request("GET", base + "/chunked")
        assert resp.status == 200 and await resp.read() == b"hello world"
        resp = await http.request("GET", base + "/length")
        assert await resp.read() == b"abc"
        assert srv.connections == 1  # kept alive and reused
        head = await http.request("HEAD", base + "/length")
        assert head.status == 200 and head.content_length == 3 and await head.read() == b""
        resp = await http.request("GET", base + "/redirect")
        assert resp.status == 200 and await resp.read() == b"abc"
        assert srv.connections == 1
        resp = await http.request("GET", base + "/short")
        with pytest.raises(Unavailable, match="in the middle of the response body"):
            await resp.read()
        # a server that closes idle connections: the pooled one is dead, the request is sent again on a new one
        srv.close_after_first = True
        resp = await http.request("GET", base + "/length")
        assert await resp.read() == b"abc"
        before = srv.connections
        await asyncio.sleep(0.05)
        resp = await http.request("GET", base + "/length")
        assert await resp.read() == b"abc" and srv.connections == before + 1
        with pytest.raises(Unavailable, match="cannot connect"):
            await http.request("GET", "http://127.0.0.1:1/")
    finally:
        await http.close()
        await srv.stop()


def test_challenges_auth_header_and_hosts() -> None:
    ch = parse_challenges(['Bearer realm="https://auth.example/token",service="registry.example",'
                           'scope="repository:a/b:pull,push repository:c:pull"', 'Basic realm="x"'])
    assert ch[0].scheme == "bearer" and ch[0].params["realm"] == "https://auth.example/token"
    assert ch[0].params["scope"] == "repository:a/b:pull,push repository:c:pull"
    assert ch[1].scheme == "basic"
    raw = json.dumps({"username": "u", "password": "p?>", "serveraddress": "h:5000"}).encode()
    for enc in (base64.urlsafe_b64encode(raw), base64.b64encode(raw), base64.urlsafe_b64encode(raw).rstrip(b"=")):
        creds = from_header(enc.decode())
        assert creds is not None and (creds.username, creds.password) == ("u", "p?>")
    assert from_header("e30=") is None and from_header("") is None
    assert is_insecure("localhost:5000", []) and is_insecure("127.0.0.5:80", []) and is_insecure("[::1]:5000", [])
    assert not is_insecure("registry.example", [])
    assert is_insecure("10.1.2.3:5000", ["10.0.0.0/8"]) and is_insecure("myreg:5000", ["myreg:5000"])
    assert endpoint("docker.io", []) == "https://registry-1.docker.io"
    assert endpoint("127.0.0.1:5000", []) == "http://127.0.0.1:5000"
    assert human(36445) == "36.45kB" and human(1122603) == "1.123MB"
    assert progress_bar(50, 100).startswith("[" + "=" * 25 + ">")
