"""``POST /commit``: Docker's container commit (``docker commit``); the work is engine/services/dockerd/commit.py."""

from __future__ import annotations

import functools
from typing import Any

from engine.api.docker.http import Request, Response
from engine.errors import InvalidArgument
from engine.services import Services
from engine.services.dockerd.commit import commit


async def post_commit(services: Services, req: Request) -> Response:
    container = req.arg("container") or ""
    if not container:
        raise InvalidArgument("no container given: container= is required")
    body = await req.json()
    if body is not None and not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: expected a container config object")
    image_id = await commit(services, container, repo=req.arg("repo") or "", tag=req.arg("tag") or "",
                            comment=req.arg("comment") or "", author=req.arg("author") or "",
                            changes=[c for c in req.query.get("changes", []) if c.strip()],
                            pause=req.flag("pause", True), config=body, actor=req.actor)
    return Response.json({"Id": image_id}, 201)


def register(r: Any, services: Services) -> None:
    r.add("POST", "/commit", functools.partial(post_commit, services))
