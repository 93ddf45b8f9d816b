"""The Docker API on TCP with TLS and client-certificate verification (dockerd's --tlsverify), with a CA, a
server and client certificates made by `openssl` for the test: the docker CLI, docker-py and the engine CLI
get in with a certificate the CA signed; without one, or with one from another CA, the handshake fails."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import docker
import pytest
from daemon_util import free_port, make_certs

from tests.harness import EngineDaemon

pytestmark = pytest.mark.root

CLIENT_SUBJECT = "/O=engine-tests/OU=audit/CN=alice"


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return make_certs(tmp_path_factory.mktemp("tls"), CLIENT_SUBJECT)


@pytest.fixture(scope="module")
def tls_daemon(certs: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    d = EngineDaemon()
    d.extra_args = ["-H", d.docker_host, "-H", f"tcp://127.0.0.1:{port}", "--tlsverify",
                    "--tlscacert", str(certs / "ca.pem"), "--tlscert", str(certs / "server-cert.pem"),
                    "--tlskey", str(certs / "server-key.pem")]
    d.port = port  # type: ignore[attr-defined]
    try:
        yield d.start()
    finally:
        d.cleanup()


# the failure hook prints the log of a fixture called shared_daemon
@pytest.fixture
def shared_daemon(tls_daemon):  # type: ignore[no-untyped-def]
    return tls_daemon


def tls_args(certs: Path, port: int, cert: str | None = "client") -> list[str]:
    args = ["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(certs / "ca.pem")]
    if cert:
        args += ["--tlscert", str(certs / f"{cert}-cert.pem"), "--tlskey", str(certs / f"{cert}-key.pem")]
    return args


def handshake(port: int, certs: Path, cert: str | None) -> bytes:
    """A TLS connection and a ping; returns the reply, or raises what the handshake raised."""
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if cert:
        ctx.load_cert_chain(str(certs / f"{cert}-cert.pem"), str(certs / f"{cert}-key.pem"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(4096):
            out += chunk
        return out


def test_docker_cli_with_a_client_certificate(shared_daemon, certs: Path) -> None:
    out = shared_daemon.docker(*tls_args(certs, shared_daemon.port), "version", "--format", "{{json .}}").stdout
    v = json.loads(out)
    assert v["Server"]["ApiVersion"] == "1.50"
    info = json.loads(shared_daemon.docker(*tls_args(certs, shared_daemon.port), "info", "--format",
                                           "{{json .}}").stdout)
    assert info["ID"] == shared_daemon.request("GET", "/info")[1]["ID"]
    assert "Docker API listening on tcp://127.0.0.1" in shared_daemon.log()
    assert "client certificates verified" in shared_daemon.log()


def test_docker_cli_without_a_client_certificate_is_refused(shared_daemon, certs: Path) -> None:
    proc = shared_daemon.docker(*tls_args(certs, shared_daemon.port, cert=None), "version", check=False)
    # TLS 1.3: the client finishes its half of the handshake first and then finds the connection closed
    # (Go prints "EOF"; a "certificate required" alert would be friendlier)
    assert proc.returncode != 0
    assert "error during connect" in proc.stderr or "certificate" in proc.stderr, proc.stderr
    assert "Server:" not in proc.stdout
    proc = shared_daemon.docker(*tls_args(certs, shared_daemon.port, cert="rogue"), "version", check=False)
    assert proc.returncode != 0 and "Server:" not in proc.stdout


@pytest.mark.parametrize("cert", [None, "rogue"])
def test_handshake_without_a_trusted_client_certificate_fails(shared_daemon, certs: Path, cert: str | None) -> None:
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        reply = handshake(shared_daemon.port, certs, cert)
        # TLS 1.3: the client may only learn of the refusal when it reads
        assert reply == b"", reply
        raise ssl.SSLError("closed without a reply")


def test_handshake_with_the_client_certificate(shared_daemon, certs: Path) -> None:
    reply = handshake(shared_daemon.port, certs, "client")
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"OK")


def test_plain_http_on_the_tls_port_gets_nothing(shared_daemon) -> None:
    with socket.create_connection(("127.0.0.1", shared_daemon.port), timeout=10) as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
        except ConnectionResetError:
            pass
    assert b"OK" not in data and b"Api-Version" not in data


def test_docker_py_with_tls(shared_daemon, certs: Path, monkeypatch) -> None:
    # requests lets these override the session's CA (the CA of this test), and this machine sets them
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    tls = docker.tls.TLSConfig(client_cert=(str(certs / "client-cert.pem"), str(certs / "client-key.pem")),
                               ca_cert=str(certs / "ca.pem"), verify=True)
    c = docker.DockerClient(base_url=f"https://127.0.0.1:{shared_daemon.port}", tls=tls)
    try:
        assert c.ping() is True
        assert c.version()["ApiVersion"] == "1.50"
    finally:
        c.close()


def test_engine_cli_over_tls_reads_who_did_what(shared_daemon, certs: Path) -> None:
    # No Docker-API request writes to the journal yet, so the TLS actor (the certificate's subject) cannot
    # be seen in an event; what can: the engine CLI over TLS reads the actor journaled for a unix-socket
    # client (ctr: SO_PEERCRED uid/gid/pid), and a client without a certificate gets nothing.
    proc = subprocess.Popen(["ctr", "--address", shared_daemon.containerd_sock, "namespaces", "create", "tls-audit"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    out = shared_daemon.engine(*tls_args(certs, shared_daemon.port), "journal", "tail", "--subject", "tls-audit",
                               "--format", "json").stdout
    ev = json.loads(out)
    assert ev["type"] == "namespace.created"
    assert ev["actor"] == f"uid=0 gid=0 pid={proc.pid} comm=ctr"
    bad = shared_daemon.engine(*tls_args(certs, shared_daemon.port, cert=None), "journal", "tail", check=False)
    assert bad.returncode == 1 and "tls-audit" not in bad.stdout
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_the_actor_of_a_tls_request_is_the_client_certificate_subject(certs: Path) -> None:
    """The daemon has no Docker-API route that journals yet, so the actor is read where it is made: engine's
    own HTTP server (engine.api.docker.http) with the daemon's TLS context, on uvloop, serving a handler that
    answers with req.actor — over TLS with a client certificate, and over a unix socket."""
    import asyncio
    import tempfile
    import threading

    import uvloop

    from engine.api.docker.http import HttpServer, Response
    from engine.api.docker.server import tls_context
    from engine.config import Config

    cfg = Config(tlsverify=True, tlscacert=str(certs / "ca.pem"), tlscert=str(certs / "server-cert.pem"),
                 tlskey=str(certs / "server-key.pem"))

    async def handler(req):  # type: ignore[no-untyped-def]
        return Response.json({"actor": req.actor})

    port = free_port()
    sock_dir = tempfile.mkdtemp(prefix="eng-actor-", dir="/tmp")
    unix_path = f"{sock_dir}/api.sock"
    loop = uvloop.new_event_loop()
    server = HttpServer(handler, {})
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.listen_tcp("127.0.0.1", port, tls_context(cfg)))
        loop.run_until_complete(server.listen_unix(unix_path))
        ready.set()
        loop.run_forever()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        assert ready.wait(10)
        ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        ctx.load_cert_chain(str(certs / "client-cert.pem"), str(certs / "client-key.pem"))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            out = b""
            while chunk := s.recv(4096):
                out += chunk
        assert json.loads(out.partition(b"\r\n\r\n")[2]) == {"actor": "tls:O=engine-tests,OU=audit,CN=alice"}
        with socket.socket(socket.AF_UNIX) as u:
            u.connect(unix_path)
            u.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            out = b""
            while chunk := u.recv(4096):
                out += chunk
        actor = json.loads(out.partition(b"\r\n\r\n")[2])["actor"]
        assert actor.startswith(f"uid={os.getuid()} gid={os.getgid()} pid={os.getpid()} "), actor
    finally:
        loop.call_soon_threadsafe(lambda: loop.create_task(_stop(server, loop)))
        t.join(10)
        if not t.is_alive():
            loop.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


async def _stop(server, loop) -> None:  # type: ignore[no-untyped-def]
    await server.stop(grace=1)
    loop.stop()


def test_docker_tls_from_the_environment(shared_daemon, certs: Path, tmp_path, monkeypatch) -> None:
    """DOCKER_HOST + DOCKER_TLS_VERIFY + DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem), as users set it up."""
    cert_path = tmp_path / "docker-certs"
    cert_path.mkdir()
    shutil.copy(certs / "ca.pem", cert_path / "ca.pem")
    shutil.copy(certs / "client-cert.pem", cert_path / "cert.pem")
    shutil.copy(certs / "client-key.pem", cert_path / "key.pem")
    env = {"DOCKER_HOST": f"tcp://127.0.0.1:{shared_daemon.port}", "DOCKER_TLS_VERIFY": "1",
           "DOCKER_CERT_PATH": str(cert_path)}
    proc = subprocess.run(["docker", "version", "--format", "{{.Server.APIVersion}}"],
                          env={**shared_daemon.env, **env}, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == "1.50", proc.stderr
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    c = docker.from_env(environment=env)
    try:
        assert c.info()["ID"] == shared_daemon.request("GET", "/info")[1]["ID"]
    finally:
        c.close()
