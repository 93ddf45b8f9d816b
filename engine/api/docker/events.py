"""``GET /events``: journal envelopes rendered as Docker's event messages, filtered as dockerd filters.

Only journal events that Docker has a name for become Docker events (the tables ``CONTAINER_ACTIONS`` and
``IMAGE_ACTIONS`` below; ``render`` returns None for the others, e.g. containerd namespace changes, which
dockerd does not report either). The stream is the
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


# ---- the mapping: journal event type -> Docker's event --------------------------------------------------
# Container events (Type "container"): journal type -> Docker action. The Actor is the container id (the
# envelope's subject); its attributes are the container's image, name and labels as the journal knew them at
# that event (docker_container.created / .renamed), plus the action's own (below). Only containers the
# dockerd role made are reported: a task in namespace moby without a docker_container.created is skipped.
CONTAINER_ACTIONS: dict[str, str] = {
    "docker_container.created": "create",
    "task.started": "start",
    "task.exited": "die",
    "task.vanished": "die",
    "task.killed": "kill",
    "docker_container.stopped": "stop",
    "task.paused": "pause",
    "task.resumed": "unpause",
    "docker_container.restarted": "restart",
    "docker_container.renamed": "rename",
    "docker_container.updated": "update",
    "docker_container.removed": "destroy",
    "docker_container.pruned": "prune",
    "task.oom_killed": "oom",
    "docker_container.health_status_changed": "health_status",
    "docker_stream.attached": "attach",
    "docker_stream.detached": "detach",
    "docker_stream.resized": "resize",
    "docker_stream.top_listed": "top",
    "docker_stream.path_accessed": "archive-path",
    "docker_stream.extracted": "extract-to-dir",
    "docker_stream.exported": "export",
    "docker_exec.created": "exec_create",
    "task.exec_started": "exec_start",
    "task.exec_exited": "exec_die",
    "docker_exec.detached": "exec_detach",
    "docker_container.committed": "commit",
}
# Image events (Type "image"): journal type -> (Docker action, payload field for Actor.ID, payload field for
# the "name" attribute or ""). A reference is shown in Docker's familiar form (busybox:latest); a list field
# gives its first element. pull/push name the reference (Actor.ID "busybox:latest", name "busybox"), the
# others the image ID, as dockerd does.
IMAGE_ACTIONS: dict[str, tuple[str, str, str]] = {
    "image.pulled": ("pull", "name", "name"),
    "image.pushed": ("push", "name", "name"),
    "image.tagged": ("tag", "id", "name"),
    "image.untagged": ("untag", "id", "name"),
    "image.removed": ("delete", "id", "names"),
    "image.imported": ("import", "id", "name"),
    "image.loaded": ("load", "id", "names"),
    "image.saved": ("save", "id", "names"),
    "image.pruned": ("prune", "", ""),
}
# Volume events (Type "volume"): journal type -> Docker action; the Actor is the volume's name, with the
# driver and, for mount/unmount, the container (and destination and read/write for mount).
VOLUME_ACTIONS: dict[str, str] = {
    "volume.created": "create",
    "volume.removed": "destroy",
    "volume.mounted": "mount",
    "volume.unmounted": "unmount",
}
# Network events (Type "network"): the Actor is the network id with its name and driver ("type"); connect
# and disconnect also name the container. The predefined networks made at daemon start are not reported.
NETWORK_ACTIONS: dict[str, str] = {
    "network.created": "create",
    "network.removed": "destroy",
    "endpoint.attached": "connect",
    "endpoint.detached": "disconnect",
}
MAPPED = (frozenset(CONTAINER_ACTIONS) | frozenset(IMAGE_ACTIONS) | frozenset(VOLUME_ACTIONS)
          | frozenset(NETWORK_ACTIONS) | {DaemonReloaded.TYPE})
_CONTEXT_TYPES = ("docker_container.created", "docker_container.renamed", "task.started")


def _message(typ: str, action: str, actor_id: str, attrs: dict[str, str], env: Envelope) -> dict[str, Any]:
    msg: dict[str, Any] = {"Type": typ, "Action": action, "Actor": {"ID": actor_id, "Attributes": attrs},
                           "scope": "local", "time": env.time_ns // 1_000_000_000, "timeNano": env.time_ns}
    if typ in ("container", "image"):  # the legacy fields dockerd still fills for these two types
        msg = {"status": action, "id": actor_id, **({"from": attrs["image"]} if "image" in attrs else {}), **msg}
    return msg


def docker_message(env: Envelope) -> dict[str, Any] | None:
    """Docker's message for an envelope that needs no lookup (daemon, image events), else None."""
    ev = env.event
    if isinstance(ev, DaemonReloaded):
        return _message("daemon", "reload", ev.daemon_id, {"name": ev.name, **ev.attributes}, env)
    vaction = VOLUME_ACTIONS.get(env.type)
    if vaction is not None:
        data = msgspec.to_builtins(ev)
        if vaction == "unmount" and not data.get("container"):
            return None  # recovery's cleanup of a mount, not a container's unmount
        attrs = {"driver": data.get("driver") or "local"}
        if vaction in ("mount", "unmount"):
            attrs["container"] = data.get("container", "")
        if vaction == "mount":
            attrs.update({"destination": data.get("destination", ""), "propagation": "",
                          "read/write": "true" if data.get("read_write", True) else "false"})
        return _message("volume", vaction, data.get("name", env.subject), attrs, env)
    row = IMAGE_ACTIONS.get(env.type)
    if row is not None:
        action, id_field, name_field = row
        data = msgspec.to_builtins(ev)
        if action == "prune":
            return _message("image", "prune", "", {"reclaimed": str(data.get("reclaimed", 0))}, env)
        actor_id = _familiar(_first(data.get(id_field, env.subject)))
        attrs = {}
        if name_field and _first(data.get(name_field)):
            name = _familiar(_first(data.get(name_field)))
            attrs["name"] = name.rsplit(":", 1)[0] if action in ("pull", "push") and "@" not in name else name
        return _message("image", action, actor_id, attrs, env)
    return None


def _first(v: Any) -> str:
    if isinstance(v, list):
        return str(v[0]) if v else ""
    return "" if v is None else str(v)


def _familiar(ref: str) -> str:
    """Docker's short form of a full reference (docker.io/library/busybox:latest → busybox:latest)."""
    if not ref or ref.startswith("sha256:") or ref.startswith("moby-dangling@"):
        return ref
    try:
        from engine.images.reference import parse as parse_ref

        return parse_ref(ref).familiar()
    except Exception:  # not a reference: shown as it is
        return ref


def _context(conn: Any, cid: str, seq: int, exec_id: str) -> tuple[dict[str, Any] | None, str, int, list[str]]:
    """(created payload, current name, last start time, exec cmd) of container `cid` as of `seq`."""
    created, name, started = None, "", 0
    rows = conn.execute("SELECT type, payload, time_ns FROM events WHERE subject = ? AND namespace = 'moby' AND "
                        "seq <= ? AND type IN (?, ?, ?) ORDER BY seq", (cid, seq, *_CONTEXT_TYPES)).fetchall()
    for typ, payload, t in rows:
        data = msgspec.json.decode(payload)
        if typ == "docker_container.created":
            created, name = data, data.get("name", "")
        elif typ == "docker_container.renamed":
            name = data.get("name", name)
        else:
            started = t
    cmd: list[str] = []
    if exec_id:
        row = conn.execute("SELECT payload FROM events WHERE subject = ? AND type = 'docker_exec.created' AND "
                           "json_extract(payload, '$.exec_id') = ? ORDER BY seq DESC LIMIT 1", (cid, exec_id)).fetchone()
        if row:
            cmd = msgspec.json.decode(row[0]).get("cmd") or []
    return created, name, started, cmd


def _network(conn: Any, network_id: str, seq: int) -> dict[str, Any] | None:
    row = conn.execute("SELECT payload FROM events WHERE type = 'network.created' AND subject = ? AND seq <= ? "
                       "ORDER BY seq DESC LIMIT 1", (network_id, seq)).fetchone()
    return msgspec.json.decode(row[0]) if row else None


async def _network_message(services: Services, env: Envelope) -> dict[str, Any] | None:
    ev = msgspec.to_builtins(env.event)
    action = NETWORK_ACTIONS[env.type]
    nid = ev.get("network_id") or ev.get("id") or env.subject
    net = ev if action == "create" else await services.journal.run_read(lambda conn: _network(conn, nid, env.seq))
    if not net or net.get("builtin"):
        return None
    attrs = {"name": net.get("name", ""), "type": net.get("driver", "bridge")}
    if action in ("connect", "disconnect"):
        attrs["container"] = ev.get("container_id", "")
    return _message("network", action, nid, attrs, env)


async def render(services: Services, env: Envelope) -> dict[str, Any] | None:
    """Docker's event message for a journal envelope, or None when Docker has no such event."""
    if env.type in NETWORK_ACTIONS:
        return await _network_message(services, env)
    msg = docker_message(env)
    if msg is not None or env.type not in CONTAINER_ACTIONS:
        return msg
    if env.namespace != "moby":
        return None
    ev = msgspec.to_builtins(env.event)
    action = CONTAINER_ACTIONS[env.type]
    if action == "prune":
        return _message("container", "prune", "", {"reclaimed": str(ev.get("reclaimed", 0))}, env)
    if env.type == "task.killed" and ev.get("exec_id"):
        return None
    exec_id = ev.get("exec_id", "") if action.startswith("exec_") else ""
    context: tuple[dict[str, Any] | None, str, int, list[str]] = await services.journal.run_read(
        lambda conn: _context(conn, env.subject, env.seq, exec_id))  # type: ignore[assignment]
    created, name, started, cmd = context
    if created is None:
        return None
    attrs: dict[str, str] = {**(created.get("labels") or {}), "image": created.get("image", ""),
                             "name": name.lstrip("/")}
    if action == "die":
        attrs["exitCode"] = str(ev.get("exit_status", 0))
        if started:
            attrs["execDuration"] = str(max(0, (env.time_ns - started) // 1_000_000_000))
    elif action == "kill":
        attrs["signal"] = str(ev.get("signal", ""))
    elif action == "rename":
        attrs["oldName"] = ev.get("old_name", "")
    elif action == "resize":
        attrs["height"], attrs["width"] = str(ev.get("height", 0)), str(ev.get("width", 0))
    elif action == "health_status":
        action = f"health_status: {ev.get('status', '')}"
    elif action == "commit":
        attrs.update({"comment": ev.get("comment", ""), "imageID": ev.get("image_id", ""),
                      "imageRef": _familiar(ev.get("ref", ""))})
    elif action in ("archive-path", "extract-to-dir"):
        attrs["path"] = ev.get("path", "")
    elif action.startswith("exec_"):
        attrs["execID"] = exec_id
        if action == "exec_die":
            attrs["exitCode"] = str(ev.get("exit_status", 0))
        if action in ("exec_create", "exec_start"):
            action = f"{action}: {' '.join(cmd or ev.get('cmd') or [])}"
    return _message("container", action, env.subject, attrs, env)


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
        return env.type in MAPPED

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
                    msg = await render(services, env)
                    if msg is not None and matches(msg, f):
                        yield _enc.encode(msg) + b"\n"
        except TimeoutError:
            return
        finally:
            await source.aclose()  # type: ignore[attr-defined]  # an async generator

    return StreamResponse(stream())
