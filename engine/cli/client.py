"""A small synchronous client of the Docker Engine API for the `engine` CLI: unix, tcp and tcp+TLS.

Plain requests go through http.client (imported by the stdlib anyway, cheap); request bodies may be
JSON, bytes or a file (a tar for load/import/cp, sent chunked when its length is unknown). Attach and
exec start need the connection itself after the daemon's ``101 UPGRADED``: ``hijack`` writes the request
by hand on a raw socket, reads the response head and hands back the socket with any bytes already read
past it, as the docker client does (client/hijack.go). Errors carry the HTTP status so callers can act
on a 404 (``run`` pulls a missing image) and print Docker's ``Error response from daemon: <message>``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlsplit

from engine.cli.errors import ClientError

DEFAULT_HOST = "unix:///run/engine/docker.sock"

__all__ = ["Client", "ClientError", "q", "registry_auth"]


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = _unix_socket(self._path, self.timeout)


def _unix_socket(path: str, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if timeout is not None:
        sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as err:
        sock.close()
        raise ClientError(f"cannot connect to the engine daemon at unix://{path}: {err.strerror}. "
                          "Is the daemon running?") from None
    return sock


def q(s: str) -> str:
    """A path segment (container name, image reference) quoted for the URL; ``/`` kept as Docker does."""
    return quote(s, safe="/:@")


def registry_auth(domain: str) -> str:
    """``X-Registry-Auth``: base64url JSON credentials for `domain` from ~/.docker/config.json, else ``{}``."""
    cfg = os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "config.json")
    creds: dict[str, str] = {}
    try:
        with open(cfg) as f:
            auths = json.load(f).get("auths", {})
        keys = [domain, f"https://{domain}", f"http://{domain}"]
        if domain == "docker.io":
            keys += ["https://index.docker.io/v1/", "index.docker.io"]
        for k in keys:
            if k in auths and auths[k].get("auth"):
                user, _, pw = base64.b64decode(auths[k]["auth"]).decode().partition(":")
                creds = {"username": user, "password": pw, "serveraddress": domain}
                break
    except (OSError, ValueError, AttributeError):
        pass
    return base64.urlsafe_b64encode(json.dumps(creds, separators=(",", ":")).encode()).decode()


def _error(status: int, reason: str, raw: bytes) -> ClientError:
    try:
        msg = json.loads(raw)["message"]
    except (ValueError, KeyError, TypeError):
        msg = raw.decode(errors="replace").strip() or reason
    return ClientError(f"Error response from daemon: {msg}", status, msg)


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

    @staticmethod
    def _target(path: str, params: dict[str, Any] | None) -> str:
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None}, doseq=True)
        return path + (f"?{query}" if query else "")

    def send(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None, *,
             data: bytes | BinaryIO | None = None, headers: dict[str, str] | None = None,
             stream: bool = False) -> http.client.HTTPConnection:
        """Send a request and return the connection without reading the response (``wait`` is sent
        before ``start`` and read after the container ends)."""
        conn = self._conn(None if stream else self.timeout)
        hdrs = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif data is not None and "Content-Type" not in hdrs:
            hdrs["Content-Type"] = "application/x-tar"
        if data is not None and not isinstance(data, bytes | bytearray):
            try:
                st = os.fstat(data.fileno())
                if st.st_mode & 0o170000 == 0o100000:
                    hdrs["Content-Length"] = str(st.st_size - data.tell())
            except (OSError, AttributeError, ValueError):
                pass
        try:
            conn.request(method, self._target(path, params), body=data, headers=hdrs,
                         encode_chunked=data is not None and not isinstance(data, bytes | bytearray)
                         and "Content-Length" not in hdrs)
        except ClientError:
            raise
        except OSError as err:
            raise ClientError(f"cannot talk to the engine daemon at {self.host}: {err}") from None
        return conn

    @staticmethod
    def response(conn: http.client.HTTPConnection) -> http.client.HTTPResponse:
        """The response of a request `send` made; a status >= 400 is a ClientError."""
        try:
            resp = conn.getresponse()
        except OSError as err:
            raise ClientError(f"cannot talk to the engine daemon: {err}") from None
        if resp.status >= 400:
            raise _error(resp.status, resp.reason, resp.read())
        return resp

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                stream: bool = False, *, data: bytes | BinaryIO | None = None,
                headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        return self.response(self.send(method, path, params, body, data=data, headers=headers, stream=stream))

    def json(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        resp = self.request(method, path, params, body)
        raw = resp.read()
        return json.loads(raw) if raw else None

    def lines(self, path: str, params: dict[str, Any] | None = None, *, method: str = "GET",
              data: bytes | BinaryIO | None = None, headers: dict[str, str] | None = None,
              resp: http.client.HTTPResponse | None = None) -> Iterator[dict[str, Any]]:
        """The JSON lines of a streamed response. A chunked stream must end with its last chunk: a stream
        that is cut off (the daemon stopped or died) is a ClientError, not a quiet end."""
        if resp is None:
            resp = self.request(method, path, params, stream=True, data=data, headers=headers)
        pending = b""
        for chunk in self.body(resp):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                if line.strip():
                    yield json.loads(line)
        if pending.strip():
            yield json.loads(pending)

    def body(self, resp: http.client.HTTPResponse) -> Iterator[bytes]:
        """The body's bytes as they arrive."""
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

    def hijack(self, method: str, path: str, params: dict[str, Any] | None = None,
               body: Any = None) -> tuple[socket.socket, bytes, str]:
        """Send `method path` with ``Upgrade: tcp`` and return (socket, bytes read past the response
        head, Content-Type) once the daemon answered 101 (or 200, which old daemons send)."""
        u = urlsplit(self.host)
        if u.scheme == "unix":
            sock = _unix_socket(u.path, None)
            host = "api.moby.localhost"
        elif u.scheme == "tcp":
            try:
                sock = socket.create_connection((u.hostname or "", u.port or 2375))
            except OSError as err:
                raise ClientError(f"cannot connect to the engine daemon at {self.host}: {err}") from None
            if self.tls:
                sock = self.tls.wrap_socket(sock, server_hostname=u.hostname)
            host = u.netloc
        else:
            raise ClientError(f"invalid host {self.host!r}: use unix://PATH or tcp://HOST:PORT")
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {self._target(path, params)} HTTP/1.1\r\nHost: {host}\r\n"
                "Connection: Upgrade\r\nUpgrade: tcp\r\n")
        if body is not None:
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(data)}\r\n\r\n"
        try:
            sock.sendall(head.encode() + data)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ClientError(f"lost the connection to the engine daemon at {self.host}")
                buf += chunk
        except OSError as err:
            sock.close()
            raise ClientError(f"cannot talk to the engine daemon at {self.host}: {err}") from None
        header, _, rest = buf.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        if status >= 400:
            length = int(fields.get("content-length", "0") or 0)
            while len(rest) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
            sock.close()
            raise _error(status, parts[2] if len(parts) > 2 else "", rest)
        if status not in (101, 200):
            sock.close()
            raise ClientError(f"unable to upgrade to tcp, received {status}", status)
        return sock, rest, fields.get("content-type", "")
