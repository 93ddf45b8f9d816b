"""Docker's container endpoints (not the streams): create, list, inspect, start, stop, restart, kill, pause,
unpause, wait, rename, update, remove, prune. Handlers adapt HTTP to ``services.docker``
(engine/services/dockerd) and render Docker's shapes (engine/services/dockerd/inspect.py).

* A container is named by full id, exact name or unique id prefix everywhere, as dockerd does.
* ``start`` of a running container and ``stop`` of a stopped one answer 304 with no body.
* ``wait`` answers its 200 headers at once and the body when the condition is met (dockerd flushes the
  header early too), so a client that opened it before the start is registered from the beginning.
* ``GET /containers/json`` filters: status, name, id, label, ancestor, exited, before, since, health,
  volume, network, is-task, publish, expose — as dockerd's list filters them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from engine.api.docker.filters import parse_filters
from engine.api.docker.http import Request, Response, StreamResponse
from engine.api.docker.router import Router
from engine.api.docker.timefmt import parse_time_ns
from engine.errors import EngineError, InvalidArgument, NotFound
from engine.filters import docker_labels_match
from engine.images.reference import parse as parse_ref
from engine.services import Services
from engine.services.dockerd import inspect as shapes
from engine.services.dockerd import netattach
from engine.services.dockerd import record as rec
from engine.services.dockerd.lifecycle import NotModified

LIST_FILTERS = frozenset({"status", "name", "id", "label", "ancestor", "exited", "before", "since", "health",
                          "volume", "network", "is-task", "publish", "expose"})
PRUNE_FILTERS = frozenset({"until", "label", "label!"})
STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
_enc = msgspec.json.Encoder()


def docker(services: Services) -> Any:
    svc = getattr(services, "docker", None)
    if svc is None:
        raise NotFound("the docker container service is not available")
    return svc


def register(r: Router, services: Services) -> None:
    def bind(fn):  # type: ignore[no-untyped-def]
        return functools.partial(fn, services)

    r.add("POST", "/containers/create", bind(post_create))
    r.add("GET", "/containers/json", bind(get_list))
    r.add("POST", "/containers/prune", bind(post_prune))
    r.add("GET", "/containers/{id}/json", bind(get_inspect))
    r.add("POST", "/containers/{id}/start", bind(post_start))
    r.add("POST", "/containers/{id}/stop", bind(post_stop))
    r.add("POST", "/containers/{id}/restart", bind(post_restart))
    r.add("POST", "/containers/{id}/kill", bind(post_kill))
    r.add("POST", "/containers/{id}/pause", bind(post_pause))
    r.add("POST", "/containers/{id}/unpause", bind(post_unpause))
    r.add("POST", "/containers/{id}/wait", bind(post_wait))
    r.add("POST", "/containers/{id}/rename", bind(post_rename))
    r.add("POST", "/containers/{id}/update", bind(post_update))
    r.add("DELETE", "/containers/{id}", bind(delete_container))


def _no_content() -> Response:
    return Response(204, b"", "text/plain; charset=utf-8")


def _not_modified() -> Response:
    return Response(304, b"", "text/plain; charset=utf-8")


def _timeout(req: Request) -> int | None:
    t = req.arg("t")
    if t is None or t == "":
        return None
    try:
        return int(t)
    except ValueError:
        raise InvalidArgument(f'strconv.Atoi: parsing "{t}": invalid syntax') from None


async def _size(services: Services, c: rec.DockerContainer) -> tuple[int, int]:
    rw = 0
    with contextlib.suppress(EngineError):
        assert services.snapshots is not None
        rw = (await services.snapshots.usage(c.snapshotter, c.id, namespace=rec.NAMESPACE)).size
    base = 0
    with contextlib.suppress(EngineError):
        from engine.services import image_unpack

        base = (await image_unpack.resolve(services, rec.NAMESPACE, c.image_ref)).size
    return rw, rw + base


def _volumes_root(services: Services) -> str:
    return f"{services.config.root}/volumes"


# ---- create, inspect, list ---------------------------------------------------------------------------
async def post_create(services: Services, req: Request) -> Response:
    body = await req.json()
    if body is None:
        raise InvalidArgument("config cannot be empty in order to create a container")
    platform = req.arg("platform") or ""
    if platform and not platform.startswith("linux"):
        raise InvalidArgument(f"image platform {platform} is not supported on this host")
    c, warnings = await docker(services).create(body, name=req.arg("name") or "", actor=req.actor)
    return Response.json({"Id": c.id, "Warnings": warnings}, 201)


async def get_inspect(services: Services, req: Request) -> Response:
    c = await docker(services).resolve(req.params["id"])
    size = await _size(services, c) if req.flag("size") else None
    execs = services.extra.get("docker_exec")
    exec_ids = [e.id for e in getattr(execs, "execs", {}).values() if e.container_id == c.id and e.running] \
        if execs is not None else None
    hm = services.extra.get("health")
    health = hm.health_of(c.id) if hm is not None else None  # type: ignore[attr-defined]
    networks = await netattach.settings(services, c)
    return Response.json(shapes.inspect(c, size=size, volumes_root=_volumes_root(services), exec_ids=exec_ids,
                                        health=health, networks=networks))


def _image_matches(c: rec.DockerContainer, wanted: str) -> bool:
    if wanted in (c.image, c.image_id) or c.image_id.startswith(wanted) or \
            c.image_id[len("sha256:"):].startswith(wanted):
        return True
    with contextlib.suppress(EngineError):
        w = parse_ref(wanted)
        for have in (c.image, c.image_ref):
            with contextlib.suppress(EngineError):
                h = parse_ref(have)
                if h.repository == w.repository and (":" not in wanted.rsplit("/", 1)[-1] or h.tag == w.tag):
                    return True
    return False


async def get_list(services: Services, req: Request) -> Response:
    svc = docker(services)
    f = parse_filters(req.arg("filters"), LIST_FILTERS)
    show_all = req.flag("all")
    for v in f.get("status", []):
        if v not in STATES:
            raise InvalidArgument(f"invalid filter 'status={v}'")
        show_all = True
    for v in f.get("health", []):
        if v not in ("starting", "healthy", "unhealthy", "none"):
            raise InvalidArgument(f"Unrecognised filter value for health: {v}")
    exited = []
    for v in f.get("exited", []):
        try:
            exited.append(int(v))
        except ValueError:
            raise InvalidArgument(f"invalid filter 'exited={v}'") from None
    for v in f.get("is-task", []):
        if v not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'is-task={v}'")
    limit_arg = req.arg("limit") or ""
    limit = int(limit_arg) if limit_arg.lstrip("-").isdigit() else -1
    items = await svc.list()
    before_ns = since_ns = None
    if "before" in f:
        before_ns = (await svc.resolve(f["before"][0])).created
    if "since" in f:
        since_ns = (await svc.resolve(f["since"][0])).created
    out = []
    for c in items:
        st = shapes.docker_state(c)["Status"]
        if not show_all and not c.state.running and before_ns is None and since_ns is None and limit <= 0:
            continue
        if "status" in f and st not in f["status"]:
            continue
        if "id" in f and not any(c.id.startswith(v) for v in f["id"]):
            continue
        if "name" in f and not any(re.search(v, c.name) or re.search(v, c.short_name) for v in f["name"]):
            continue
        if "label" in f and not docker_labels_match(c.config.get("Labels") or {}, f["label"]):
            continue
        if "ancestor" in f and not any(_image_matches(c, v) for v in f["ancestor"]):
            continue
        if exited and (c.state.status != rec.EXITED or c.state.exit_code not in exited):
            continue
        if before_ns is not None and c.created >= before_ns:
            continue
        if since_ns is not None and c.created <= since_ns:
            continue
        if "health" in f and _health(services, c) not in f["health"]:
            continue
        if "volume" in f and not any(m.get("name") == v or m.get("destination") == v or m.get("source") == v
                                     for m in c.mounts for v in f["volume"]):
            continue
        if "network" in f:
            attached = (await netattach.settings(services, c))[0]
            names = {c.host_config.get("NetworkMode") or "bridge", *attached,
                     *(v.get("NetworkID", "") for v in attached.values())}
            if not any(v in names or any(n.startswith(v) for n in names if len(v) >= 12) for v in f["network"]):
                continue
        if "is-task" in f and any(v in ("true", "1") for v in f["is-task"]):
            continue
        if "publish" in f or "expose" in f:
            ports = set((c.config.get("ExposedPorts") or {}).keys())
            if not any(p in ports or p + "/tcp" in ports for p in f.get("publish", []) + f.get("expose", [])):
                continue
        out.append(c)
    if limit > 0:
        out = out[:limit]
    want_size = req.flag("size")
    vroot = _volumes_root(services)
    result = []
    for c in out:
        size = await _size(services, c) if want_size else None
        result.append(shapes.summary(c, size=size, volumes_root=vroot, health=_health(services, c),
                                     networks=await netattach.settings(services, c)))
    return Response.json(result)


def _health(services: Services, c: rec.DockerContainer) -> str:
    hm = services.extra.get("health")
    return hm.status_of(c.id) if hm is not None else "none"  # type: ignore[attr-defined]


# ---- lifecycle ---------------------------------------------------------------------------------------
async def post_start(services: Services, req: Request) -> Response:
    svc = docker(services)
    c = await svc.resolve(req.params["id"])
    body = await req.json()
    if isinstance(body, dict) and body:
        raise InvalidArgument("starting container with non-empty request body was deprecated since API v1.22 "
                              "and removed in v1.24")
    if req.arg("checkpoint"):
        raise InvalidArgument("checkpoints are not supported by engine")
    try:
        await svc.start(c.id, actor=req.actor)
    except NotModified:
        return _not_modified()
    return _no_content()


async def post_stop(services: Services, req: Request) -> Response:
    try:
        await docker(services).stop(req.params["id"], timeout=_timeout(req), sig=req.arg("signal") or "",
                                    actor=req.actor)
    except NotModified:
        return _not_modified()
    return _no_content()


async def post_restart(services: Services, req: Request) -> Response:
    await docker(services).restart(req.params["id"], timeout=_timeout(req), sig=req.arg("signal") or "",
                                   actor=req.actor)
    return _no_content()


async def post_kill(services: Services, req: Request) -> Response:
    await docker(services).kill(req.params["id"], req.arg("signal") or "", actor=req.actor)
    return _no_content()


async def post_pause(services: Services, req: Request) -> Response:
    await docker(services).pause(req.params["id"], actor=req.actor)
    return _no_content()


async def post_unpause(services: Services, req: Request) -> Response:
    await docker(services).unpause(req.params["id"], actor=req.actor)
    return _no_content()


async def post_wait(services: Services, req: Request) -> StreamResponse:
    svc = docker(services)
    c = await svc.resolve(req.params["id"])
    condition = req.arg("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f'invalid condition: "{condition}"')
    # subscribed before the headers go out: an exit after this point is never missed
    waiter = asyncio.ensure_future(svc.wait(c.id, condition))
    await asyncio.sleep(0)

    async def body() -> AsyncIterator[bytes]:
        try:
            code, err = await waiter
            yield _enc.encode({"StatusCode": code, "Error": {"Message": err} if err else None}) + b"\n"
        except EngineError as e:
            yield _enc.encode({"StatusCode": -1, "Error": {"Message": str(e)}}) + b"\n"
        finally:
            waiter.cancel()

    return StreamResponse(body(), 200, "application/json")


async def post_rename(services: Services, req: Request) -> Response:
    await docker(services).rename(req.params["id"], req.arg("name") or "", actor=req.actor)
    return _no_content()


async def post_update(services: Services, req: Request) -> Response:
    body = await req.json()
    warnings = await docker(services).update(req.params["id"], body if body is not None else {}, actor=req.actor)
    return Response.json({"Warnings": warnings})


async def delete_container(services: Services, req: Request) -> Response:
    await docker(services).remove(req.params["id"], force=req.flag("force"), volumes=req.flag("v"),
                                  link=req.flag("link"), actor=req.actor)
    return _no_content()


async def post_prune(services: Services, req: Request) -> Response:
    f = parse_filters(req.arg("filters"), PRUNE_FILTERS)
    until_ns = 0
    if f.get("until"):
        until_ns = parse_time_ns(f["until"][0], "until")
    labels = list(f.get("label", [])) + ["!" + v for v in f.get("label!", [])]
    removed, reclaimed = await docker(services).prune(until_ns=until_ns, labels=labels, actor=req.actor)
    return Response.json({"ContainersDeleted": removed or None, "SpaceReclaimed": reclaimed})
