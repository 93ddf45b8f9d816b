"""The daemon's side of the shim API: an asyncio client, and ways to start a shim.

    client = await ShimClient.connect("/run/engine/shims/moby/abc.sock")
    await client.create(bundle, stdout=fifo, log={"path": p, "max_size": 10 << 20, "max_file": 3})
    await client.start()
    async for ev in client.events(after=last_seen):   # resumes where the daemon stopped
        ...; await client.ack(ev["seq"])
    info = await client.wait()          # {"pid", "exit_status", "exited_at"}
    await client.delete()               # the shim then exits and leaves nothing

Every call returns the method's result dict or raises the engine.errors class named by the
shim's error code.  When the connection goes (the shim was killed, or exited after Delete),
pending calls and event iterators raise ``Unavailable("shim connection lost: ...")``.
Reconnecting is simply ``ShimClient.connect`` again: the shim keeps its task, its stdio and
every unacknowledged event, so ``events(after=n)`` on the new connection continues the old
stream without a gap.

Starting shims: ``spawn_shim(...)`` runs the ``engine-shim`` command (a fresh interpreter);
``spawn_from_fork_server(server_socket, ...)`` asks a running fork server (forkserver.py).
Both return the shim's pid once its socket listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
from collections.abc import AsyncIterator

from engine.errors import EngineError, Unavailable
from engine.runtime.shim import wire


class ShimClient:
    def __init__(self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.path = path
        self._reader, self._writer = reader, writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._events: asyncio.Queue = asyncio.Queue()
        self._outputs: dict[str, asyncio.Queue] = {}
        self._lost: Exception | None = None
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(cls, path: str, timeout: float = 5.0) -> ShimClient:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(path, limit=1 << 22), timeout
            )
        except (TimeoutError, OSError) as e:
            raise Unavailable(f"connect to shim {path}: {e}".lower()) from e
        return cls(path, reader, writer)

    async def close(self) -> None:
        self._task.cancel()
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    @property
    def connected(self) -> bool:
        return self._lost is None

    async def _read_loop(self) -> None:
        buf = bytearray()
        try:
            while True:
                data = await self._reader.read(1 << 20)
                if not data:
                    raise ConnectionResetError("eof")
                buf += data
                for kind, body in wire.split_frames(buf):
                    self._dispatch(kind, body)
        except asyncio.CancelledError:
            self._fail(Unavailable("shim client closed"))
            raise
        except Exception as e:  # noqa: BLE001 (any failure ends the connection)
            self._fail(Unavailable(f"shim connection lost: {e}".lower()))

    def _dispatch(self, kind: int, body: bytes) -> None:
        if kind == wire.JSON:
            msg = json.loads(body)
            if "event" in msg:
                self._events.put_nowait(msg["event"])
                return
            fut = self._pending.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                if "error" in msg:
                    try:
                        wire.raise_error(msg["error"])
                    except EngineError as e:
                        fut.set_exception(e)
                else:
                    fut.set_result(msg.get("result"))
        elif kind in (wire.OUTPUT, wire.OUTPUT_END):
            stream, exec_id, data = wire.unpack_data(body)
            q = self._outputs.get(exec_id)
            if q is not None:
                q.put_nowait((stream, data if kind == wire.OUTPUT else None))

    def _fail(self, err: Exception) -> None:
        if self._lost is not None:
            return
        self._lost = err
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()
        self._events.put_nowait(err)
        for q in self._outputs.values():
            q.put_nowait(err)

    async def call(self, method: str, **params) -> dict:
        if self._lost is not None:
            raise self._lost
        rid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self._writer.write(wire.pack_json({"id": rid, "method": method, "params": params}))
        return await fut

    # -- the API ---------------------------------------------------------------------------------
    async def connect_info(self) -> dict:
        return await self.call("Connect")

    async def create(
        self,
        bundle: str,
        *,
        stdin: str = "",
        stdout: str = "",
        stderr: str = "",
        terminal: bool = False,
        open_stdin: bool = False,
        log: dict | None = None,
    ) -> dict:
        params: dict = {
            "bundle": bundle,
            "stdin": stdin,
            "stdout": stdout,
            "stderr": stderr,
            "terminal": terminal,
            "open_stdin": open_stdin,
        }
        if log:
            params["log"] = log
        return await self.call("Create", **params)

    async def start(self, exec_id: str = "") -> dict:
        return await self.call("Start", exec_id=exec_id)

    async def state(self, exec_id: str = "") -> dict:
        return await self.call("State", exec_id=exec_id)

    async def kill(self, signal: int = 15, exec_id: str = "", all: bool = False) -> dict:  # noqa: A002
        return await self.call("Kill", signal=signal, exec_id=exec_id, all=all)

    async def delete(self, exec_id: str = "") -> dict:
        return await self.call("Delete", exec_id=exec_id)

    async def exec(
        self,
        exec_id: str,
        spec: dict,
        *,
        stdin: str = "",
        stdout: str = "",
        stderr: str = "",
        open_stdin: bool = False,
    ) -> dict:
        return await self.call(
            "Exec",
            exec_id=exec_id,
            spec=spec,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            open_stdin=open_stdin,
        )

    async def resize_pty(self, width: int, height: int, exec_id: str = "") -> dict:
        return await self.call("ResizePty", exec_id=exec_id, width=width, height=height)

    async def close_io(self, exec_id: str = "") -> dict:
        return await self.call("CloseIO", exec_id=exec_id, stdin=True)

    async def wait(self, exec_id: str = "") -> dict:
        return await self.call("Wait", exec_id=exec_id)

    async def pids(self) -> list[dict]:
        return (await self.call("Pids"))["pids"]

    async def stats(self) -> dict:
        return await self.call("Stats")

    async def pause(self) -> dict:
        return await self.call("Pause")

    async def resume(self) -> dict:
        return await self.call("Resume")

    async def update(self, resources: dict) -> dict:
        return await self.call("Update", resources=resources)

    async def shutdown(self, now: bool = False) -> dict:
        return await self.call("Shutdown", now=now)

    async def ack(self, seq: int) -> dict:
        return await self.call("Ack", seq=seq)

    async def events(self, after: int = 0) -> AsyncIterator[dict]:
        """Every event with seq > ``after``, then live ones; raises Unavailable when the shim goes."""
        await self.call("Subscribe", after=after)
        last = after
        while True:
            ev = await self._events.get()
            if isinstance(ev, Exception):
                self._events.put_nowait(ev)
                raise ev
            if ev["seq"] > last:
                last = ev["seq"]
                yield ev

    async def attach(self, exec_id: str = "", ready: asyncio.Event | None = None) -> AsyncIterator[tuple[int, bytes]]:
        """The process's output as (stream, bytes) from now on, until both streams end. `ready` is set once the
        shim has registered this reader (output from then on reaches it), or when there is nothing to follow."""
        q: asyncio.Queue = self._outputs.setdefault(exec_id, asyncio.Queue())
        try:
            res = await self.call("Attach", exec_id=exec_id)
        finally:
            if ready is not None:
                ready.set()
        if res.get("ended"):
            return
        open_streams = 2
        while open_streams:
            item = await q.get()
            if isinstance(item, Exception):
                raise item
            stream, data = item
            if data is None:
                open_streams -= 1
                if open_streams == 1 and await self._tty(exec_id):
                    return
                continue
            yield stream, data

    async def _tty(self, exec_id: str) -> bool:
        try:
            return bool((await self.state(exec_id)).get("terminal"))
        except EngineError:
            return True

    def write_stdin(self, data: bytes, exec_id: str = "") -> None:
        if self._lost is not None:
            raise self._lost
        self._writer.write(wire.pack_data(wire.INPUT, 0, exec_id, data))

    async def drain(self) -> None:
        await self._writer.drain()


def shim_argv(
    cid: str, namespace: str, socket: str, state_dir: str, runtime: str = "", runtime_root: str = "", log: str = ""
) -> list[str]:
    argv = ["--id", cid, "--namespace", namespace, "--socket", socket, "--state-dir", state_dir]
    if log:
        argv += ["--log", log]
    if runtime:
        argv += ["--runtime", runtime]
    if runtime_root:
        argv += ["--runtime-root", runtime_root]
    return argv


async def spawn_shim(argv: list[str], executable: str = "") -> int:
    """Start a shim with a fresh interpreter (``engine-shim ARGV``); returns its pid."""
    cmd = [executable] if executable else [sys.executable, "-m", "engine.runtime.shim.main"]
    proc = await asyncio.create_subprocess_exec(
        *cmd, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    # read the launcher's one line and its exit, not EOF: under uvloop the pipes are socketpairs whose child
    # ends the detached shim may still hold
    assert proc.stdout is not None and proc.stderr is not None
    out = await proc.stdout.readline()
    if await proc.wait() != 0:
        try:
            err = await asyncio.wait_for(proc.stderr.readline(), 5)
        except TimeoutError:
            err = b""
        raise Unavailable(err.decode().strip() or f"engine-shim exited with {proc.returncode}")
    return int(out.decode().split()[0])


async def spawn_from_fork_server(server_socket: str, argv: list[str]) -> int:
    """Ask a fork server for a shim; returns its pid once its socket listens."""
    try:
        reader, writer = await asyncio.open_unix_connection(server_socket)
    except OSError as e:
        raise Unavailable(f"connect to shim fork server {server_socket}: {e}".lower()) from e
    try:
        writer.write(wire.pack_json({"argv": argv}))
        buf = bytearray()
        while True:
            data = await reader.read(65536)
            if not data:
                raise Unavailable("shim fork server closed the connection without an answer")
            buf += data
            frames = wire.split_frames(buf)
            if frames:
                msg = json.loads(frames[0][1])
                if "error" in msg:
                    wire.raise_error(msg["error"])
                return int(msg["pid"])
    finally:
        writer.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
