"""A small HTTP/1.1 client on asyncio and httptools, for talking to registries.

Why our own rather than aiohttp/requests: the daemon already parses HTTP with httptools (the Docker API
server), aiohttp costs ~250 ms of import at daemon start, and a registry client needs little — keep-alive
connections per origin, content-length and chunked bodies streamed without buffering a whole layer, TLS
through ``ssl``, ``Range`` requests and redirects. Requests on one connection are sequential; a pool keeps
idle connections per (scheme, host, port) and a request on a pooled connection that the server had closed
is retried once on a fresh one when its body can be replayed.

A response's body must be consumed (``read``/``chunks``) or the response ``close``d; a connection goes back
to the pool only when its response was read to the end and both sides allow keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httptools

from engine.errors import InvalidArgument, PermissionDenied, Unavailable

READ_SIZE = 1 << 20
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 120.0
MAX_REDIRECTS = 5
USER_AGENT = "engine (registry client)"

Body = bytes | AsyncIterator[bytes] | None


class Headers:
    """Response headers: case-insensitive, multi-valued (WWW-Authenticate may repeat)."""

    def __init__(self) -> None:
        self._items: list[tuple[str, str]] = []

    def add(self, name: str, value: str) -> None:
        self._items.append((name.lower(), value))

    def get(self, name: str, default: str = "") -> str:
        name = name.lower()
        for k, v in self._items:
            if k == name:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self._items if k == name]

    def __contains__(self, name: str) -> bool:
        return any(k == name.lower() for k, _ in self._items)


@dataclass
class _Conn:
    key: tuple[str, str, int]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reused: bool = False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Response:
    """A response whose body is streamed from the connection."""

    def __init__(self, client: HttpClient, conn: _Conn, method: str, url: str) -> None:
        self.client = client
        self.url = url
        self.status = 0
        self.reason = ""
        self.headers = Headers()
        self._conn: _Conn | None = conn
        self._head = method == "HEAD"
        self._buf: deque[bytes] = deque()
        self._headers_done = False
        self._complete = False
        self._name = b""
        self._parser = httptools.HttpResponseParser(self)
        self._keep_alive = True

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self.status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()
        if self._head or self.status in (204, 304) or 100 <= self.status < 200:
            self._complete = True

    def on_body(self, body: bytes) -> None:
        self._buf.append(body)

    def on_message_complete(self) -> None:
        self._complete = True

    async def _fill(self) -> bool:
        """Read from the socket into the parser; False at EOF."""
        assert self._conn is not None
        data = await asyncio.wait_for(self._conn.reader.read(READ_SIZE), READ_TIMEOUT)
        if not data:
            return False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as err:
            raise Unavailable(f"{self.url}: bad HTTP response: {err}") from err
        return True

    async def _read_head(self) -> None:
        while not self._headers_done:
            if not await self._fill():
                raise ConnectionResetError("connection closed before the response")

    @property
    def content_length(self) -> int | None:
        v = self.headers.get("content-length")
        return int(v) if v.isdigit() else None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises Unavailable if the connection ends early."""
        try:
            while True:
                while self._buf:
                    yield self._buf.popleft()
                if self._complete:
                    break
                if not await self._fill():
                    framed = self.content_length is not None or "chunked" in self.headers.get(
                        "transfer-encoding").lower()
                    if framed:
                        raise Unavailable(f"{self.url}: connection closed in the middle of the response body")
                    self._keep_alive = False
                    self._complete = True
        except (TimeoutError, OSError) as err:
            self.close()
            raise Unavailable(f"{self.url}: {err or type(err).__name__}") from err
        self._release()

    async def read(self, limit: int = 64 << 20) -> bytes:
        out = bytearray()
        async for chunk in self.chunks():
            out += chunk
            if len(out) > limit:
                self.close()
                raise InvalidArgument(f"{self.url}: response larger than {limit} bytes")
        return bytes(out)

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._complete and self._keep_alive and not self._buf:
            self.client._put(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Drop the connection (the body was not wanted or not fully read)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._complete and self._keep_alive and not self._buf:
                self.client._put(conn)
            else:
                conn.close()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class HttpClient:
    """A pool of keep-alive connections; `verify=False` origins skip TLS certificate checks."""

    def __init__(self, *, max_idle: int = 8) -> None:
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self.max_idle = max_idle
        self._ssl_verify = ssl.create_default_context()
        self._ssl_noverify = ssl.create_default_context()
        self._ssl_noverify.check_hostname = False
        self._ssl_noverify.verify_mode = ssl.CERT_NONE
        self.insecure_tls_hosts: set[str] = set()
        self.local_only = False  # the daemon's --offline: only hosts on this machine

    async def _connect(self, key: tuple[str, str, int]) -> _Conn:
        scheme, host, port = key
        if self.local_only and not on_this_host(host):
            raise PermissionDenied(f"{scheme}://{host}:{port}: not contacted: the daemon runs --offline (only "
                                   "registries on this host)")
        ctx: ssl.SSLContext | None = None
        if scheme == "https":
            ctx = self._ssl_noverify if host in self.insecure_tls_hosts else self._ssl_verify
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ctx, limit=READ_SIZE * 2), CONNECT_TIMEOUT)
        except (TimeoutError, OSError, ssl.SSLError) as err:
            raise Unavailable(f"{scheme}://{host}:{port}: cannot connect: {err or type(err).__name__}") from err
        return _Conn(key, reader, writer)

    def _get(self, key: tuple[str, str, int]) -> _Conn | None:
        pool = self._idle.get(key)
        while pool:
            conn = pool.pop()
            if not conn.reader.at_eof() and not conn.writer.is_closing():
                conn.reused = True
                return conn
            conn.close()
        return None

    def _put(self, conn: _Conn) -> None:
        pool = self._idle.setdefault(conn.key, [])
        if len(pool) >= self.max_idle or conn.writer.is_closing():
            conn.close()
        else:
            pool.append(conn)

    async def close(self) -> None:
        for pool in self._idle.values():
            for c in pool:
                c.close()
        self._idle.clear()

    async def request(self, method: str, url: str, headers: dict[str, str] | None = None, body: Body = None,
                      *, follow: bool = True) -> Response:
        """Send a request; the response's head is read, its body is left to stream."""
        for _ in range(MAX_REDIRECTS + 1):
            resp = await self._request_once(method, url, headers or {}, body)
            if follow and resp.status in (301, 302, 303, 307, 308) and resp.headers.get("location"):
                await resp.read()
                new = urljoin(url, resp.headers.get("location"))
                if urlsplit(new).netloc != urlsplit(url).netloc:  # credentials stay with their origin
                    headers = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
                url = new
                if resp.status == 303:
                    method, body = "GET", None
                continue
            return resp
        raise Unavailable(f"{url}: too many redirects")

    async def _request_once(self, method: str, url: str, headers: dict[str, str], body: Body) -> Response:
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise InvalidArgument(f"unsupported URL {url!r}")
        port = u.port or (443 if u.scheme == "https" else 80)
        key = (u.scheme, u.hostname, port)
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        host = u.netloc.rpartition("@")[2]
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"User-Agent: {USER_AGENT}"]
        lower = {k.lower() for k in headers}
        streaming = body is not None and not isinstance(body, (bytes, bytearray))
        if isinstance(body, (bytes, bytearray)):
            lines.append(f"Content-Length: {len(body)}")
        elif streaming and "content-length" not in lower:
            lines.append("Transfer-Encoding: chunked")
        elif body is None and method in ("POST", "PUT", "PATCH") and "content-length" not in lower:
            lines.append("Content-Length: 0")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        chunked = streaming and "content-length" not in lower
        for attempt in (0, 1):
            conn = self._get(key) if attempt == 0 else None
            if conn is None:
                conn = await self._connect(key)
            resp = Response(self, conn, method, url)
            try:
                conn.writer.write(head)
                if isinstance(body, (bytes, bytearray)):
                    conn.writer.write(body)
                elif body is not None:
                    async for chunk in body:  # type: ignore[union-attr]
                        if chunk:
                            conn.writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                            await conn.writer.drain()
                    if chunked:
                        conn.writer.write(b"0\r\n\r\n")
                await conn.writer.drain()
                await resp._read_head()
                return resp
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as err:
                conn.close()
                if conn.reused and not streaming and attempt == 0:
                    continue  # the server closed an idle connection: once more on a fresh one
                raise Unavailable(f"{method} {url}: {err or type(err).__name__}") from err
        raise AssertionError("unreachable")


def on_this_host(host: str) -> bool:
    """`localhost`, a loopback address or one of this host's own addresses — decided without a DNS lookup
    (resolving a name could itself leave the machine)."""
    import ipaddress
    import socket

    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((str(ip), 0))  # only an address of one of this host's interfaces can be bound
            return True
        except OSError:
            return False
