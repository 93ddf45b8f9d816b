"""``GET /system/df``: what images, containers, volumes and the build cache take on disk (``docker system df``).

Sizes are measured, not estimated: an image's size is its layers' compressed size as Docker reports it,
``LayersSize`` the unpacked snapshots the images use (each counted once, however many images share it),
a container's ``SizeRw`` its writable layer (the overlay upper directory) and ``SizeRootFs`` that plus
its image's, a volume's ``UsageData`` the bytes under its ``_data`` and the containers referencing it.
Per-image ``Containers`` counts the containers made from it. ``type`` (API ≥ 1.42) limits the answer to
``container``, ``image``, ``volume`` and/or ``build-cache``; engine has no build cache, so that list is
always empty.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from engine.api.docker import images as images_api
from engine.api.docker.http import Request, Response
from engine.api.docker.volumes import volume_json
from engine.errors import EngineError, InvalidArgument
from engine.services import Services
from engine.services.volumes import dir_size

NAMESPACE = "moby"
TYPES = frozenset({"container", "image", "volume", "build-cache"})


async def _snapshot_size(services: Services, key: str) -> int:
    assert services.snapshots is not None
    try:
        return (await services.snapshots.usage("overlayfs", key, namespace=NAMESPACE)).size
    except EngineError:
        return 0


async def get_df(services: Services, req: Request) -> Response:
    wanted = set(req.query.get("type", [])) or set(TYPES)
    bad = wanted - TYPES
    if bad:
        raise InvalidArgument(f"invalid type: {sorted(bad)[0]}")
    docker = getattr(services, "docker", None)
    containers = await docker.list() if docker is not None else []
    out: dict[str, Any] = {}
    if "image" in wanted:
        groups = await images_api._svc(services).groups(NAMESPACE)
        chains: set[str] = set()
        images = []
        for g in groups:
            s = images_api.summary(g)
            s["Containers"] = sum(1 for c in containers if c.image_id == g.id)
            s["SharedSize"] = -1
            images.append(s)
            if g.resolved is not None:
                chains.update(g.resolved.chain_ids)
        out["LayersSize"] = sum([await _snapshot_size(services, ch) for ch in sorted(chains)])
        out["Images"] = images
    if "container" in wanted:
        from engine.services.dockerd import inspect as insp

        items = []
        for c in containers:
            rw = await _snapshot_size(services, c.id)
            base = 0
            with contextlib.suppress(EngineError):
                r = await images_api._svc(services).resolved(NAMESPACE, await services.images.get(  # type: ignore[union-attr]
                    NAMESPACE, c.image_ref)) if c.image_ref else None
                base = r.size if r is not None else 0
            items.append(insp.summary(c, size=(rw, rw + base),
                                      volumes_root=str(services.volumes.root) if services.volumes else ""))
        out["Containers"] = items
    if "volume" in wanted:
        vols = []
        assert services.volumes is not None
        for v in await services.volumes.list():
            size = await asyncio.to_thread(dir_size, v.mountpoint)
            vols.append(volume_json(v, {"Size": size, "RefCount": len(v.refs)}))
        out["Volumes"] = vols
    if "build-cache" in wanted:
        out["BuildCache"] = []
    return Response.json(out)


async def post_build_prune(services: Services, req: Request) -> Response:
    """``docker builder prune`` and the last step of ``docker system prune``: engine keeps no build cache."""
    return Response.json({"CachesDeleted": None, "SpaceReclaimed": 0})


def register(r: Any, services: Services) -> None:
    import functools

    r.add("GET", "/system/df", functools.partial(get_df, services))
    r.add("POST", "/build/prune", functools.partial(post_build_prune, services))
