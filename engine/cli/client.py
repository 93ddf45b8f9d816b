"""A small synchronous client of the Docker Engine API for the `engine` CLI: unix, tcp and tcp+TLS."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

DEFAULT_HOST = "unix:///run/engine/docker.sock"


class ClientError(Exception):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError as err:
            sock.close()
            raise ClientError(f"cannot connect to the engine daemon at unix://{self._path}: {err.strerror}. "
                              "Is the daemon running?") from None
        self.sock = sock


class Client:
    def __init__(self, host: str | None = None, *, tlsverify: bool = False, tlscacert: str = "",
                 tlscert: str = "", tlskey: str = "", timeout: float | None = 60) -> None:
        self.host = host or os.environ.get("ENGINE_HOST") or DEFAULT_HOST
        self.tls = None
        if tlsverify or tlscert:
            ctx = ssl.create_default_context(cafile=tlscacert or None)
            if tlscert:
                ctx.load_cert_chain(tlscert, tlskey or None)
            ctx.check_hostname = bool(tlsverify)
            if not tlsverify:
                ctx.verify_mode = ssl.CERT_NONE
            self.tls = ctx
        self.timeout = timeout

    def _conn(self, timeout: float | None) -> http.client.HTTPConnection:
        u = urlsplit(self.host)
        if u.scheme == "unix":
            return _UnixConnection(u.path, timeout)
        if u.scheme == "tcp":
            if self.tls:
                return http.client.HTTPSConnection(u.hostname or "", u.port, timeout=timeout, context=self.tls)
            return http.client.HTTPConnection(u.hostname or "", u.port, timeout=timeout)
        raise ClientError(f"invalid host {self.host!r}: use unix://PATH or tcp://HOST:PORT")

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                stream: bool = False) -> http.client.HTTPResponse:
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None}, doseq=True)
        conn = self._conn(None if stream else self.timeout)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            conn.request(method, path + (f"?{query}" if query else ""), body=data, headers=headers)
            resp = conn.getresponse()
        except ClientError:
            raise
        except OSError as err:
            raise ClientError(f"cannot talk to the engine daemon at {self.host}: {err}") from None
        if resp.status >= 400:
            raw = resp.read()
            try:
                msg = json.loads(raw)["message"]
            except (ValueError, KeyError, TypeError):
                msg = raw.decode(errors="replace").strip() or resp.reason
            raise ClientError(f"Error response from daemon: {msg}")
        return resp

    def json(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        resp = self.request(method, path, params, body)
        raw = resp.read()
        return json.loads(raw) if raw else None

    def lines(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """The JSON lines of a streamed response. A chunked stream must end with its last chunk: a stream
        that is cut off (the daemon stopped or died) is a ClientError, not a quiet end."""
        resp = self.request("GET", path, params, stream=True)
        pending = b""
        for data in self._body(resp):
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                if line.strip():
                    yield json.loads(line)
        if pending.strip():
            yield json.loads(pending)

    def _body(self, resp: http.client.HTTPResponse) -> Iterator[bytes]:
        if not resp.chunked:
            while data := resp.read1(65536):
                yield data
            return
        fp = resp.fp
        cut = ClientError(f"lost the connection to the engine daemon at {self.host}: the stream was cut off "
                          "(did the daemon stop?)")
        try:
            while True:
                size_line = fp.readline(65537)
                if not size_line.endswith(b"\n"):
                    raise cut
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while fp.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    resp.close()
                    return
                data = fp.read(size)
                if len(data) < size or fp.read(2) != b"\r\n":
                    raise cut
                yield data
        except (OSError, ValueError) as err:
            raise ClientError(f"lost the connection to the engine daemon at {self.host}: {err}") from None
