"""Docker's network endpoints: list, inspect, create, remove, connect, disconnect, prune.

Shapes follow the Engine API's ``Network`` (Name, Id, Created, Scope, Driver, EnableIPv4/6, IPAM,
Internal, Attachable, Ingress, ConfigFrom, ConfigOnly, Containers, Options, Labels); the list leaves
``Containers`` empty as dockerd does since API 1.28. Errors carry dockerd's messages (``network x not
found``, ``network with name x already exists``, ``x is a pre-defined network and cannot be removed``).
The work is engine/services/networks's.
"""

from __future__ import annotations

import datetime
import functools
from typing import Any

from engine.api.docker.filters import parse_filters
from engine.api.docker.http import Request, Response
from engine.errors import InvalidArgument, NotFound
from engine.services import Services
from engine.services.networks.model import Network

LIST_FILTERS = frozenset({"dangling", "driver", "id", "label", "name", "scope", "type"})
PRUNE_FILTERS = frozenset({"label", "label!", "until"})


def _time(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC).astimezone().isoformat()


def network_json(n: Network, containers: dict[str, Any] | None = None) -> dict[str, Any]:
    config = []
    if n.subnet:
        cfg = {"Subnet": n.subnet, "Gateway": n.gateway}
        if n.ip_range:
            cfg["IPRange"] = n.ip_range
        config.append(cfg)
    return {"Name": n.name, "Id": n.id, "Created": _time(n.created_ns), "Scope": "local", "Driver": n.driver,
            "EnableIPv4": n.driver == "bridge", "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None if n.builtin else {}, "Config": config},
            "Internal": n.internal, "Attachable": n.attachable, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": containers or {}, "Options": n.options, "Labels": n.labels}


def _svc(services: Services):  # type: ignore[no-untyped-def]
    svc = getattr(services, "networks", None)
    if svc is None:
        raise NotFound("networking is not available on this daemon")
    return svc


async def _containers(services: Services, n: Network) -> dict[str, Any]:
    out = {}
    for e in await _svc(services).endpoints(network_id=n.id):
        prefix = int(n.subnet.rsplit("/", 1)[1]) if n.subnet else 0
        out[e.container_id] = {"Name": e.name, "EndpointID": e.id, "MacAddress": e.mac,
                               "IPv4Address": f"{e.ip}/{prefix}", "IPv6Address": ""}
    return out


def _match(n: Network, f: dict[str, Any], dangling_ids: set[str]) -> bool:
    if "name" in f and not any(x in n.name for x in f["name"]):
        return False
    if "id" in f and not any(n.id.startswith(x) for x in f["id"]):
        return False
    if "driver" in f and n.driver not in f["driver"]:
        return False
    if "scope" in f and "local" not in f["scope"]:
        return False
    if "type" in f:
        for t in f["type"]:
            if t not in ("custom", "builtin"):
                raise InvalidArgument(f"invalid filter: 'type'='{t}'")
        if ("builtin" if n.builtin else "custom") not in f["type"]:
            return False
    if "label" in f:
        for lab in f["label"]:
            k, _, v = lab.partition("=")
            if k not in n.labels or (v and n.labels[k] != v):
                return False
    if "dangling" in f:
        want = f["dangling"][-1].lower() in ("1", "true")
        if want != (n.id in dangling_ids and not n.builtin):
            return False
    return True


async def list_networks(services: Services, req: Request) -> Response:
    f = parse_filters(req.arg("filters"), LIST_FILTERS)
    svc = _svc(services)
    used = {e.network_id for e in await svc.endpoints()}
    nets = await svc.list()
    dangling = {n.id for n in nets if n.id not in used}
    return Response.json([network_json(n) for n in nets if _match(n, f, dangling)])


async def inspect(services: Services, req: Request) -> Response:
    n = await _svc(services).inspect(req.params["id"])
    return Response.json(network_json(n, await _containers(services, n)))


def _body(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument("invalid JSON: expected an object")
    return raw


async def create(services: Services, req: Request) -> Response:
    body = _body(await req.json())
    name = body.get("Name") or ""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("network name must not be empty" if not name else "invalid JSON: Name")
    ipam = body.get("IPAM") or {}
    configs = (ipam.get("Config") or []) if isinstance(ipam, dict) else []
    v4 = [c for c in configs if isinstance(c, dict) and ":" not in (c.get("Subnet") or "")]
    if len(v4) > 1:
        raise InvalidArgument("only one IPv4 pool per network is supported")
    if body.get("EnableIPv6"):
        raise InvalidArgument("IPv6 networks are not supported by this engine")
    cfg = v4[0] if v4 else {}
    n = await _svc(services).create(name, driver=body.get("Driver") or "bridge",
                                    internal=bool(body.get("Internal")), attachable=bool(body.get("Attachable")),
                                    labels=body.get("Labels") or {}, options=body.get("Options") or {},
                                    subnet=cfg.get("Subnet") or "", gateway=cfg.get("Gateway") or "",
                                    ip_range=cfg.get("IPRange") or "", actor=req.actor)
    return Response.json({"Id": n.id, "Warning": ""}, 201)


async def remove(services: Services, req: Request) -> Response:
    await _svc(services).remove(req.params["id"], actor=req.actor)
    return Response(204)


async def _container(services: Services, ref: str) -> tuple[str, str]:
    docker = getattr(services, "docker", None)
    if docker is None:
        return ref, ref
    c = await docker.resolve(ref)
    return c.id, c.name.lstrip("/")


def _container_ref(body: dict[str, Any]) -> str:
    ref = body.get("Container") or ""
    if not isinstance(ref, str):
        raise InvalidArgument("invalid JSON: Container must be a string")
    if not ref:
        raise InvalidArgument("no container specified")
    return ref


async def connect(services: Services, req: Request) -> Response:
    body = _body(await req.json())
    ref = _container_ref(body)
    svc = _svc(services)
    net = await svc.inspect(req.params["id"])
    cid, name = await _container(services, ref)
    ep = body.get("EndpointConfig") or {}
    ipam = (ep.get("IPAMConfig") or {}) if isinstance(ep, dict) else None
    if not isinstance(ep, dict) or not isinstance(ipam, dict):
        raise InvalidArgument("invalid JSON: EndpointConfig must be an object")
    aliases, ip = ep.get("Aliases") or [], ipam.get("IPv4Address") or ""
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases) or not isinstance(ip, str):
        raise InvalidArgument("invalid JSON: EndpointConfig.Aliases must be strings and IPv4Address a string")
    await svc.connect(net.id, cid, aliases=list(aliases), ip=ip,
                      name=name, actor=req.actor)
    return Response(200)


async def disconnect(services: Services, req: Request) -> Response:
    body = _body(await req.json())
    ref = _container_ref(body)
    svc = _svc(services)
    net = await svc.inspect(req.params["id"])
    cid, _ = await _container(services, ref)
    await svc.disconnect(net.id, cid, actor=req.actor)
    return Response(200)


async def prune(services: Services, req: Request) -> Response:
    f = parse_filters(req.arg("filters"), PRUNE_FILTERS)
    labels = list(f.get("label", [])) + ["!" + x for x in f.get("label!", [])]
    until = None
    if f.get("until"):
        from engine.api.docker.timefmt import parse_time_ns

        until = parse_time_ns(list(f["until"])[-1], "until")
    names = await _svc(services).prune(labels=labels, until_ns=until, actor=req.actor)
    return Response.json({"NetworksDeleted": names or None})


def register(r: Any, services: Services) -> None:
    def bind(fn):  # type: ignore[no-untyped-def]
        return functools.partial(fn, services)

    r.add("GET", "/networks", bind(list_networks))
    r.add("POST", "/networks/create", bind(create))
    r.add("POST", "/networks/prune", bind(prune))
    r.add("GET", "/networks/{id}", bind(inspect))
    r.add("DELETE", "/networks/{id}", bind(remove))
    r.add("POST", "/networks/{id}/connect", bind(connect))
    r.add("POST", "/networks/{id}/disconnect", bind(disconnect))
