"""A recording stand-in for the *server* side of the Docker API on a unix socket, for the CLI's unit
tests: it records each request (method, path, query, headers, body) and answers from a route table.
The real server is tested elsewhere; this only lets the tests check what the CLI sends and how it
prints what it gets. Hijacked routes (attach, exec start) answer ``101 UPGRADED`` and hand the raw
socket to a test-supplied function."""

from __future__ import annotations

import json
import os
import re
import socket
import socketserver
import struct
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Req:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def q(self, key: str) -> str | None:
        v = self.query.get(key)
        return v[-1] if v else None


@dataclass
class Resp:
    status: int = 200
    body: Any = None  # dict/list → JSON, bytes → raw, list of dicts with stream=True → JSON lines
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False  # chunked
    hijack: Callable[[socket.socket], None] | None = None
    content_type: str = "application/vnd.docker.multiplexed-stream"


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


class FakeAPI:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cli-fake-", dir="/tmp")
        self.sock_path = os.path.join(self.dir, "api.sock")
        self.routes: list[tuple[str, re.Pattern[str], Callable[[Req], Resp] | Resp | list[Resp]]] = []
        self.requests: list[Req] = []
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def address_string(self) -> str:
                return "unix"

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self) -> None:
                u = urlsplit(self.path)
                path = re.sub(r"^/v1\.\d+", "", u.path)
                req = Req(self.command, path, parse_qs(u.query, keep_blank_values=True),
                          {k: v for k, v in self.headers.items()}, self._body())
                with api.lock:
                    api.requests.append(req)
                resp = api.answer(req)
                if resp.hijack is not None:
                    self.wfile.write(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: " + resp.content_type.encode()
                                     + b"\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
                    self.wfile.flush()
                    resp.hijack(self.connection)
                    self.close_connection = True
                    return
                body = resp.body
                if isinstance(body, list | dict) and not resp.stream:
                    data = json.dumps(body).encode()
                    ctype = "application/json"
                elif resp.stream:
                    data = b"".join(json.dumps(m).encode() + b"\n" for m in body) if isinstance(body, list) \
                        else body
                    ctype = "application/json"
                else:
                    data = body or b""
                    ctype = "application/octet-stream" if data else "text/plain"
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.headers.pop("Content-Type", ctype))
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                if resp.stream:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    if data:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle  # noqa: N815

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(self.sock_path, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"unix://{self.sock_path}"

    def route(self, method: str, pattern: str, resp: Callable[[Req], Resp] | Resp | list[Resp]) -> None:
        """Answer `method` on paths matching `pattern`; a list answers in turn (its last one repeats)."""
        self.routes.insert(0, (method, re.compile(f"^{pattern}$"), resp))

    def answer(self, req: Req) -> Resp:
        for method, pat, resp in self.routes:
            if method == req.method and pat.match(req.path):
                if isinstance(resp, list):
                    return resp.pop(0) if len(resp) > 1 else resp[0]
                return resp(req) if callable(resp) else resp
        return Resp(404, {"message": "page not found"})

    def calls(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    def find(self, method: str, path: str) -> list[Req]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)
