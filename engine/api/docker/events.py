"""``GET /events``: journal envelopes rendered as Docker's event messages, filtered as dockerd filters.

Only journal events that Docker has a name for become Docker events (``docker_message`` returns None for
the others, e.g. containerd namespace changes, which dockerd does not report either). The stream is the
whole journal from `since` on, then live, and ends at `until` (immediately when `until` is past).
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from engine.api.docker.filters import Filters, parse_filters
from engine.api.docker.http import Request, StreamResponse
from engine.api.docker.timefmt import parse_time_ns
from engine.errors import InvalidArgument
from engine.events.types import DaemonReloaded, Envelope
from engine.services import Services

EVENT_FILTERS = frozenset({"config", "container", "daemon", "event", "image", "label", "network", "node",
                           "plugin", "scope", "secret", "service", "type", "volume"})
EVENT_TYPES = frozenset({"builder", "config", "container", "daemon", "image", "network", "node", "plugin",
                         "secret", "service", "volume"})
_enc = msgspec.json.Encoder()


def docker_message(env: Envelope) -> dict[str, Any] | None:
    """Docker's event message for a journal envelope, or None when Docker has no such event."""
    ev = env.event
    if isinstance(ev, DaemonReloaded):
        typ, action, actor_id, attrs = "daemon", "reload", ev.daemon_id, {"name": ev.name, **ev.attributes}
    else:
        return None
    msg: dict[str, Any] = {"Type": typ, "Action": action, "Actor": {"ID": actor_id, "Attributes": attrs},
                           "scope": "local", "time": env.time_ns // 1_000_000_000, "timeNano": env.time_ns}
    if typ in ("container", "image"):  # the legacy fields dockerd still fills for these two types
        msg = {"status": action, "id": actor_id, **({"from": attrs["image"]} if "image" in attrs else {}), **msg}
    return msg


def _attr_match(values: list[str], *candidates: str | None) -> bool:
    return any(c is not None and (c == v or c.startswith(v)) for v in values for c in candidates)


def matches(msg: dict[str, Any], f: Filters) -> bool:
    """dockerd's event filter: every given key must match (values of one key are alternatives)."""
    typ, action, actor = msg["Type"], msg["Action"], msg["Actor"]
    attrs = actor["Attributes"]
    if "type" in f and typ not in f["type"]:
        return False
    if "event" in f and not any(action == v or action.split(":", 1)[0] == v for v in f["event"]):
        return False
    if "scope" in f and msg["scope"] not in f["scope"]:
        return False
    if "label" in f:
        for want in f["label"]:
            key, eq, value = want.partition("=")
            if key not in attrs or (eq and attrs[key] != value):
                return False
    for key in ("container", "network", "volume", "plugin", "node", "service", "secret", "config", "daemon"):
        if key in f:
            if typ != key:
                return False
            if not _attr_match(f[key], actor["ID"], attrs.get("name")):
                return False
    if "image" in f:
        image = attrs.get("image") if typ == "container" else actor["ID"]
        name = attrs.get("name") if typ == "image" else None
        if not any(c is not None and (c == v or fnmatch.fnmatchcase(c, v) or c.split(":")[0] == v)
                   for v in f["image"] for c in (image, name)):
            return False
    return True


async def get_events(services: Services, req: Request) -> StreamResponse:
    f = parse_filters(req.arg("filters"), EVENT_FILTERS)
    for t in f.get("type", []):
        if t not in EVENT_TYPES:
            raise InvalidArgument(f"invalid event type {t!r}")
    now = time.time_ns()
    since = req.arg("since")
    until = req.arg("until")
    since_ns = parse_time_ns(since, "since", now) if since else None
    until_ns = parse_time_ns(until, "until", now) if until else None
    if since_ns is not None and until_ns is not None and until_ns < since_ns:
        raise InvalidArgument("`since` time must be before `until` time")
    journal = services.journal
    after = await journal.seq_before_time(since_ns) if since_ns is not None else None

    def match(env: Envelope) -> bool:
        msg = docker_message(env)
        return msg is not None and matches(msg, f)

    async def stream() -> AsyncIterator[bytes]:
        if until_ns is not None and until_ns <= now:
            # a closed window: the journal already holds all of it
            source = journal.history(after_seq=after or 0, where="time_ns <= ?", params=(until_ns,), match=match)
            timeout = None
        else:
            source = journal.subscribe(after_seq=after, match=match)
            timeout = None if until_ns is None else (until_ns - now) / 1e9
        try:
            async with asyncio.timeout(timeout):
                async for env in source:
                    if until_ns is not None and env.time_ns > until_ns:
                        return
                    msg = docker_message(env)
                    if msg is not None:
                        yield _enc.encode(msg) + b"\n"
        except TimeoutError:
            return
        finally:
            await source.aclose()  # type: ignore[attr-defined]  # an async generator

    return StreamResponse(stream())
