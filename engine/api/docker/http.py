"""A small HTTP/1.1 server on httptools, shaped for the Docker Engine API.

Why our own protocol on httptools (the parser uvicorn uses) rather than aiohttp: the Docker API needs
exact control of the connection that frameworks hide — the hijack answers ``101 UPGRADED`` and then the
socket is a raw duplex stream whose client half-closes its write side while we keep writing; streaming
responses (events, logs, pull progress) are chunked and must stop the moment the client goes; and the
actor of every request is read from the socket itself (SO_PEERCRED, the TLS certificate). httptools
gives a fast C parser and leaves the connection to us; it also imports in a few ms, where aiohttp costs
~250 ms of daemon start-up.

A handler is ``async def handler(req) -> Response``. ``Response`` has three shapes: a body
(``Response``), a chunked stream (``StreamResponse``, an async iterator of bytes), and a hijack
(``Hijack``, a callback that gets the raw ``Conn``). Requests on one connection are served one at a time
(reading pauses until the response is written), which is what every Docker client does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httptools
import msgspec

from engine.api.peer import actor_from_cert, actor_from_socket
from engine.errors import EngineError

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()
MAX_HEADER_BYTES = 1 << 20


class Request:
    __slots__ = ("method", "path", "raw_path", "query", "headers", "body", "actor", "params", "version",
                 "conn", "keep_alive", "upgrade", "answered")

    def __init__(self, method: str, raw_path: str, headers: dict[str, str], actor: str, conn: HttpProtocol) -> None:
        parts = urlsplit(raw_path)
        self.method = method
        self.raw_path = raw_path
        self.path = parts.path
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.headers = headers
        self.body = asyncio.StreamReader(limit=1 << 20)
        self.actor = actor
        self.params: dict[str, str] = {}
        self.version = ""
        self.conn = conn
        self.keep_alive = True
        self.upgrade = False
        self.answered = False  # the response is written; a body still arriving is then discarded

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str, default: bool = False) -> bool:
        """Docker's boolean query values: 1/true/True are true, 0/false/'' are false."""
        value = self.arg(name)
        if value is None:
            return default
        return value.lower() not in ("", "0", "false", "no")

    async def read(self, limit: int = 64 << 20) -> bytes:
        data = await self.body.read(limit + 1)
        if len(data) > limit:
            raise EngineError(f"request body larger than {limit} bytes")
        return data

    async def json(self, type_: Any = Any) -> Any:
        from engine.errors import InvalidArgument

        raw = await self.read()
        if not raw.strip():
            return msgspec.convert({}, type_) if type_ is not Any else None
        try:
            return msgspec.json.decode(raw, type=type_)
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            raise InvalidArgument(f"invalid JSON: {err}") from err


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(status, _json.encode(obj) + b"\n", "application/json", headers or {})

    @classmethod
    def error(cls, status: int, message: str) -> Response:
        return cls.json({"message": message}, status)


@dataclass
class StreamResponse:
    """A chunked response; the iterator is closed when the client disconnects."""

    chunks: AsyncIterator[bytes]
    status: int = 200
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hijack:
    """Take over the connection: 101 UPGRADED when the client asked to upgrade, else 200 and raw bytes."""

    run: Callable[[Conn], Awaitable[None]]
    content_type: str = "application/vnd.docker.raw-stream"


Handler = Callable[[Request], Awaitable[Response | StreamResponse | Hijack]]


class Conn:
    """The raw duplex stream of a hijacked connection.

    ``reader`` ends (EOF) when the client half-closes its write side (``shutdown(SHUT_WR)``, which
    ``docker run`` without ``-i`` does at once) or goes; writing goes on after a half-close. ``lost`` is set
    only when the connection is gone for good, so a stream can stop following its source then."""

    def __init__(self, proto: HttpProtocol) -> None:
        self._proto = proto
        self.reader = asyncio.StreamReader(limit=1 << 20)
        self.lost = asyncio.Event()

    def write(self, data: bytes) -> None:
        if not self._proto.closed:
            self._proto.transport.write(data)

    async def drain(self) -> None:
        await self._proto.drain()

    def close_write(self) -> None:
        if not self._proto.closed and self._proto.transport.can_write_eof():
            self._proto.transport.write_eof()

    def close(self) -> None:
        self._proto.transport.close()

    @property
    def closed(self) -> bool:
        return self._proto.closed


class HttpProtocol(asyncio.Protocol):
    """One connection. Requests are parsed as they arrive but handled one at a time, in order: a
    pipelined request waits in ``_pipeline`` and reading pauses until the response before it is written.
    While a response streams, reading resumes so that the client's EOF (it went away) is seen at once and
    the stream, with its subscription, is torn down; bytes that arrive meanwhile are held for the parser."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.actor = "unknown"
        self.closed = False
        self.streaming = False
        self._url = b""
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._parsing: Request | None = None  # headers seen, body still arriving
        self._pipeline: deque[Request] = deque()  # complete requests waiting for their turn
        self._held = b""  # bytes received while a response streams, parsed after it
        self._broken = False  # the parser cannot go on (an upgrade, a parse error)
        self._upgrade_body: Request | None = None  # an upgrading request whose body is still arriving
        self._upgrade_left = 0
        self._error: str | None = None  # a parse error to answer once the requests before it are
        self._request: Request | None = None  # the request being handled
        self._task: asyncio.Task | None = None
        self._hijacked: Conn | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()

    # ---- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        base = actor_from_socket(sock)
        cert = transport.get_extra_info("peercert")
        self.actor = actor_from_cert(cert, base) if transport.get_extra_info("sslcontext") else base
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self._can_write.set()
        self._pipeline.clear()
        if self._hijacked is not None:
            self._hijacked.reader.feed_eof()
            self._hijacked.lost.set()
        for req in (self._request, self._parsing):
            if req is not None:
                req.body.feed_eof()
        if self._task is not None and not self._task.done() and self._hijacked is None:
            self._task.cancel()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    async def drain(self) -> None:
        await self._can_write.wait()
        if self.closed:
            raise ConnectionResetError("client went away")

    def data_received(self, data: bytes) -> None:
        if self._hijacked is not None:
            self._hijacked.reader.feed_data(data)
            return
        if self._upgrade_body is not None:
            data = self._feed_upgrade_body(data)
        if self.streaming or self._broken:
            self._held += data
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0] if upgrade.args else len(data)
            self._broken = True  # the rest of the connection is the upgraded stream, not HTTP
            rest = data[offset:]
            req = self._parsing or self._upgrade_body
            self._parsing = None
            if req is not None:
                req.upgrade = True
                # the parser stops at the headers: a body (exec start's JSON) comes before the stream
                try:
                    self._upgrade_left = int(req.headers.get("content-length", "0") or 0)
                except ValueError:
                    self._upgrade_left = 0
                self._upgrade_body = req
                rest = self._feed_upgrade_body(rest)
            self._held += rest
        except httptools.HttpParserError as err:
            self._broken = True
            self._error = self._error or f"malformed HTTP request: {err}"
            if self._task is None or self._task.done():
                self._next()  # else answer what came before it first

    def _feed_upgrade_body(self, data: bytes) -> bytes:
        """Give an upgrading request its Content-Length bytes; returns what follows them."""
        req = self._upgrade_body
        assert req is not None
        take = data[: self._upgrade_left]
        if take:
            req.body.feed_data(take)
            self._upgrade_left -= len(take)
        if self._upgrade_left <= 0:
            req.body.feed_eof()
            self._upgrade_body = None
        return data[len(take):]

    def eof_received(self) -> bool:
        if self._hijacked is not None:
            self._hijacked.reader.feed_eof()
            return True  # keep writing after the client's half-close
        if self.streaming:
            return False  # the client of a stream went away: close, which cancels the stream
        for req in (self._request, self._parsing):
            if req is not None:
                req.body.feed_eof()
        # a request in flight still gets its response; an idle connection just closes
        return self._task is not None and not self._task.done()

    # ---- httptools callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_HEADER_BYTES:
            self._error = f"malformed HTTP request: request target longer than {MAX_HEADER_BYTES} bytes"
            raise httptools.HttpParserError("url too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._error = f"malformed HTTP request: headers larger than {MAX_HEADER_BYTES} bytes"
            raise httptools.HttpParserError("headers too large")
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {val}" if key in self._headers else val

    def on_headers_complete(self) -> None:
        method = self.parser.get_method().decode()
        req = Request(method, self._url.decode("latin-1"), self._headers, self.actor, self)
        req.keep_alive = self.parser.should_keep_alive()
        req.upgrade = self.parser.should_upgrade()
        req.body.set_transport(self.transport)
        self._parsing = req
        if self._task is None or self._task.done():
            self._start(req)
        else:
            self._pipeline.append(req)

    def on_body(self, body: bytes) -> None:
        if self._parsing is not None and not self._parsing.answered:
            self._parsing.body.feed_data(body)

    def on_message_complete(self) -> None:
        req = self._parsing
        if req is not None and req.upgrade:
            # httptools reports an upgrade's end at its headers: its body follows as raw bytes, given to
            # it by data_received; reading goes on
            self._upgrade_body = req
            self._parsing = None
            return
        if req is not None:
            req.body.feed_eof()
            self._parsing = None
            if req.answered:
                return  # answered before its body ended: nothing to wait for, keep reading
        # one request at a time: resume when the response is written
        self.transport.pause_reading()

    # ---- serving ----------------------------------------------------------------------------------
    def _start(self, req: Request) -> None:
        self._request = req
        self._task = asyncio.get_running_loop().create_task(self._handle(req))

    def _next(self) -> None:
        """The response is written: start the next pipelined request, or read more."""
        if self.closed:
            return
        if self._pipeline:
            self._start(self._pipeline.popleft())
            return
        if self._error is not None:
            self._send_simple(400, self._error)
            self.transport.close()
            return
        if self._broken:
            self.transport.close()
            return
        self.transport.resume_reading()
        held, self._held = self._held, b""
        if held:
            self.data_received(held)

    async def _handle(self, req: Request) -> None:
        keep_alive = req.keep_alive
        try:
            try:
                resp = await self.server.handler(req)
            except EngineError as err:
                resp = Response.error(err.http_status, str(err))
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.exception("%s %s failed", req.method, req.path)
                resp = Response.error(500, f"internal error: {err}")
            if isinstance(resp, Hijack):
                await self._hijack(req, resp)
                return
            if req.upgrade:
                keep_alive = False  # an upgrade refused: what follows on the wire is not HTTP
            if isinstance(resp, StreamResponse):
                await self._stream(req, resp, keep_alive)
            else:
                self._write_response(req, resp, keep_alive)
        except (ConnectionError, asyncio.CancelledError):
            self.transport.close()
            return
        finally:
            req.answered = True
            self._request = None
            self.streaming = False
        if self.closed:
            return
        if not keep_alive or self.server.stopping:
            self.transport.close()
        else:
            self._next()

    def _head(self, status: int, headers: dict[str, str], reason: str | None = None) -> bytes:
        phrase = reason or _phrase(status)
        lines = [f"HTTP/1.1 {status} {phrase}"]
        lines += [f"{k}: {v}" for k, v in {**self.server.default_headers, **headers}.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _write_response(self, req: Request, resp: Response, keep_alive: bool) -> None:
        headers = {"Content-Type": resp.content_type, "Content-Length": str(len(resp.body)), **resp.headers}
        if not keep_alive:
            headers["Connection"] = "close"
        out = self._head(resp.status, headers)
        if req.method != "HEAD" and resp.status not in (204, 304):
            out += resp.body
        self.transport.write(out)

    async def _stream(self, req: Request, resp: StreamResponse, keep_alive: bool) -> None:
        headers = {"Content-Type": resp.content_type, "Transfer-Encoding": "chunked", **resp.headers}
        it = resp.chunks
        if req.method == "HEAD":  # the head only: a HEAD response has no body, not even chunk framing
            self.transport.write(self._head(resp.status, headers))
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
            return
        self.streaming = True
        self.transport.write(self._head(resp.status, headers))
        self.transport.resume_reading()  # to see the client go (EOF) while we wait for chunks
        try:
            async for chunk in it:
                if self.closed:
                    break
                if chunk:
                    self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await self.drain()
            if not self.closed:
                self.transport.write(b"0\r\n\r\n")
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _hijack(self, req: Request, resp: Hijack) -> None:
        conn = Conn(self)
        self._hijacked = conn
        pending, self._held = self._held, b""
        if pending:
            conn.reader.feed_data(pending)
        if req.upgrade:
            head = (f"HTTP/1.1 101 UPGRADED\r\nContent-Type: {resp.content_type}\r\n"
                    "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        else:
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {resp.content_type}\r\n\r\n"
        self.transport.write(head.encode())
        self.transport.resume_reading()
        try:
            await resp.run(conn)
        finally:
            if not self.closed:
                self.transport.close()

    def _send_simple(self, status: int, message: str) -> None:
        body = _json.encode({"message": message}) + b"\n"
        self.transport.write(self._head(status, {"Content-Type": "application/json",
                                                 "Content-Length": str(len(body)), "Connection": "close"}) + body)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class HttpServer:
    """Serves one handler on any number of listeners; tracks connections for a graceful stop."""

    def __init__(self, handler: Handler, default_headers: dict[str, str]) -> None:
        self.handler = handler
        self.default_headers = default_headers
        self.connections: set[HttpProtocol] = set()
        self.servers: list[asyncio.AbstractServer] = []
        self.stopping = False  # set by stop(): responses then close their connection

    def protocol(self) -> HttpProtocol:
        return HttpProtocol(self)

    async def listen_unix(self, path: str) -> None:
        loop = asyncio.get_running_loop()
        self.servers.append(await loop.create_unix_server(self.protocol, path=path))

    async def listen_tcp(self, host: str, port: int, ssl_ctx: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        self.servers.append(await loop.create_server(self.protocol, host=host, port=port, ssl=ssl_ctx))

    async def listen_sock(self, sock: Any, ssl_ctx: ssl.SSLContext | None = None) -> None:
        loop = asyncio.get_running_loop()
        if sock.family == socket.AF_UNIX:
            self.servers.append(await loop.create_unix_server(self.protocol, sock=sock))
        else:
            self.servers.append(await loop.create_server(self.protocol, sock=sock, ssl=ssl_ctx))

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish (up to `grace` s), then close streams.

        Idle keep-alive connections are closed at once, and a connection whose response is written is
        closed rather than kept alive, so no new request starts once the stop has begun."""
        self.stopping = True
        for srv in self.servers:
            srv.close()
        for conn in list(self.connections):
            if (conn._task is None or conn._task.done()) and conn._hijacked is None and not conn._pipeline:
                conn.transport.close()
        tasks = [c._task for c in self.connections if c._task is not None and not c._task.done()
                 and c._hijacked is None and not c.streaming]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for conn in list(self.connections):
            if conn._task is not None and not conn._task.done():
                conn._task.cancel()
            conn.transport.close()
        for srv in self.servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(srv.wait_closed(), 2)

