"""Routing for the Docker Engine API: versioned paths ``/v1.24``…``/v1.50`` and unversioned ones.

Every route is reachable with and without the version prefix, as in dockerd. A version below the
minimum or above the maximum is refused with Docker's 400 message before any handler runs. The version
the client asked for (or the default, 1.50) is on ``req.version`` for handlers whose output depends on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from engine.api.docker.http import Handler, Hijack, Request, Response, StreamResponse
from engine.errors import InvalidArgument

API_VERSION = "1.50"
MIN_API_VERSION = "1.24"
_VERSIONED = re.compile(r"^/v([0-9]+\.[0-9]+)(/.*)$")


def version_tuple(v: str) -> tuple[int, int]:
    major, _, minor = v.partition(".")
    return int(major), int(minor or 0)


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """pattern: a path with `{name}` segments, e.g. /containers/{id}/json."""
        rx = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"
        self._routes.append((method, re.compile(rx), handler))
        if method == "GET":
            self._routes.append(("HEAD", re.compile(rx), handler))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.add(method, pattern, fn)
            return fn

        return deco

    async def __call__(self, req: Request) -> Response | StreamResponse | Hijack:
        path = req.path
        m = _VERSIONED.match(path)
        if m:
            version, path = m.group(1), m.group(2)
            if version_tuple(version) < version_tuple(MIN_API_VERSION):
                raise InvalidArgument(
                    f"client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, "
                    "please upgrade your client to a newer version"
                )
            if version_tuple(version) > version_tuple(API_VERSION):
                raise InvalidArgument(
                    f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
                )
            req.version = version
        else:
            req.version = API_VERSION
        allowed = False
        for method, rx, handler in self._routes:
            pm = rx.match(path)
            if pm is None:
                continue
            if method != req.method:
                allowed = True
                continue
            req.params = pm.groupdict()
            return await handler(req)
        if allowed:
            return Response.error(405, f"method {req.method} not allowed on {path}")
        return Response.error(404, "page not found")
