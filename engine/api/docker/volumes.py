"""Docker's volume endpoints: ``/volumes`` list, create, inspect, remove and prune (local driver).

Shapes follow the Engine API's ``Volume`` (Name, Driver, Mountpoint, CreatedAt, Labels, Scope, Options,
and UsageData on ``/system/df``); errors carry Docker's messages (``get x: no such volume``, ``remove x:
volume is in use - [id]``). The work is engine/services/volumes.py's.
"""

from __future__ import annotations

import datetime
from typing import Any

from engine.api.docker.filters import parse_filters
from engine.api.docker.http import Request, Response
from engine.errors import InvalidArgument
from engine.services import Services
from engine.services.volumes import Volume, labels_match

LIST_FILTERS = frozenset({"dangling", "driver", "label", "name"})
PRUNE_FILTERS = frozenset({"label", "label!", "all"})


def rfc3339(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC).astimezone().isoformat(timespec="seconds")


def volume_json(v: Volume, usage: dict[str, int] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"CreatedAt": rfc3339(v.created_ns), "Driver": v.driver, "Labels": v.labels or None,
                           "Mountpoint": v.mountpoint, "Name": v.name, "Options": v.options or None,
                           "Scope": "local"}
    if usage is not None:
        out["UsageData"] = usage
    return out


def _str_field(body: dict[str, Any], key: str) -> str:
    v = body.get(key) or ""
    if not isinstance(v, str):
        raise InvalidArgument(f"invalid JSON: {key} must be a string")
    return v


def _map_field(body: dict[str, Any], key: str) -> dict[str, str]:
    v = body.get(key) or {}
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise InvalidArgument(f"invalid JSON: {key} must be an object of strings")
    return v


async def create(services: Services, req: Request) -> Response:
    body = await req.json()
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: expected an object")
    assert services.volumes is not None
    v = await services.volumes.create(_str_field(body, "Name"), driver=_str_field(body, "Driver") or "local",
                                      options=_map_field(body, "DriverOpts"), labels=_map_field(body, "Labels"),
                                      actor=req.actor)
    return Response.json(volume_json(v), 201)


async def list_volumes(services: Services, req: Request) -> Response:
    f = parse_filters(req.arg("filters"), LIST_FILTERS)
    assert services.volumes is not None
    out = []
    for v in await services.volumes.list():
        if "name" in f and not any(n in v.name for n in f["name"]):
            continue
        if "driver" in f and v.driver not in f["driver"]:
            continue
        if "label" in f and not labels_match(v.labels, f["label"]):
            continue
        if "dangling" in f:
            want = f["dangling"][-1].lower() in ("1", "true")
            if want != (not v.refs):
                continue
        out.append(volume_json(v))
    return Response.json({"Volumes": out, "Warnings": None})


async def inspect(services: Services, req: Request) -> Response:
    assert services.volumes is not None
    return Response.json(volume_json(await services.volumes.get(req.params["name"])))


async def remove(services: Services, req: Request) -> Response:
    assert services.volumes is not None
    await services.volumes.remove(req.params["name"], force=req.flag("force"), actor=req.actor)
    return Response(204)


async def prune(services: Services, req: Request) -> Response:
    f = parse_filters(req.arg("filters"), PRUNE_FILTERS)
    labels = list(f.get("label", [])) + ["!" + x for x in f.get("label!", [])]
    all_volumes = bool(f.get("all")) and f["all"][-1].lower() in ("1", "true")
    assert services.volumes is not None
    names, freed = await services.volumes.prune(all_volumes=all_volumes, labels=labels, actor=req.actor)
    return Response.json({"VolumesDeleted": names or None, "SpaceReclaimed": freed})


def register(r: Any, services: Services) -> None:
    import functools

    def bind(fn):  # type: ignore[no-untyped-def]
        return functools.partial(fn, services)

    r.add("GET", "/volumes", bind(list_volumes))
    r.add("POST", "/volumes/create", bind(create))
    r.add("POST", "/volumes/prune", bind(prune))
    r.add("GET", "/volumes/{name}", bind(inspect))
    r.add("DELETE", "/volumes/{name}", bind(remove))
