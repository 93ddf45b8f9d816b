"""The streaming half of a Docker container's API: logs, attach, exec, resize, top, archive, export, changes.

``register(r, services)`` adds every route; the handlers live in attach.py (attach), exec.py (exec
instances), archive.py (``docker cp``, export) and here (logs, resize, top, changes).

* ``GET /containers/{id}/logs`` reads the shim's json-file log (engine/services/dockerd/logs.py): a
  chunked 200 of stdcopy frames without a TTY (raw bytes with one), ``tail``/``since``/``until``/
  ``timestamps`` as dockerd, and ``follow`` until the container's task exits.
* ``GET /containers/{id}/top`` runs the host's ``ps`` with ``ps_args`` and keeps the rows of the
  container's pids, as dockerd does, so any ps format works.
* ``GET /containers/{id}/changes`` compares the overlay upper dir with the lower layers: Kind 0
  modified, 1 added, 2 deleted (a whiteout); the mount points the runtime made (dockerd keeps them in its
  init layer) are left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import stat
from collections.abc import AsyncIterator
from typing import Any

from engine.api.docker import archive, attach
from engine.api.docker import exec as exec_api
from engine.api.docker.attach import NAMESPACE, content_type, docker
from engine.api.docker.http import Request, Response, StreamResponse
from engine.api.docker.router import Router
from engine.api.docker.timefmt import parse_time_ns
from engine.errors import Conflict, InvalidArgument, NotFound, Unimplemented
from engine.services import Services
from engine.services.dockerd import logs as logread
from engine.services.dockerd import rootfs
from engine.services.dockerd.stream_events import ContainerResized, ContainerTopListed

_STOPPED = {"task.exited", "task.vanished", "task.deleted"}


def register(r: Router, services: Services) -> None:
    def bind(fn):  # type: ignore[no-untyped-def]
        async def handler(req: Request):  # type: ignore[no-untyped-def]
            return await fn(services, req)

        return handler

    if services.config is not None:
        rootfs.clean_stale(services.config.exec_root)
    r.add("POST", "/containers/{id}/attach", bind(attach.post_attach))
    r.add("GET", "/containers/{id}/attach/ws", bind(attach.get_attach_ws))
    r.add("GET", "/containers/{id}/logs", bind(get_logs))
    r.add("POST", "/containers/{id}/resize", bind(post_resize))
    r.add("GET", "/containers/{id}/top", bind(get_top))
    r.add("GET", "/containers/{id}/changes", bind(get_changes))
    archive.register(r, bind)
    exec_api.register(r, bind, services)


def _int_arg(req: Request, name: str) -> int:
    v = req.arg(name, "")
    try:
        return int(v or "")
    except ValueError:
        raise InvalidArgument(f'strconv.Atoi: parsing "{v}": invalid syntax') from None


async def _running(services: Services, cid: str) -> Any:
    assert services.tasks is not None
    try:
        t = await services.tasks.get(NAMESPACE, cid)
    except NotFound:
        raise Conflict(f"container {cid} is not running") from None
    if t.status not in ("running", "paused"):
        raise Conflict(f"container {cid} is not running")
    return t


# ---- logs ------------------------------------------------------------------------------------------
async def task_stopped(services: Services, cid: str) -> None:
    """Returns once the container's task is no longer running (at once if it is not running now)."""
    assert services.tasks is not None
    sub = services.journal.subscribe(internal=True, match=lambda env: env.namespace == NAMESPACE
                                     and env.subject == cid and env.type in _STOPPED)
    try:
        try:
            t = await services.tasks.get(NAMESPACE, cid)
        except NotFound:
            return
        if t.status not in ("created", "running", "paused"):
            return
        await sub.__anext__()
    finally:
        await sub.aclose()


async def get_logs(services: Services, req: Request) -> StreamResponse:
    c = await docker(services).resolve(req.params["id"])
    want_out, want_err = req.flag("stdout"), req.flag("stderr")
    if not (want_out or want_err):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    log_type = ((c.host_config or {}).get("LogConfig") or {}).get("Type") or "json-file"
    if log_type not in ("json-file", "local"):
        raise Unimplemented('configured logging driver does not support reading')
    tail_arg = req.arg("tail", "all") or "all"
    if tail_arg == "all":
        tail = -1
    else:
        try:
            tail = int(tail_arg)
        except ValueError:
            raise InvalidArgument(f'invalid value for "tail": {tail_arg!r}') from None
        tail = -1 if tail < 0 else tail
    since = req.arg("since", "") or ""
    until = req.arg("until", "") or ""
    since_ns = parse_time_ns(since, "since") if since and since != "0" else 0
    until_ns = parse_time_ns(until, "until") if until and until != "0" else 0
    follow, stamps = req.flag("follow"), req.flag("timestamps")
    tty = bool((c.config or {}).get("Tty"))
    mux = not tty
    path = c.log_path or ""
    assert services.tasks is not None
    live = False
    if follow:
        with contextlib.suppress(NotFound):
            live = (await services.tasks.get(NAMESPACE, c.id)).status in ("created", "running", "paused")
    stopped = asyncio.ensure_future(task_stopped(services, c.id)) if live else None
    msgs, pos = await asyncio.get_running_loop().run_in_executor(
        None, lambda: logread.read_log(path, tail=tail, since_ns=since_ns, until_ns=until_ns))

    def render(m: logread.Message) -> bytes:
        if (m.stream == "stderr" and not want_err) or (m.stream != "stderr" and not want_out):
            return b""
        data = (logread.format_time(m.time_ns).encode() + b" " + m.data) if stamps else m.data
        return logread.frame(2 if m.stream == "stderr" else 1, data) if mux else data

    async def chunks() -> AsyncIterator[bytes]:
        try:
            batch = bytearray()
            for m in msgs:
                batch += render(m)
                if len(batch) >= 1 << 16:
                    yield bytes(batch)
                    batch.clear()
            if batch:
                yield bytes(batch)
            if stopped is not None and path:
                async for m in logread.follow(path, pos, stopped=stopped, until_ns=until_ns, since_ns=since_ns):
                    out = render(m)
                    if out:
                        yield out
        finally:
            if stopped is not None:
                stopped.cancel()

    return StreamResponse(chunks(), content_type=content_type(req, tty))


# ---- resize, top ----------------------------------------------------------------------------------------
async def post_resize(services: Services, req: Request) -> Response:
    c = await docker(services).resolve(req.params["id"])
    h, w = _int_arg(req, "h"), _int_arg(req, "w")
    if h < 0 or w < 0:
        raise InvalidArgument("height and width must be non-negative")
    await _running(services, c.id)
    assert services.tasks is not None
    if (c.config or {}).get("Tty"):
        await services.tasks.resize_pty(NAMESPACE, c.id, w, h)
    await services.journal.append([ContainerResized(container_id=c.id, height=h, width=w)], namespace=NAMESPACE,
                                  actor=req.actor)
    return Response(200, b"", "text/plain; charset=utf-8")


def parse_ps(output: str, pids: set[int]) -> dict[str, Any]:
    """dockerd's reading of ps output: the header's fields are the titles, the last one takes the rest."""
    lines = output.split("\n")
    titles = lines[0].split() if lines else []
    if "PID" not in titles:
        raise InvalidArgument("Couldn't find PID field in ps output")
    idx = titles.index("PID")
    procs = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) <= idx:
            continue
        try:
            pid = int(fields[idx])
        except ValueError:
            continue
        if pid in pids:
            procs.append(fields[: len(titles) - 1] + [" ".join(fields[len(titles) - 1:])])
    return {"Titles": titles, "Processes": procs}


async def get_top(services: Services, req: Request) -> Response:
    c = await docker(services).resolve(req.params["id"])
    await _running(services, c.id)
    assert services.tasks is not None
    pids = {int(p["pid"]) for p in await services.tasks.pids(NAMESPACE, c.id)}
    args = shlex.split(req.arg("ps_args", "") or "-ef")
    proc = await asyncio.create_subprocess_exec("ps", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise InvalidArgument(f"ps: {err.decode(errors='replace').strip()}")
    result = parse_ps(out.decode(errors="replace"), pids)
    await services.journal.append([ContainerTopListed(container_id=c.id)], namespace=NAMESPACE, actor=req.actor)
    return Response.json(result)


# ---- changes ----------------------------------------------------------------------------------------
_WHITEOUT_XATTR = "trusted.overlay.opaque"


def _in_lowers(lowers: list[str], rel: str) -> os.stat_result | None:
    for low in lowers:
        with contextlib.suppress(OSError):
            return os.lstat(os.path.join(low, rel))
    return None


def overlay_changes(upper: str, lowers: list[str], ignore: set[str]) -> list[dict[str, Any]]:
    """Docker's change list from an overlay upper dir: whiteouts are deletions, the rest added or modified."""
    out: list[dict[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(upper):
        rel_dir = os.path.relpath(dirpath, upper)
        for name in sorted(dirnames + filenames):
            rel = name if rel_dir == "." else os.path.join(rel_dir, name)
            path = "/" + rel
            if path in ignore:
                continue
            st = os.lstat(os.path.join(upper, rel))
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append({"Path": path, "Kind": 2})
                continue
            low = _in_lowers(lowers, rel)
            out.append({"Path": path, "Kind": 0 if low is not None else 1})
    # a directory copied up only because of an ignored mount point is not a change
    paths = {o["Path"] for o in out}
    keep = []
    for o in out:
        if o["Kind"] == 0 and stat.S_ISDIR(os.lstat(upper + o["Path"]).st_mode):
            has_child = any(p.startswith(o["Path"] + "/") for p in paths)
            only_ignored = any(i.startswith(o["Path"] + "/") for i in ignore)
            if not has_child and only_ignored:
                continue
        keep.append(o)
    return sorted(keep, key=lambda o: o["Path"])


async def get_changes(services: Services, req: Request) -> Response:
    c = await docker(services).resolve(req.params["id"])
    assert services.containers is not None
    upper, lowers = await rootfs.layers(services, c.id)
    if not upper:
        raise Unimplemented("changes are only known for containers on the overlayfs snapshotter")
    ignore = set()
    with contextlib.suppress(NotFound, ValueError):
        rec = await services.containers.get(NAMESPACE, c.id)
        spec = json.loads(rec.spec.value) if rec.spec is not None and rec.spec.value else {}
        ignore = {m.get("destination", "") for m in spec.get("mounts") or []}
    changes = await asyncio.get_running_loop().run_in_executor(None, overlay_changes, upper, lowers, ignore)
    return Response.json(changes or None)
