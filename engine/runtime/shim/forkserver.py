"""The shim fork server (DESIGN §5): a warm parent that forks a new shim per request.

Starting a shim as a fresh ``python`` pays interpreter start-up and imports (~tens of ms) and
keeps private copies of every module (~4 MiB PSS).  The fork server imports everything a shim
needs once, calls ``gc.freeze()`` (so the children's reference-count writes do not touch the
collector's pages and more of the heap stays shared copy-on-write), and stays single-threaded
so ``fork()`` is safe.  The daemon starts one and asks it for shims over a unix socket:

    request  (a wire ``J`` frame): {"argv": ["--id", ..., "--socket", ..., "--state-dir", ...]}
    answer   (a wire ``J`` frame): {"pid": <shim pid>}  or  {"error": {"code", "message"}}

For each request the server forks; the child does what ``engine-shim`` does without
``--foreground`` (setsid, fork again, serve in the grandchild), and the grandchild sends the
answer on the request's connection once its socket listens.  The server reaps the middle
child at once, so it keeps no children.  Requests are handled one at a time (a fork takes
~1 ms).  SIGTERM stops it; running shims are unaffected.

Measured with bench/shim.py on this machine kind (50 ``sleep`` containers, one shim each):
forked shims 3.1 MiB PSS / 13.9 MiB RSS each and 14 ms for spawn+create+start+wait of
/bin/true (spawn 3.3 ms); fresh ``engine-shim`` processes 7.4 MiB PSS and 48 ms (spawn 32 ms).
containerd-shim-runc-v2: 2.6 MB PSS, 13.2 MB RSS.  What a forked shim dirties, measured with
smaps: ~0.8 MiB just by existing next to an active parent, ~0.8 MiB for its loop and server,
~1 MiB for a container (stdio, log writer, OOM watch, start); argparse alone had cost 1.2 MiB
(hence main.parse_args), and the runtime's create/exec work runs in a short-lived helper
(backend.in_helper) so the pages it touches never become the shim's.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import sys

from engine.errors import InvalidArgument


def _warm() -> None:
    """Import what a shim will import, so the children share it."""
    import selectors  # noqa: F401
    import subprocess  # noqa: F401

    from engine import native  # noqa: F401
    from engine.runtime import create, delete, execute, kill, pause, query, start, tty, update  # noqa: F401
    from engine.runtime.cgroups import detect, open_manager
    from engine.runtime.shim import backend, jsonlog, loop, procio, server, task, wire  # noqa: F401

    with contextlib.suppress(Exception):  # warming only
        open_manager("/engine-shim-warm", version=detect())
    _exercise()


def _exercise(rounds: int = 24) -> None:
    """Run a shim's loop, server and handlers here for a while, then take them down.

    Python 3.11 specializes bytecode in place as it runs (and argparse-like work allocates all
    over the heap): whatever a shim executes for the first time after fork dirties the pages of
    those code objects in every shim.  Doing it once here, before gc.freeze() and fork, leaves
    them already warm and shared (measured: bench/shim.py).
    """
    import shutil
    import tempfile

    from engine.runtime.shim import main as shim_main
    from engine.runtime.shim import wire
    from engine.runtime.shim.backend import InProcess
    from engine.runtime.shim.loop import Loop
    from engine.runtime.shim.server import Server
    from engine.runtime.shim.task import Task

    d = tempfile.mkdtemp(prefix="engine-shim-warm-")
    loop = None
    try:
        args = shim_main.parse_args(["--id", "warm", "--socket", f"{d}/w.sock", "--state-dir", d])
        loop = Loop()
        task = Task(loop, InProcess(d), args.id, args.namespace, d)
        server = Server(loop, task, args.socket, args.namespace)
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(args.socket)
        for i in range(rounds):
            for method in ("Connect", "State", "Pids", "Subscribe", "Ack"):
                c.sendall(wire.pack_json({"id": i, "method": method, "params": {}}))
            for _ in range(4):
                for key, mask in loop.sel.select(0.005):
                    key.data(mask)
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                wire.split_frames(bytearray(c.recv(1 << 20)))
            c.setblocking(True)
            task.events.emit("warm")
            task.reap()
        c.close()
        for conn in list(server.conns):
            conn.close()
        server.listener.close()
    finally:
        if loop is not None:
            loop.sel.close()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(loop._wr)
            os.close(loop._ww)
        shutil.rmtree(d, ignore_errors=True)


def handle(conn: socket.socket) -> None:
    from engine.runtime.shim import main as shim_main
    from engine.runtime.shim import wire

    buf = bytearray()
    conn.settimeout(5)
    frames: list = []
    while not frames:
        data = conn.recv(65536)
        if not data:
            return
        buf += data
        frames = wire.split_frames(buf)
    try:
        argv = json.loads(frames[0][1])["argv"]
        if not isinstance(argv, list) or not all(isinstance(x, str) for x in argv):
            raise ValueError("argv must be a list of strings")
        args = shim_main.parse_args(argv)
    except (ValueError, KeyError, TypeError) as e:
        conn.sendall(
            wire.pack_json({"error": {"code": "INVALID_ARGUMENT", "message": f"bad shim arguments: {e}"}})
        )
        return
    except InvalidArgument as e:
        conn.sendall(wire.pack_json({"error": wire.error_body(e)}))
        return
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            conn.settimeout(None)

            def notify(msg: bytes) -> None:
                text = msg.decode().strip()
                if text.startswith("!"):
                    conn.sendall(wire.pack_json({"error": {"code": "UNKNOWN", "message": text[1:]}}))
                else:
                    conn.sendall(wire.pack_json({"pid": int(text)}))
                conn.close()

            detach_and_serve = shim_main.detach_and_serve
            _close_listener()
            detach_and_serve(args, notify)
        finally:
            os._exit(1)
    os.waitpid(pid, 0)


_LISTENER: list[socket.socket] = []


def _close_listener() -> None:
    for s in _LISTENER:
        s.close()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--socket" or not argv[1]:
        print("usage: engine-shim fork-server --socket PATH", file=sys.stderr)
        return 2
    path = argv[1]
    _warm()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(path)
    os.chmod(path, 0o600)
    lst.listen(128)
    _LISTENER.append(lst)
    gc.collect()
    gc.freeze()
    stop: list[int] = []

    def on_term(*_: object) -> None:
        stop.append(1)
        lst.close()

    signal.signal(signal.SIGTERM, on_term)
    print(os.getpid(), flush=True)
    while not stop:
        try:
            conn, _ = lst.accept()
        except OSError:
            break
        try:
            handle(conn)
        except OSError:
            pass
        finally:
            conn.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
