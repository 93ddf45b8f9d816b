"""Docker's registry endpoints: pull (``pull_stream``, called by ``POST /images/create``), ``POST
/images/{name}/push``, ``GET /distribution/{name}/json`` and ``POST /auth``.

Pull and push answer a chunked JSON-lines stream of Docker's progress messages. An error before the first
message (a manifest that does not exist, bad credentials, an image that is not here) is a plain error
response with Docker's wording, as dockerd answers before it has written anything; an error after that is
an ``{"errorDetail": {"message"}, "error"}`` line. The operation keeps running if the client goes away
(its journal events and content stay consistent; the next pull finds the blobs).

Image names hold slashes (``127.0.0.1:5000/bb``), so the name segments are matched greedily.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import unquote

import msgspec

from engine.api.docker.http import Request, Response, StreamResponse
from engine.errors import EngineError, InvalidArgument, NotFound
from engine.images import formats, platforms, reference
from engine.images.registry import Credentials, from_header
from engine.images.registry.client import MANIFEST_ACCEPT
from engine.services import Services

NAMESPACE = "moby"
_enc = msgspec.json.Encoder()
_background: set[asyncio.Task[Any]] = set()


def _pull_service(services: Services) -> Any:
    svc = services.pull
    if svc is None:
        raise EngineError("the pull service is not running")
    return svc


def _auth(req: Request) -> Credentials | None:
    return from_header(req.headers.get("x-registry-auth"))


def pull_reference(from_image: str, tag: str = "") -> reference.Reference:
    """``fromImage`` + ``tag`` as dockerd combines them (the tag may be a digest)."""
    if not from_image:
        raise InvalidArgument("fromImage must be given")
    ref = reference.parse(from_image, default_tag="")
    if tag:
        if ref.tag or ref.digest:
            raise InvalidArgument(f"invalid reference format: {from_image} already has a tag or digest")
        ref = ref.with_digest(tag) if ":" in tag else ref.with_tag(tag)
    elif not ref.tag and not ref.digest:
        ref = ref.with_tag(reference.DEFAULT_TAG)
    return ref


async def _stream(run: Callable[[Callable[[dict[str, Any]], None]], Coroutine[Any, Any, Any]]) -> StreamResponse:
    """Start `run(progress)`; plain error if it fails before its first message, else a JSON-lines stream."""
    q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task: asyncio.Task[Any] = asyncio.create_task(run(q.put_nowait))
    _background.add(task)
    task.add_done_callback(_background.discard)
    first = asyncio.ensure_future(q.get())
    await asyncio.wait({task, first}, return_when=asyncio.FIRST_COMPLETED)
    if not first.done():
        first.cancel()
        task.result()  # raises the error as a plain response
    head = first.result() if first.done() and not first.cancelled() else None

    async def lines() -> AsyncIterator[bytes]:
        if head is not None:
            yield _enc.encode(head) + b"\r\n"
        while True:
            getter = asyncio.ensure_future(q.get())
            await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield _enc.encode(getter.result()) + b"\r\n"
                continue
            getter.cancel()
            while not q.empty():
                yield _enc.encode(q.get_nowait()) + b"\r\n"
            err = task.exception()
            if err is not None:
                text = str(err)
                yield _enc.encode({"errorDetail": {"message": text}, "error": text}) + b"\r\n"
            return

    return StreamResponse(lines())


async def pull_stream(services: Services, req: Request) -> StreamResponse:
    """``POST /images/create?fromImage=…&tag=…&platform=…`` (X-Registry-Auth) as a progress stream."""
    svc = _pull_service(services)
    ref = pull_reference(req.arg("fromImage") or "", req.arg("tag") or "")
    plat = req.arg("platform") or ""
    platform = platforms.parse(plat) if plat else None
    auth = _auth(req)
    return await _stream(lambda progress: svc.pull(NAMESPACE, ref, platform=platform, auth=auth,
                                                   progress=progress, actor=req.actor))


async def post_push(services: Services, req: Request) -> StreamResponse:
    svc = _pull_service(services)
    name = unquote(req.params["name"])
    tag = req.arg("tag") or ""
    ref = reference.parse(name, default_tag="")
    if tag:
        ref = ref.with_tag(tag)
    elif not ref.tag and not ref.digest:
        ref = ref.with_tag(reference.DEFAULT_TAG)
    auth = _auth(req)
    return await _stream(lambda progress: svc.push(NAMESPACE, ref, auth=auth, progress=progress, actor=req.actor))


async def get_distribution(services: Services, req: Request) -> Response:
    """The descriptor a reference resolves to on its registry, and the platforms it offers."""
    svc = _pull_service(services)
    ref = reference.parse(unquote(req.params["name"]))
    repo = svc.registry(ref.domain, _auth(req)).repository(ref.path)
    try:
        m = await repo.get_manifest(ref.digest or ref.tag, MANIFEST_ACCEPT)
    except NotFound as err:
        raise NotFound(f"manifest for {ref.familiar()} not found: {str(err).split(': ', 1)[-1]}") from err
    doc = formats.parse(m.data, m.media_type)
    plats: list[dict[str, Any]] = []
    if isinstance(doc, formats.Index):
        plats = [msgspec.to_builtins(d.platform) for d in doc.manifests if d.platform is not None]
    else:
        try:
            cfg = json.loads(await repo.read_blob(doc.config.digest))
            plats = [{k: v for k, v in (("architecture", cfg.get("architecture", "")), ("os", cfg.get("os", "")),
                                        ("variant", cfg.get("variant", ""))) if v}]
        except (EngineError, ValueError):
            plats = []
    return Response.json({"Descriptor": {"mediaType": m.media_type, "digest": m.digest, "size": len(m.data)},
                          "Platforms": plats})


async def post_auth(services: Services, req: Request) -> Response:
    """``docker login``: check the credentials against the registry's ``/v2/``."""
    svc = _pull_service(services)
    body = await req.json()
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: expected an object")
    for key in ("username", "password", "serveraddress", "identitytoken", "email"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise InvalidArgument(f"invalid JSON: {key} must be a string")
    server = str(body.get("serveraddress") or "")
    domain = server.split("://", 1)[-1].split("/", 1)[0] or reference.DEFAULT_DOMAIN
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = reference.DEFAULT_DOMAIN
    if not reference.valid_domain(domain):
        raise InvalidArgument(f"invalid registry address {server!r}")
    creds = Credentials(username=str(body.get("username") or ""), password=str(body.get("password") or ""),
                        identity_token=str(body.get("identitytoken") or ""), server_address=server)
    await svc.login(domain, creds)
    return Response.json({"Status": "Login Succeeded", "IdentityToken": ""})


def register(r: Any, services: Services) -> None:
    def bind(fn: Callable[[Services, Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Any]]:
        return lambda req: fn(services, req)

    r.add("POST", "/images/(?P<name>.+)/push", bind(post_push))
    r.add("GET", "/distribution/(?P<name>.+)/json", bind(get_distribution))
    r.add("POST", "/auth", bind(post_auth))
