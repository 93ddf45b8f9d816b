"""``exec``: run another process inside a created or running container.

The process enters every namespace of the container's init through /proc/<pid>/ns/* (user
namespace first; the pid namespace makes the C side fork once more), joins the container's
cgroup, and gets its own process settings (args, env, cwd, user, capabilities, rlimits,
terminal) with the container's seccomp profile and no_new_privs, as runc does.  Without
``--process`` the process is the container's own ``process`` with the flags applied.
"""

from __future__ import annotations

import os

from engine.errors import FailedPrecondition, InvalidArgument
from engine.runtime import fastjson, plan, spec
from engine.runtime import state as st
from engine.runtime.kill import current_status, manager
from engine.runtime.process import Launch, launch, ns_path


def _set_env(env: list[str], entry: str) -> None:
    key = entry.split("=", 1)[0]
    for i, e in enumerate(env):
        if e.split("=", 1)[0] == key:
            env[i] = entry
            return
    env.append(entry)


def process_from_flags(
    root: str, container_id: str, opts: dict, args: list[str], process_path: str | None
) -> dict:
    if process_path:
        try:
            with open(process_path) as f:
                proc = fastjson.loads(f.read())
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"read process spec {process_path}: {e}") from e
        if not isinstance(proc, dict):
            raise InvalidArgument("process spec must be a JSON object")
        spec.check_process(proc)
        return proc
    if not args:
        raise InvalidArgument("exec args cannot be empty")
    c = st.load(root, container_id)
    base = c.config.get("process") or {}
    proc = fastjson.loads(fastjson.dumps(base))
    proc["args"] = list(args)
    proc["terminal"] = bool(opts.get("tty"))
    proc.pop("consoleSize", None)
    env = list(proc.get("env") or ())
    for entry in opts.get("env") or ():
        _set_env(env, entry)
    proc["env"] = env
    if opts.get("cwd"):
        proc["cwd"] = opts["cwd"]
    if opts.get("user"):
        u = opts["user"]
        uid, _, gid = u.partition(":")
        try:
            proc["user"] = {"uid": int(uid), "gid": int(gid) if gid else 0}
        except ValueError as e:
            raise InvalidArgument(f"parsing {u} as uid[:gid] failed") from e
    if opts.get("additional-gids"):
        try:
            proc.setdefault("user", {})["additionalGids"] = [int(g) for g in opts["additional-gids"]]
        except ValueError as e:
            raise InvalidArgument("additional-gids must be numbers") from e
    if opts.get("no-new-privs"):
        proc["noNewPrivileges"] = True
    if opts.get("cap"):
        caps = proc.setdefault("capabilities", {})
        for k in ("bounding", "effective", "permitted", "ambient", "inheritable"):
            if k == "inheritable" and k not in caps:
                continue
            caps[k] = sorted(set(caps.get(k) or ()) | set(opts["cap"]))
    spec.check_process(proc)
    return proc


def exec_process(
    root: str,
    container_id: str,
    proc: dict,
    *,
    pid_file: str | None = None,
    console_socket: str | None = None,
    console_fd: int = -1,
    preserve_fds: int = 0,
    ignore_paused: bool = False,
    stdio: tuple[int, int, int] | None = None,
) -> int:
    """Start ``proc`` in the container and return its pid (host view) without waiting for it.

    This is the shim's entry point: no signal handlers, no subreaper change (a caller that wants
    the exit status is a subreaper already).  With a terminal, the pty master goes to
    ``console_fd`` (a connected unix socket we hold) or to ``console_socket`` (a path).
    """
    c = st.load(root, container_id)
    mgr = manager(c)
    status = current_status(c, mgr)
    if status == st.PAUSED and not ignore_paused:
        raise FailedPrecondition("cannot exec in a paused container (use --ignore-paused to override)")
    if not st.can_exec(status) and status != st.PAUSED:
        raise FailedPrecondition("cannot exec in a stopped container")
    if proc.get("terminal") and not console_socket and console_fd < 0:
        raise InvalidArgument("cannot allocate tty if runc will detach without setting console socket")
    if not proc.get("terminal") and (console_socket or console_fd >= 0):
        raise InvalidArgument("cannot use console socket if runc will not detach or allocate tty")
    kinds = c.data.get("namespaces") or list(spec.namespaces(c.config))
    launch_spec = Launch({k: ns_path(c.pid, k) for k in kinds})
    console = None
    if console_socket:
        from engine.runtime.create import connect_console

        console = connect_console(console_socket)
        console_fd = console.fileno()

    def build(pid: int):
        ctx = plan.Context(
            c.data.get("rootfs", "/"),
            c.bundle,
            console_fd=console_fd,
            preserve_fds=preserve_fds,
            userns="user" in kinds,
            joins=launch_spec.child_joins,
            stdio=stdio,
        )
        return plan.build_exec(proc, c.config, ctx)

    def on_seccomp_fd(p: int, fd: int) -> None:
        from engine.runtime.process import send_seccomp_fd

        sc = (c.config.get("linux") or {}).get("seccomp") or {}
        send_seccomp_fd(sc["listenerPath"], fd, p, c.oci_state(st.RUNNING), sc.get("listenerMetadata", ""))

    try:
        self_joined = launch_spec.join_cgroup(mgr.paths())
        pid = launch(launch_spec, build, on_pid=None if self_joined else mgr.add, on_seccomp_fd=on_seccomp_fd)
    finally:
        if console is not None:
            console.close()
    if pid_file:
        st.write_atomic(os.path.abspath(pid_file), str(pid).encode())
    return pid


def execute(
    root: str,
    container_id: str,
    proc: dict,
    *,
    detach: bool = False,
    pid_file: str | None = None,
    console_socket: str | None = None,
    preserve_fds: int = 0,
    ignore_paused: bool = False,
    stdio: tuple[int, int, int] | None = None,
) -> int:
    """``exec`` as the CLI runs it: detached (exit code 0) or in the foreground (the process's
    exit status), forwarding signals, with our own pty for a terminal without a console socket."""
    own = None
    console_fd = -1
    if proc.get("terminal") and not console_socket:
        if detach:
            raise InvalidArgument("cannot allocate tty if runc will detach without setting console socket")
        from engine.runtime import tty

        own = tty.console_pair()
        console_fd = own[1].fileno()
    if not detach:
        from engine import native

        native.prctl(native.PR_SET_CHILD_SUBREAPER, 1)
    try:
        pid = exec_process(
            root,
            container_id,
            proc,
            pid_file=pid_file,
            console_socket=console_socket,
            console_fd=console_fd,
            preserve_fds=preserve_fds,
            ignore_paused=ignore_paused,
            stdio=stdio,
        )
    finally:
        if own is not None:
            own[1].close()
    if detach:
        return 0
    from engine.runtime.run import forward_signals, wait_exit

    forward_signals(pid)
    if own is not None:
        from engine.runtime import tty

        master = tty.recv_master(own[0])
        own[0].close()
        tty.follow_resizes(master)
        tty.proxy(master, pid, tty.prepare(master))
    return wait_exit(pid)
