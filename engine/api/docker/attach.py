"""``POST /containers/{id}/attach``: the hijacked stdio of a container, as dockerd serves it.

The connection is taken over (``101 UPGRADED``, http.py's Hijack); output is written as stdcopy frames
when the container has no TTY (``application/vnd.docker.multiplexed-stream`` from API 1.42, the same
frames under the raw-stream type before), raw bytes with a TTY. Stdin (``stdin=1``) is forwarded to the
process; the detach keys (``detachKeys``, default ctrl-p,ctrl-q) are looked for in it here, server-side,
and end the attach with a ``docker_stream.detached`` event, the keys themselves never reaching the
process. The client's half-close (``docker run`` without ``-i`` shuts its write side at once) only ends
stdin; output keeps flowing until the container's output ends, then the connection is closed.

Attaching before the start (``docker run`` attaches, then starts): the handler subscribes to the journal
for the container's ``task.created`` and attaches to the shim as soon as it is journaled. The Docker
start then still has to journal ``task.start_requested`` and read the task back before the shim is told
to start, while the attach is one read and one frame to the same shim connection, so the attach is
registered first and no output is missed.

The helpers here (detach keys, the output pump, the hijack's task juggling) are shared by exec start.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from engine.api.docker.http import Conn, Hijack, Request
from engine.api.docker.router import version_tuple
from engine.errors import EngineError, InvalidArgument, NotFound
from engine.services import Services
from engine.services.dockerd import logs as logread
from engine.services.dockerd.stream_events import ContainerAttached, ContainerDetached

log = logging.getLogger(__name__)
NAMESPACE = "moby"
RAW = "application/vnd.docker.raw-stream"
MUX = "application/vnd.docker.multiplexed-stream"
DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
_LIVE = ("created", "running", "paused")


def docker(services: Services) -> Any:
    """The Docker container service (helper H3's ``services.docker``)."""
    svc = getattr(services, "docker", None) or services.extra.get("docker")
    if svc is None:
        raise EngineError("the docker container service is not available")
    return svc


def content_type(req: Request, tty: bool) -> str:
    return MUX if not tty and version_tuple(req.version) >= (1, 42) else RAW


def parse_detach_keys(spec: str) -> bytes:
    """Docker's detach key syntax: comma-separated ``ctrl-<x>`` or single characters."""
    out = bytearray()
    for part in spec.split(","):
        key = part.strip()
        if len(key) == 1:
            out.append(ord(key))
            continue
        low = key.lower()
        if low.startswith("ctrl-") and len(key) == 6:
            c = key[5].lower()
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
                continue
            special = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
            if c in special:
                out.append(special[c])
                continue
        raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    if not out:
        raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class DetachScanner:
    """Finds the detach sequence in stdin; bytes of a partial match are held, then passed on if it breaks."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = bytearray()

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to forward, whether the sequence was completed)."""
        if not self.keys or (not self.held and self.keys[0] not in data):
            return data, False
        out = bytearray()
        for b in data:
            if b == self.keys[len(self.held)]:
                self.held.append(b)
                if len(self.held) == len(self.keys):
                    return bytes(out), True
            else:
                out += self.held
                self.held.clear()
                if b == self.keys[0]:
                    self.held.append(b)
                else:
                    out.append(b)
        return bytes(out), False


def encoder(mux: bool, want: set[int]) -> Callable[[int, bytes], bytes]:
    def enc(stream: int, data: bytes) -> bytes:
        if stream not in want or not data:
            return b""
        return logread.frame(stream, data) if mux else data

    return enc


async def pump_stdin(conn: Conn, write: Callable[[bytes], Awaitable[None] | None], keys: bytes,
                     on_eof: Callable[[], Awaitable[None]] | None) -> bool:
    """Copy the client's input to the process until EOF (False) or the detach keys (True)."""
    scanner = DetachScanner(keys)
    while True:
        data = await conn.reader.read(65536)
        if not data:
            if on_eof is not None:
                with contextlib.suppress(EngineError):
                    await on_eof()
            return False
        fwd, detached = scanner.feed(data)
        if fwd:
            res = write(fwd)
            if inspect.isawaitable(res):
                await res
        if detached:
            return True


async def run_streams(conn: Conn, output: Awaitable[None], stdin: Awaitable[bool] | None) -> bool:
    """Run output and stdin side by side: done when the output ends, the detach keys come or the client
    goes; a stdin EOF alone ends nothing. Returns True when the client detached."""
    out_t = asyncio.ensure_future(output)
    in_t = asyncio.ensure_future(stdin) if stdin is not None else None
    lost_t = asyncio.ensure_future(conn.lost.wait())
    waiting = {out_t, lost_t} | ({in_t} if in_t is not None else set())
    detached = False
    try:
        while True:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if out_t in done or lost_t in done:
                break
            if in_t is not None and in_t in done:
                waiting.discard(in_t)
                if not in_t.cancelled() and in_t.exception() is None and in_t.result():
                    detached = True
                    break
        if out_t.done() and not out_t.cancelled() and out_t.exception() is not None:
            err = out_t.exception()
            if not isinstance(err, ConnectionError | EngineError):
                raise err  # type: ignore[misc]
    finally:
        for t in (out_t, in_t, lost_t):
            if t is not None and not t.done():
                t.cancel()
        for t in (out_t, in_t, lost_t):
            if t is not None:
                with contextlib.suppress(BaseException):
                    await t
    return detached


async def write_out(conn: Conn, chunks: AsyncIterator[tuple[int, bytes]], enc: Callable[[int, bytes], bytes]) -> None:
    async for stream, data in chunks:
        out = enc(stream, data)
        if out:
            conn.write(out)
            await conn.drain()


class _Hub:
    """One reader of a shim's init output, fanned out to every attached client (the stop-gap's own
    fan-out: the shim client keeps one queue per process, which two readers would split between them).
    When the last client goes, the client's queue is dropped so output nobody reads is not kept."""

    hubs: dict[tuple[int, str], _Hub] = {}

    def __init__(self, key: tuple[int, str], client: Any) -> None:
        self.key, self.client = key, client
        self.subs: set[asyncio.Queue[tuple[int, bytes] | None]] = set()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            async for item in self.client.attach(""):
                for q in list(self.subs):
                    q.put_nowait(item)
        except EngineError as err:
            log.info("attach %s: %s", self.key[1][:12], err)
        finally:
            self._forget()
            for q in list(self.subs):
                q.put_nowait(None)

    def _forget(self) -> None:
        if _Hub.hubs.get(self.key) is self:
            del _Hub.hubs[self.key]
        outputs = getattr(self.client, "_outputs", None)
        if isinstance(outputs, dict):
            outputs.pop("", None)

    def leave(self, q: asyncio.Queue[tuple[int, bytes] | None]) -> None:
        self.subs.discard(q)
        if not self.subs and not self.task.done():
            self.task.cancel()
            self._forget()


def task_output(tasks: Any, cid: str, ready: asyncio.Event | None = None) -> AsyncIterator[tuple[int, bytes]]:
    """The init's output from the shim: ``tasks.attach`` (helper H5's passthrough) when it exists, else the
    shim client directly through a fan-out (a stop-gap until it lands). `ready` is set once the shim has
    registered the reader."""
    if hasattr(tasks, "attach"):
        return tasks.attach(NAMESPACE, cid, ready=ready)  # type: ignore[no-any-return]

    async def via_client() -> AsyncIterator[tuple[int, bytes]]:
        t = await tasks.get(NAMESPACE, cid)
        client = await tasks._client((NAMESPACE, cid), t)
        key = (id(client), cid)
        hub = _Hub.hubs.get(key)
        if hub is None or hub.task.done():
            hub = _Hub.hubs[key] = _Hub(key, client)
        q: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        hub.subs.add(q)
        try:
            while (item := await q.get()) is not None:
                yield item
        finally:
            hub.leave(q)

    return via_client()


async def task_stdin(tasks: Any, cid: str, data: bytes) -> None:
    if hasattr(tasks, "write_stdin"):
        res = tasks.write_stdin(NAMESPACE, cid, data)
        if inspect.isawaitable(res):
            await res
        return
    t = await tasks.get(NAMESPACE, cid)
    (await tasks._client((NAMESPACE, cid), t)).write_stdin(data, "")


async def _live_task(services: Services, cid: str, conn: Conn) -> bool:
    """Wait until the container's task is live (created or running); False if the client went first."""
    assert services.tasks is not None
    sub = services.journal.subscribe(internal=True, match=lambda env: env.namespace == NAMESPACE
                                     and env.subject == cid and env.type == "task.created")
    try:
        with contextlib.suppress(NotFound):
            if (await services.tasks.get(NAMESPACE, cid)).status in _LIVE:
                return True
        nxt = asyncio.ensure_future(sub.__anext__())
        lost = asyncio.ensure_future(conn.lost.wait())
        try:
            done, _ = await asyncio.wait({nxt, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (nxt, lost):
                t.cancel()
        return nxt in done and not nxt.cancelled() and nxt.exception() is None
    finally:
        await sub.aclose()


async def post_attach(services: Services, req: Request) -> Hijack:
    c = await docker(services).resolve(req.params["id"])
    cid = c.id
    tty = bool((c.config or {}).get("Tty"))
    want_in, want_out, want_err = req.flag("stdin"), req.flag("stdout"), req.flag("stderr")
    replay, stream = req.flag("logs"), req.flag("stream")
    keys = parse_detach_keys(req.arg("detachKeys") or (c.config or {}).get("DetachKeys") or DEFAULT_DETACH_KEYS)
    mux = not tty
    want = {1} if tty and (want_out or want_err) else ({1} if want_out else set()) | ({2} if want_err else set())
    enc = encoder(mux, want)
    # dockerd closes the process's stdin when this client's stdin ends only without a TTY: with one, the
    # client's EOF (it detached, or it went) must not end the shell for the next attach
    stdin_once = bool((c.config or {}).get("StdinOnce")) and not tty
    tasks = services.tasks
    assert tasks is not None
    await services.journal.append([ContainerAttached(container_id=cid, stdin=want_in, stdout=want_out,
                                                     stderr=want_err)], namespace=NAMESPACE, actor=req.actor)

    async def run(conn: Conn) -> None:
        if replay and c.log_path:
            msgs, _ = await asyncio.get_running_loop().run_in_executor(None, lambda: logread.read_log(c.log_path))
            for m in msgs:
                out = enc(1 if tty or m.stream == "stdout" else 2, m.data)
                if out:
                    conn.write(out)
            await conn.drain()
        if not stream:
            return
        # a start that comes after this attach (docker run: attach, then start) waits until the shim has
        # registered our reader, so the process's first bytes reach this client
        svc = docker(services)
        pending = svc.attach_pending(cid) if hasattr(svc, "attach_pending") else None
        try:
            if not await _live_task(services, cid, conn):
                return
            await follow(conn, pending)
        finally:
            if pending is not None:
                svc.attach_done(cid, pending)

    async def follow(conn: Conn, pending: asyncio.Event | None) -> None:
        ready = asyncio.Event()
        registered = pending or asyncio.Event()

        async def output() -> None:
            it = task_output(tasks, cid, registered)
            if inspect.isawaitable(it):
                it = await it
            ready.set()
            await write_out(conn, it, enc)

        async def stdin() -> bool:
            await ready.wait()

            async def eof() -> None:
                if stdin_once:
                    await tasks.close_io(NAMESPACE, cid)

            return await pump_stdin(conn, lambda data: task_stdin(tasks, cid, data), keys, eof)

        detached = await run_streams(conn, output(), stdin() if want_in else None)
        if detached:
            await services.journal.append([ContainerDetached(container_id=cid)], namespace=NAMESPACE,
                                          actor=req.actor)

    return Hijack(run, content_type(req, tty))


async def get_attach_ws(services: Services, req: Request) -> Any:
    from engine.errors import Unimplemented

    await docker(services).resolve(req.params["id"])
    raise Unimplemented("attach over a websocket is not supported by engine; use POST /containers/{id}/attach")
