"""Docker's exec endpoints: ``POST /containers/{id}/exec``, ``POST /exec/{id}/start`` (hijacked, or
``Detach``), ``POST /exec/{id}/resize`` and ``GET /exec/{id}/json``, over engine/services/dockerd/exec.py.

Everything that can be refused (unknown exec, stopped container, started twice) is checked before the
hijack, so it is a plain HTTP error the CLI prints; an error after the hijack (the process cannot be
spawned) is written into the stream on stdout, as dockerd does, with ExitCode 127 (command not found) or
126 (any other failure to run it). The stream closes only once the exit code is known, because the CLI
reads ``ExitCode`` right after.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from engine.api.docker.attach import (
    DEFAULT_DETACH_KEYS,
    content_type,
    docker,
    encoder,
    parse_detach_keys,
    pump_stdin,
    run_streams,
    write_out,
)
from engine.api.docker.http import Conn, Hijack, Request, Response
from engine.api.docker.router import Router
from engine.errors import EngineError, InvalidArgument
from engine.services import Services
from engine.services.dockerd import logs as logread
from engine.services.dockerd.exec import DockerExecService

EXIT_WAIT = 10.0  # seconds a finished stream waits for the exit to be journaled


def service(services: Services) -> DockerExecService:
    svc = services.extra.get("docker_exec")
    if svc is None:
        svc = services.extra["docker_exec"] = DockerExecService(services)
    return svc  # type: ignore[return-value]


def register(r: Router, bind: Callable[[Any], Any], services: Services) -> None:
    service(services)
    r.add("POST", "/containers/{id}/exec", bind(post_exec_create))
    r.add("POST", "/exec/{id}/start", bind(post_exec_start))
    r.add("POST", "/exec/{id}/resize", bind(post_exec_resize))
    r.add("GET", "/exec/{id}/json", bind(get_exec_json))


async def post_exec_create(services: Services, req: Request) -> Response:
    c = await docker(services).resolve(req.params["id"])
    body = await req.json()
    e = await service(services).create(c.id, body, actor=req.actor)
    return Response.json({"Id": e.id}, 201)


async def post_exec_start(services: Services, req: Request) -> Response | Hijack:
    svc = service(services)
    e = svc.get(req.params["id"])
    body = await req.json() or {}
    if not isinstance(body, dict):
        raise InvalidArgument("invalid exec start config: expected a JSON object")
    detach = bool(body.get("Detach"))
    tty = body.get("Tty")
    size = body.get("ConsoleSize")
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(isinstance(x, int) and x >= 0 for x in size)):
        raise InvalidArgument("invalid exec start config: ConsoleSize must be [height, width]")
    svc.check_startable(e)
    await svc.require_running(e.container_id)
    if detach:
        await svc.start(e.id, detach=True, console_size=size, actor=req.actor)
        return Response(200, b"", "application/json")
    # dockerd frames by the start's Tty (docker-py sends false unless told), whatever the process has
    use_tty = bool(tty) if tty is not None else e.tty
    keys = parse_detach_keys(e.config.get("DetachKeys") or DEFAULT_DETACH_KEYS)
    mux = not use_tty
    out, err = bool(e.config.get("AttachStdout")), bool(e.config.get("AttachStderr"))
    want = ({1} if out or (e.tty and err) else set()) | ({2} if err else set())
    enc = encoder(mux, want)

    async def run(conn: Conn) -> None:
        try:
            await svc.start(e.id, detach=False, console_size=size, actor=req.actor)
        except EngineError as err:
            # as dockerd: the error on the stdout stream; the CLI then reads ExitCode (126/127) from inspect
            msg = f"{err}\r\n".encode()
            conn.write(logread.frame(1, msg) if mux else msg)
            return
        io = e.io
        assert io is not None
        try:
            stdin = None
            if e.config.get("AttachStdin"):
                async def eof() -> None:
                    io.close_stdin()

                stdin = pump_stdin(conn, io.write_stdin, keys, eof)
            detached = await run_streams(conn, write_out(conn, io.output(), enc), stdin)
            if detached:
                await svc.detached(e, actor=req.actor)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(e.done.wait(), EXIT_WAIT)
        finally:
            io.close()
            e.io = None

    return Hijack(run, content_type(req, use_tty))


def _int_arg(req: Request, name: str) -> int:
    v = req.arg(name, "") or ""
    try:
        return int(v)
    except ValueError:
        raise InvalidArgument(f'strconv.Atoi: parsing "{v}": invalid syntax') from None


async def post_exec_resize(services: Services, req: Request) -> Response:
    h, w = _int_arg(req, "h"), _int_arg(req, "w")
    if h < 0 or w < 0:
        raise InvalidArgument("height and width must be non-negative")
    await service(services).resize(req.params["id"], h, w)
    return Response(200, b"", "text/plain; charset=utf-8")


async def get_exec_json(services: Services, req: Request) -> Response:
    return Response.json(service(services).get(req.params["id"]).inspect())
