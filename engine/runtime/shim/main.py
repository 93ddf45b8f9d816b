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

import contextlib
import os
import sys
from collections.abc import Callable

from engine.errors import InvalidArgument

_VALUED = {
    "--id": "id",
    "--namespace": "namespace",
    "--socket": "socket",
    "--state-dir": "state_dir",
    "--runtime": "runtime",
    "--runtime-root": "runtime_root",
    "--log": "log",
}
USAGE = (
    "usage: engine-shim --id ID --socket PATH --state-dir DIR [--namespace NS] [--runtime PATH] "
    "[--runtime-root DIR] [--log FILE] [--foreground] | engine-shim fork-server --socket PATH"
)


class Args:
    """The parsed command line (a hand-written parser: argparse and the regexes it compiles
    cost a forked shim ~1.2 MiB of private memory, measured with bench/shim.py)."""

    def __init__(self) -> None:
        self.id = self.socket = self.state_dir = self.runtime = self.runtime_root = self.log = ""
        self.namespace = "default"
        self.foreground = False


def parse_args(argv: list[str]) -> Args:
    a = Args()
    i = 0
    while i < len(argv):
        flag, eq, val = argv[i].partition("=")
        if flag == "--foreground" and not eq:
            a.foreground = True
        elif flag in _VALUED:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise InvalidArgument(f"flag needs an argument: {flag}")
                val = argv[i]
            setattr(a, _VALUED[flag], val)
        else:
            raise InvalidArgument(f"unknown argument {argv[i]!r}")
        i += 1
    for need in ("id", "socket", "state_dir"):
        if not getattr(a, need):
            raise InvalidArgument(f"--{need.replace('_', '-')} is required")
    return a


def serve(args: Args, ready: Callable[[int], None]) -> int:
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
    backend = (
        External(args.runtime, rt_root, os.path.join(state_dir, "runtime.log"))
        if args.runtime
        else InProcess(rt_root)
    )
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


def detach_and_serve(args: Args, notify: Callable[[bytes], None]) -> None:
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
        with contextlib.suppress(OSError):
            notify(f"!{str(e) or type(e).__name__}\n".encode())
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fork-server"]:
        from engine.runtime.shim.forkserver import main as fs_main

        return fs_main(argv[1:])
    try:
        args = parse_args(argv)
    except InvalidArgument as e:
        print(f"engine-shim: {e}\n{USAGE}", file=sys.stderr)
        return 2
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
