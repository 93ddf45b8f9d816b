"""Helpers for the daemon integration tests: read a stopped daemon's journal, run `engine daemon` to its exit,
wait for log lines, free ports, and raw stream sockets."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.harness import ENGINE, EngineDaemon


def journal_rows(root: str | Path) -> list[dict[str, Any]]:
    """Every journal row of a root, read-only, straight from SQLite (the daemon may be stopped)."""
    uri = f"file:{Path(root) / 'engine.db'}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        rows = conn.execute("SELECT seq, type, subject, actor, cause, payload FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [{"seq": r[0], "type": r[1], "subject": r[2], "actor": r[3], "cause": r[4], "event": json.loads(r[5])}
            for r in rows]


def run_daemon(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """`engine daemon ARGS` expected to exit by itself (a refused configuration)."""
    return subprocess.run([ENGINE, "daemon", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(pred, timeout: float = 10, interval: float = 0.02, what: str = "condition") -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def open_stream(d: EngineDaemon, path: str) -> socket.socket:
    """A raw connection with a GET whose 200 head has been read: the body is what follows."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(d.docker_sock)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, f"connection closed before the response head: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def read_to_eof(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            return out
        if not data:
            return out
        out += data


def events_listeners(d: EngineDaemon) -> int:
    status, info = d.request("GET", "/info")
    assert status == 200, info
    return int(info["NEventsListener"])


# ---- TLS material made with openssl for a test ------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.pem",
            "-days", "2", "-subj", f"/CN={name}", cwd=d)


def make_cert(d: Path, ca: str, name: str, subject: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
            "-subj", subject, cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
            "-CAcreateserial", "-out", f"{name}-cert.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


def make_certs(d: Path, client_subject: str = "/CN=client") -> Path:
    """ca.pem; server-{cert,key}.pem for 127.0.0.1; client-{cert,key}.pem signed by the CA; rogue-* by another CA."""
    make_ca(d, "ca")
    make_ca(d, "rogue-ca")
    make_cert(d, "ca", "server", "/CN=localhost",
              "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    make_cert(d, "ca", "client", client_subject, "extendedKeyUsage=clientAuth\n")
    make_cert(d, "rogue-ca", "rogue", "/CN=mallory", "extendedKeyUsage=clientAuth\n")
    return d
