"""The Docker Engine API server: routes → handlers, and the listeners (unix, tcp+TLS, fd://)."""

from __future__ import annotations

import functools
import logging
import os
import socket
import ssl
from urllib.parse import urlsplit

import engine
from engine.api import sockets
from engine.api.docker import (
    commit,
    containers,
    df,
    events,
    images,
    images_registry,
    journal,
    networks,
    stats,
    streams,
    system,
    volumes,
)
from engine.api.docker.http import HttpServer
from engine.api.docker.router import API_VERSION, Router
from engine.config import Config
from engine.errors import InvalidArgument
from engine.services import Services

log = logging.getLogger(__name__)


def build_router(services: Services) -> Router:
    r = Router()

    def bind(fn):  # type: ignore[no-untyped-def]
        return functools.partial(fn, services)

    r.add("GET", "/_ping", bind(system.ping))
    r.add("GET", "/version", bind(system.version))
    r.add("GET", "/info", bind(system.info))
    r.add("GET", "/events", bind(events.get_events))
    r.add("GET", "/engine/journal", bind(journal.get_journal))
    r.add("POST", "/engine/journal/verify", bind(journal.post_verify))
    volumes.register(r, services)
    containers.register(r, services)
    stats.register(r, services)
    df.register(r, services)
    commit.register(r, services)
    streams.register(r, services)
    images_registry.register(r, services)
    images.register(r, services)
    networks.register(r, services)
    return r


def tls_context(cfg: Config) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cfg.tlscert, cfg.tlskey)
        if cfg.tlsverify:
            ctx.load_verify_locations(cfg.tlscacert)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as err:
        raise InvalidArgument(f"cannot load TLS material: {err}") from err
    return ctx


def systemd_sockets() -> list[socket.socket]:
    """Sockets passed by systemd socket activation (LISTEN_PID/LISTEN_FDS), from fd 3 on."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        n = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        raise InvalidArgument(f"LISTEN_FDS is not a number: {os.environ.get('LISTEN_FDS')!r}") from None
    return [socket.socket(fileno=fd) for fd in range(3, 3 + n)]


def _plain_tcp_decision(cfg: Config, where: str) -> bool:
    """Whether a network listener uses TLS: refused unless TLS is on or explicitly off (--no-tls)."""
    if cfg.tlsverify or cfg.tls:
        return True
    if cfg.tls is None:
        raise InvalidArgument(
            f"refusing to serve {where} without TLS: pass --tlsverify with --tlscacert/--tlscert/--tlskey, "
            "or --no-tls to serve the API unauthenticated on the network"
        )
    log.warning("!!! SERVING THE API ON %s WITHOUT TLS: anyone who can reach it is root on this host !!!", where)
    return False


async def serve_docker(services: Services, cfg: Config) -> HttpServer:
    headers = {"Api-Version": API_VERSION, "Docker-Experimental": "false", "Ostype": "linux",
               "Server": f"Engine/{engine.__version__} (linux)"}
    server = HttpServer(build_router(services), headers)
    for host in cfg.docker_hosts:
        u = urlsplit(host)
        if u.scheme == "unix":
            path = u.path
            sockets.clear_stale(path)
            with sockets.private_umask():
                await server.listen_unix(path)
            sockets.secure(path, cfg.group)
            log.info("Docker API listening on unix://%s", path)
        elif u.scheme == "tcp":
            use_tls = cfg.tlsverify or cfg.tls  # config.validate_host refused tcp without a TLS decision
            if not use_tls:
                log.warning("!!! SERVING THE API ON %s WITHOUT TLS: anyone who can reach it is root on this host !!!",
                            host)
            assert u.hostname and u.port  # config.validate_host checked tcp://HOST:PORT
            await server.listen_tcp(u.hostname, u.port, tls_context(cfg) if use_tls else None)
            log.info("Docker API listening on %s%s", host, " (TLS, client certificates verified)" if cfg.tlsverify else "")
        elif u.scheme == "fd":
            socks = systemd_sockets()
            if not socks:
                raise InvalidArgument("fd:// was given but no sockets were passed by systemd (LISTEN_FDS)")
            wanted = u.netloc or u.path.strip("/")
            chosen = [s for s in socks if not wanted or str(s.fileno()) == wanted]
            if not chosen:
                raise InvalidArgument(f"{host}: fd {wanted} is not among the sockets systemd passed "
                                      f"({', '.join(str(s.fileno()) for s in socks)})")
            for s in chosen:
                use_tls = s.family != socket.AF_UNIX and _plain_tcp_decision(cfg, f"{host} (fd {s.fileno()})")
                await server.listen_sock(s, tls_context(cfg) if use_tls else None)
                log.info("Docker API listening on fd %d%s", s.fileno(), " (TLS)" if use_tls else "")
        else:
            raise InvalidArgument(f"invalid host {host!r}: use unix://PATH, tcp://HOST:PORT or fd://")
    return server
