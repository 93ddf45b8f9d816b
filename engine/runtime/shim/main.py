"""``engine-shim``: start one shim (detached), or run the shim fork server.

    engine-shim --id ID --namespace NS --socket PATH --state-dir DIR
                [--runtime PATH] [--runtime-root DIR] [--foreground] [--log FILE]
    engine-shim fork-server --socket PATH

Without ``--foreground`` the command double-forks (setsid in between), so the shim is nobody's
child but the nearest subreaper's, and prints the shim's pid on stdout once its socket
listens, then exits 0; on failure it prints one line on stderr and exits 1.  ``--runtime`` is
an OCI runtime binary (runc, crun) to drive instead of the in-process engine runtime;
``--runtime-root`` is the runtime's state root (default ``<state-dir>/runtime``).  The shim's
own stdio goes to /dev/null (or ``--log``); its cwd is /.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="engine-shim")
    ap.add_argument("--id", required=True)
    ap.add_argument("--namespace", default="default")
    ap.add_argument("--socket", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--runtime", default="")
    ap.add_argument("--runtime-root", default="")
    ap.add_argument("--foreground", action="store_true")
    ap.add_argument("--log", default="")
    return ap


def serve(args: argparse.Namespace, ready: Callable[[int], None]) -> int:
    """Run a shim in this process until its task is deleted (or Shutdown); then leave nothing."""
    from engine import native
    from engine.runtime.shim.backend import External, InProcess
    from engine.runtime.shim.loop import Loop
    from engine.runtime.shim.server import Server
    from engine.runtime.shim.task import Task

    native.prctl(native.PR_SET_CHILD_SUBREAPER, 1)
    state_dir = os.path.abspath(args.state_dir)
    os.makedirs(state_dir, 0o700, exist_ok=True)
    rt_root = os.path.abspath(args.runtime_root or os.path.join(state_dir, "runtime"))
    backend = External(args.runtime, rt_root, os.path.join(state_dir, "runtime.log")) if args.runtime else InProcess(rt_root)
    loop = Loop()
    task = Task(loop, backend, args.id, args.namespace, state_dir)
    server = Server(loop, task, os.path.abspath(args.socket), args.namespace)
    with open(os.path.join(state_dir, "shim.pid"), "w") as f:
        f.write(str(os.getpid()))
    ready(os.getpid())
    try:
        loop.run()
    finally:
        server.cleanup()
    return 0


def redirect_stdio(log: str) -> None:
    null = os.open("/dev/null", os.O_RDWR)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if log else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for fd in {null, out}:
        if fd > 2:
            os.close(fd)


def detach_and_serve(args: argparse.Namespace, notify: Callable[[bytes], None]) -> None:
    """In a process that may fork: setsid, fork, and serve in the grandchild; never returns.

    ``notify`` receives ``b"<pid>\\n"`` when the socket listens or ``b"!<message>\\n"``.
    """
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    redirect_stdio(args.log)
    code = 1
    try:
        code = serve(args, lambda pid: notify(f"{pid}\n".encode()))
    except BaseException as e:  # noqa: BLE001 (the launcher reports it)
        try:
            notify(f"!{str(e) or type(e).__name__}\n".encode())
        except OSError:
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fork-server"]:
        from engine.runtime.shim.forkserver import main as fs_main

        return fs_main(argv[1:])
    args = parser().parse_args(argv)
    if args.foreground:
        return serve(args, lambda pid: None)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)

        def notify(msg: bytes) -> None:
            os.write(w, msg)

        detach_and_serve(args, notify)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        line = f.readline().decode().strip()
    if line and not line.startswith("!"):
        print(line, flush=True)
        return 0
    print(f"engine-shim: {line[1:] or 'the shim exited before it was ready'}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
