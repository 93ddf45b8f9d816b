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
from urllib.parse import urljoin, urlsplit

import httptools

from engine.errors import InvalidArgument, PermissionDenied, Unavailable

HIGH_WATER = 4 << 20  # body bytes queued on a response before the connection stops reading
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


class _Conn(asyncio.Protocol):
    """One connection. Bytes go from ``data_received`` straight into the current response's parser, whose
    body chunks queue on the response; reading pauses while more than ``HIGH_WATER`` bytes wait there."""

    def __init__(self, key: tuple[str, str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.resp: Response | None = None
        self.closed = False
        self.reused = False
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        r = self.resp
        if r is None:  # bytes nobody asked for: this connection cannot be trusted with another request
            self.close()
            return
        r.feed(data)
        if r.buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # for the client
    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self) -> None:
        """Until more bytes arrive or the connection ends (reading resumes if it was paused)."""
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
        async with asyncio.timeout(READ_TIMEOUT):
            await self._waiter

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("connection closed")
        self.transport.write(data)

    async def drain(self) -> None:
        if self._write_paused and not self.closed:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain
        if self.closed:
            raise ConnectionResetError("connection closed")

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        self.resp = None
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.close()


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
        self.buffered = 0
        self._headers_done = False
        self._complete = False
        self._bad: Exception | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._keep_alive = True
        conn.resp = self

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
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        self._complete = True

    def feed(self, data: bytes) -> None:
        """Bytes from the connection (called by its protocol)."""
        if self._bad is not None or (self._complete and self._headers_done):
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._bad = Unavailable(f"{self.url}: unexpected protocol upgrade")
        except httptools.HttpParserError as err:
            self._bad = Unavailable(f"{self.url}: bad HTTP response: {err}")

    async def _fill(self) -> bool:
        """Wait for more of the response; False when the connection ended."""
        conn = self._conn
        assert conn is not None
        if self._bad is not None:
            raise self._bad
        if conn.closed:
            return False
        await conn.wait()
        if self._bad is not None:
            raise self._bad
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
                    chunk = self._buf.popleft()
                    self.buffered -= len(chunk)
                    yield chunk
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
        self.close()

    async def read(self, limit: int = 64 << 20) -> bytes:
        out = bytearray()
        async for chunk in self.chunks():
            out += chunk
            if len(out) > limit:
                self.close()
                raise InvalidArgument(f"{self.url}: response larger than {limit} bytes")
        return bytes(out)

    def close(self) -> None:
        """Give the connection back to the pool when the response was read to its end, else drop it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._complete and self._keep_alive and not self._buf and conn.usable():
            conn.resp = None
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
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(lambda: _Conn(key), host, port, ssl=ctx),
                                             CONNECT_TIMEOUT)
        except (TimeoutError, OSError, ssl.SSLError) as err:
            raise Unavailable(f"{scheme}://{host}:{port}: cannot connect: {err or type(err).__name__}") from err
        return conn

    def _get(self, key: tuple[str, str, int]) -> _Conn | None:
        pool = self._idle.get(key)
        while pool:
            conn = pool.pop()
            if conn.usable():
                conn.reused = True
                return conn
            conn.close()
        return None

    def _put(self, conn: _Conn) -> None:
        pool = self._idle.setdefault(conn.key, [])
        if len(pool) >= self.max_idle or not conn.usable():
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
                conn.write(head)
                if isinstance(body, (bytes, bytearray)):
                    conn.write(body)
                elif body is not None:
                    async for chunk in body:  # type: ignore[union-attr]
                        if chunk:
                            conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                            await conn.drain()
                    if chunked:
                        conn.write(b"0\r\n\r\n")
                await conn.drain()
                await resp._read_head()
                return resp
            except (TimeoutError, OSError) as err:
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
