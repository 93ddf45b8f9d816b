"""The shim's API server: a unix socket, one selectors loop, one handler per method.

Methods (params → result; errors carry an engine.errors grpc code, see wire.py):

* ``Connect`` {} → {shim_pid, task_pid, id, namespace, runtime, version, last_seq}
* ``Create`` {bundle, stdin?, stdout?, stderr?, terminal?, open_stdin?, log?: {path, max_size,
  max_file}} → {pid}
* ``Start`` {exec_id?} → {pid};  ``State`` {exec_id?} → {id, exec_id, pid, status, exit_status,
  exited_at, terminal, bundle, stdin, stdout, stderr}
* ``Kill`` {exec_id?, signal, all?} → {};  ``Delete`` {exec_id?} → {pid, exit_status, exited_at}
  (deleting the init ends the shim: it removes its socket and state dir and exits)
* ``Exec`` {exec_id, spec (an OCI process), stdin?, stdout?, stderr?, terminal?, open_stdin?} → {}
* ``ResizePty`` {exec_id?, width, height};  ``CloseIO`` {exec_id?, stdin: true}
* ``Wait`` {exec_id?} → {exit_status, exited_at, pid} (answered when the process has exited)
* ``Pids`` {} → {pids: [{pid, exec_id}]};  ``Stats`` {} → the cgroup's stats (runc's shape)
* ``Pause``/``Resume`` {};  ``Update`` {resources (OCI linux.resources)}
* ``Subscribe`` {after} → {last_seq}, then ``{"event": ...}`` frames: the kept events with seq >
  after, then live ones;  ``Ack`` {seq} → {kept}
* ``Attach`` {exec_id?} → {}, then ``O``/``E`` frames with that process's output
* ``Shutdown`` {now?} → {exiting}: exits when no task is left (or ``now``)

A connection that goes away changes nothing but its own subscriptions.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import shutil
import socket
from collections.abc import Callable

from engine.errors import EngineError, FailedPrecondition, InvalidArgument, NotFound
from engine.runtime.shim import wire
from engine.runtime.shim.loop import Loop, Writer
from engine.runtime.shim.procio import ProcIO
from engine.runtime.shim.task import CREATED, PAUSED, RUNNING, STOPPED, Proc, Task

VERSION = "1"


class Conn:
    def __init__(self, server: Server, sock: socket.socket) -> None:
        self.server, self.sock = server, sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.out = Writer(server.loop, os.dup(self.fd), cap=64 << 20, on_error=self.close)
        self.closed = False
        self.dropped = 0

    def on_read(self, _mask: int) -> None:
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self.inbuf += data
        try:
            frames = wire.split_frames(self.inbuf)
        except InvalidArgument:
            self.close()
            return
        for kind, body in frames:
            if self.closed:
                return
            self.server.dispatch(self, kind, body)

    def send_bytes(self, frame: bytes, droppable: bool = False) -> None:
        if self.closed:
            return
        if droppable and len(self.out.buf) > (16 << 20):
            self.dropped += len(frame)
            return
        self.out.write(frame)

    def send(self, obj: dict) -> None:
        self.send_bytes(wire.pack_json(obj))

    def send_event(self, ev: dict) -> None:
        self.send({"event": ev})

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.server.loop.remove(self.fd)
        self.server.forget(self)
        self.out.close()
        self.sock.close()


class Server:
    def __init__(self, loop: Loop, task: Task, socket_path: str, namespace: str) -> None:
        self.loop, self.task, self.socket_path, self.namespace = loop, task, socket_path, namespace
        self.conns: list[Conn] = []
        self.exiting = False
        os.makedirs(os.path.dirname(socket_path), 0o711, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(socket_path)
        os.chmod(socket_path, 0o600)
        self.listener.listen(64)
        self.listener.setblocking(False)
        loop.add(self.listener.fileno(), selectors.EVENT_READ, self._accept)
        loop.on_sigchld = task.reap

    def _accept(self, _mask: int) -> None:
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        conn = Conn(self, sock)
        self.conns.append(conn)
        self.loop.add(conn.fd, selectors.EVENT_READ, conn.on_read)

    def forget(self, conn: Conn) -> None:
        if conn in self.conns:
            self.conns.remove(conn)
        t = self.task
        if conn in t.events.subscribers:
            t.events.subscribers.remove(conn)
        for p in [t.init, *t.execs.values()]:
            if p is not None and conn in p.io.attached:
                p.io.attached.remove(conn)

    def dispatch(self, conn: Conn, kind: int, body: bytes) -> None:
        if kind == wire.INPUT:
            try:
                _stream, exec_id, data = wire.unpack_data(body)
                self.task.proc(exec_id).io.write_stdin(data)
            except EngineError:
                pass
            return
        if kind != wire.JSON:
            conn.close()
            return
        import json

        try:
            req = json.loads(body)
            rid = req["id"]
            method = METHODS[req["method"]]
        except (ValueError, KeyError, TypeError):
            conn.send({"id": None, "error": {"code": "INVALID_ARGUMENT", "message": "bad request"}})
            return
        params = req.get("params") or {}
        try:
            result = method(self, conn, params, rid)
        except Exception as e:  # noqa: BLE001 (every failure goes back to the caller)
            conn.send({"id": rid, "error": wire.error_body(e)})
            return
        if result is not _DEFERRED:
            conn.send({"id": rid, "result": result if result is not None else {}})
        if self.exiting:
            self._finish()

    # -- lifecycle ----------------------------------------------------------------------------
    def on_Connect(self, conn, p, rid):
        t = self.task
        return {
            "shim_pid": os.getpid(),
            "task_pid": t.init.pid if t.init else 0,
            "id": t.cid,
            "namespace": self.namespace,
            "runtime": t.backend.name,
            "version": VERSION,
            "last_seq": t.events.seq,
        }

    def on_Create(self, conn, p, rid):
        from engine.runtime.shim.jsonlog import JSONFileWriter

        t = self.task
        if t.init is not None:
            raise FailedPrecondition(f"task {t.cid} already created")
        bundle = _str(p, "bundle", required=True)
        terminal = bool(p.get("terminal"))
        log = None
        if p.get("log"):
            lg = p["log"]
            log = JSONFileWriter(
                _str(lg, "path", required=True), int(lg.get("max_size", -1)), int(lg.get("max_file", 1))
            )
        io = ProcIO(
            self.loop,
            "",
            stdin=_str(p, "stdin"),
            stdout=_str(p, "stdout"),
            stderr=_str(p, "stderr"),
            open_stdin=bool(p.get("open_stdin")),
            terminal=terminal,
            log=log,
        )
        proc = Proc("", io)
        try:
            pid = self._spawn(
                io, terminal, lambda stdio, cfd, csock: t.backend.create(t.cid, bundle, stdio, cfd, csock)
            )
        except BaseException:
            io.close()
            if log is not None:
                log.close()
            raise
        proc.pid = pid
        t.init, t.bundle, t.log = proc, bundle, log
        t.watch_oom()
        t.events.emit("create", "", pid=pid, bundle=bundle)
        return {"pid": pid}

    def _spawn(self, io: ProcIO, terminal: bool, call) -> int:
        """Run ``call(stdio, console_fd, console_socket)`` with this process's stdio set up."""
        if not terminal:
            stdio = io.child_stdio()
            try:
                pid = call(stdio, -1, None)
            except BaseException:
                io.close()
                raise
            io.spawned()
            return pid
        from engine.runtime import tty

        if self.task.backend.name == "engine" and not io.exec_id:
            a, b = tty.console_pair()  # the in-process runtime hands the master over a socketpair
            try:
                pid = call(None, b.fileno(), None)
            finally:
                b.close()
            try:
                master = tty.recv_master(a)
            finally:
                a.close()
        else:
            # a console socket for the runtime to send the master through, in a short private directory:
            # the state dir (<root>/shims/<ns>/<64-hex id>) can exceed AF_UNIX's 107-byte path limit
            sockdir = _private_dir("/tmp", f"engine-tty-{os.getpid()}")
            path = os.path.join(sockdir, "console.sock")
            lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                lst.bind(path)
                lst.listen(1)
                pid = call(None, -1, path)
                lst.settimeout(10)
                conn, _ = lst.accept()
                try:
                    master = tty.recv_master(conn)
                finally:
                    conn.close()
            finally:
                lst.close()
                with contextlib.suppress(OSError):
                    os.unlink(path)
                with contextlib.suppress(OSError):
                    os.rmdir(sockdir)
        io.set_master(master)
        io.spawned()
        return pid

    def on_Start(self, conn, p, rid):
        t = self.task
        exec_id = _str(p, "exec_id")
        proc = t.proc(exec_id)
        if proc.status != CREATED:
            raise FailedPrecondition(f"cannot start a {t.status(proc)} process")
        if not exec_id:
            t.backend.start(t.cid)
            if proc.status == CREATED:
                proc.status = RUNNING
            t.events.emit("start", "", pid=proc.pid)
            return {"pid": proc.pid}
        init = t.proc("")
        if init.status not in (RUNNING,):
            raise FailedPrecondition(f"cannot start an exec in a {t.status(init)} task")
        pid_file = os.path.join(t.state_dir, f"exec-{exec_id}.pid")
        proc.pid = self._spawn(
            proc.io,
            bool(proc.spec.get("terminal")),
            lambda stdio, cfd, csock: t.backend.exec(t.cid, exec_id, proc.spec, stdio, cfd, csock, pid_file),
        )
        proc.status = RUNNING
        t.events.emit("exec_started", exec_id, pid=proc.pid)
        t.reap()  # a very short process may already be gone
        return {"pid": proc.pid}

    def on_Exec(self, conn, p, rid):
        t = self.task
        exec_id = _str(p, "exec_id", required=True)
        t.check_exec_allowed(exec_id)
        spec = p.get("spec")
        if not isinstance(spec, dict) or not spec.get("args"):
            raise InvalidArgument("exec spec must be an OCI process with args")
        terminal = bool(spec.get("terminal"))
        io = ProcIO(
            self.loop,
            exec_id,
            stdin=_str(p, "stdin"),
            stdout=_str(p, "stdout"),
            stderr=_str(p, "stderr"),
            open_stdin=bool(p.get("open_stdin")),
            terminal=terminal,
        )
        t.execs[exec_id] = Proc(exec_id, io, spec)
        t.events.emit("exec_added", exec_id)
        return {}

    def on_State(self, conn, p, rid):
        t = self.task
        proc = t.proc(_str(p, "exec_id"))
        return {
            "id": t.cid,
            "exec_id": proc.exec_id,
            "pid": proc.pid,
            "status": t.status(proc),
            "exit_status": proc.exit_status,
            "exited_at": proc.exited_at,
            "terminal": proc.io.terminal,
            "bundle": t.bundle,
            **proc.io.paths,
        }

    def on_Kill(self, conn, p, rid):
        t = self.task
        exec_id = _str(p, "exec_id")
        proc = t.proc(exec_id)
        sig = p.get("signal", 15)
        if not isinstance(sig, int) or not 0 < sig < 65:
            raise InvalidArgument(f"invalid signal {sig!r}")
        if not exec_id:
            if proc.status == STOPPED and not p.get("all"):
                raise NotFound("process already finished")
            t.backend.kill(t.cid, sig, bool(p.get("all")))
            return {}
        if proc.status != RUNNING:
            raise (
                NotFound("process already finished")
                if proc.status == STOPPED
                else FailedPrecondition("process not started")
            )
        os.kill(proc.pid, sig)
        return {}

    def on_Delete(self, conn, p, rid):
        t = self.task
        exec_id = _str(p, "exec_id")
        proc = t.proc(exec_id)
        if exec_id:
            if proc.status == RUNNING:
                raise FailedPrecondition(f"cannot delete a running exec {exec_id}")
            proc.io.close()
            del t.execs[exec_id]
            t.events.emit("delete", exec_id, **proc.exit_info())
            return proc.exit_info()
        if proc.status in (RUNNING, PAUSED):
            raise FailedPrecondition(f"cannot delete a running task {t.cid}")
        if any(e.status == RUNNING for e in t.execs.values()):
            raise FailedPrecondition(f"cannot delete task {t.cid}: exec processes are running")
        t.backend.delete(t.cid, force=proc.status == CREATED)
        if proc.status == CREATED:  # the init was killed by the delete
            t.reap()
        t.stop_oom()
        for e in t.execs.values():
            e.io.close()
        proc.io.close()
        if t.log is not None:
            t.log.close()
        t.deleted = True
        self.exiting = True
        return proc.exit_info()

    def on_Wait(self, conn, p, rid):
        proc = self.task.proc(_str(p, "exec_id"))
        if proc.exit_reported:
            return proc.exit_info()
        proc.waiters.append(lambda info: conn.send({"id": rid, "result": info}))
        return _DEFERRED

    # -- processes and resources ---------------------------------------------------------------
    def on_Pids(self, conn, p, rid):
        t = self.task
        t.require_created()
        by_pid = {e.pid: e.exec_id for e in t.execs.values() if e.pid}
        return {"pids": [{"pid": pid, "exec_id": by_pid.get(pid, "")} for pid in t.backend.pids(t.cid)]}

    def on_Stats(self, conn, p, rid):
        t = self.task
        t.require_created()
        return t.backend.stats(t.cid)

    def on_Pause(self, conn, p, rid):
        t = self.task
        t.require_created()
        t.backend.pause(t.cid)
        t.events.emit("paused")
        return {}

    def on_Resume(self, conn, p, rid):
        t = self.task
        t.require_created()
        t.backend.resume(t.cid)
        t.events.emit("resumed")
        return {}

    def on_Update(self, conn, p, rid):
        t = self.task
        t.require_created()
        res = p.get("resources")
        if not isinstance(res, dict):
            raise InvalidArgument("resources must be an object")
        t.backend.update(t.cid, res)
        return {}

    # -- stdio ------------------------------------------------------------------------------------
    def on_ResizePty(self, conn, p, rid):
        from engine import native

        proc = self.task.proc(_str(p, "exec_id"))
        if proc.io.master < 0:
            raise FailedPrecondition("process has no terminal")
        native.set_winsize(proc.io.master, int(p.get("height", 0)), int(p.get("width", 0)))
        return {}

    def on_CloseIO(self, conn, p, rid):
        proc = self.task.proc(_str(p, "exec_id"))
        if p.get("stdin", True):
            proc.io.close_stdin()
        return {}

    def on_Attach(self, conn, p, rid):
        proc = self.task.proc(_str(p, "exec_id"))
        if conn not in proc.io.attached:
            proc.io.attached.append(conn)
        return {"ended": proc.io.drained}

    # -- events and shutdown ------------------------------------------------------------------------
    def on_Subscribe(self, conn, p, rid):
        ev = self.task.events
        after = int(p.get("after", 0))
        conn.send({"id": rid, "result": {"last_seq": ev.seq}})
        for e in ev.since(after):
            conn.send_event(e)
        if conn not in ev.subscribers:
            ev.subscribers.append(conn)
        return _DEFERRED

    def on_Ack(self, conn, p, rid):
        return {"kept": self.task.events.ack(int(p.get("seq", 0)))}

    def on_Shutdown(self, conn, p, rid):
        t = self.task
        if t.init is not None and not t.deleted and not p.get("now"):
            return {"exiting": False}
        self.exiting = True
        return {"exiting": True}

    def _finish(self) -> None:
        """Flush answers (briefly), then stop the loop; cleanup() runs after."""
        self.loop.remove(self.listener.fileno())
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        for c in self.conns:
            c.out.close()
        self.loop.call_later(0, self._stop_when_flushed)

    def _stop_when_flushed(self, tries: list = [0]) -> None:  # noqa: B006
        tries[0] += 1
        if any(c.out.buf for c in self.conns) and tries[0] < 200:
            self.loop.call_later(0.005, self._stop_when_flushed)
            return
        self.loop.stopping = True

    def cleanup(self) -> None:
        shutil.rmtree(self.task.state_dir, ignore_errors=True)
        try:
            os.unlink(self.socket_path)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise


_DEFERRED = object()
# built once at import (in the fork server, before it forks): nothing to allocate per shim
METHODS: dict[str, Callable[..., object]] = {
    name[3:]: fn for name, fn in vars(Server).items() if name.startswith("on_")
}


def _str(p: dict, key: str, required: bool = False) -> str:
    v = p.get(key, "")
    if not isinstance(v, str) or (required and not v):
        raise InvalidArgument(f"{key} must be a non-empty string" if required else f"{key} must be a string")
    return v


def _private_dir(parent: str, prefix: str) -> str:
    """A new 0700 directory `parent`/`prefix`-N (mkdir is atomic: an existing name is skipped, never reused)."""
    for n in range(1000):
        path = os.path.join(parent, f"{prefix}-{n}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, f"no free directory name under {parent} for {prefix}")
