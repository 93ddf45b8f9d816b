"""Container lifecycle verbs of the `engine` CLI, as the docker CLI does them: run, create, start,
stop, restart, kill, rm, wait, pause, unpause, rename, exec, attach.

`run` is docker's sequence (INTERFACES §1.2): create (a 404 "No such image" pulls the image and
creates again), then — unless -d — attach (hijacked) and ``wait?condition=next-exit|removed`` are sent
*before* the start, so no output and no exit is missed (the wait's response headers, which the daemon
sends once the waiter is registered, are awaited before the start); then start, resize when there is a TTY, pump
the stream (term.py), and exit with the wait's StatusCode. Errors before the container runs exit 125,
or 126/127 when the daemon says the command could not be invoked / found (docker's rule on the
message). Multi-container verbs print each name they handled and exit 1 if any failed.

Only typer and the standard library are imported at module level; the rest is imported where used, so
`engine --help` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
from typing import Any

import typer

from engine.cli.common import ClientError, client, die, fail

ALL_ARGS = {"allow_interspersed_args": False}


def _start_error_code(msg: str) -> int:
    """docker's runStartContainerErr: 127 not found, 126 not invokable, else 125."""
    if any(s in msg for s in ("executable file not found", "no such file or directory",
                              "system cannot find the file specified")):
        return 127
    if "permission denied" in msg or "is a directory" in msg:
        return 126
    return 125


def _console_size(tty: bool) -> tuple[int, int] | None:
    from engine.cli.term import window_size

    return window_size(sys.stdout.fileno()) if tty else None


def _resize(path: str, size: tuple[int, int] | None) -> None:
    if size:
        with contextlib.suppress(ClientError):
            client().request("POST", path, {"h": size[0], "w": size[1]}).read()


def _wait_status(conn: Any) -> int:
    resp = client().response(conn)
    doc = __import__("json").loads(resp.read() or b"{}")
    if (doc.get("Error") or {}).get("Message"):
        typer.echo(doc["Error"]["Message"], err=True)
    return int(doc.get("StatusCode", 125))


_PROXIED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGCONT", "SIGTSTP")


def _proxy_signals(cid: str) -> dict[int, Any]:
    """--sig-proxy: signals this process receives are sent to the container (``POST …/kill?signal=``), as
    docker's ForwardAllSignals does when there is no TTY (with one, Ctrl-C is just a byte). Returns the
    previous handlers."""
    import signal

    def forward(signum: int, _frame: Any) -> None:
        try:
            client().request("POST", f"/containers/{cid}/kill", {"signal": signal.Signals(signum).name}).read()
        except ClientError as err:
            typer.echo(f"error sending signal: {err}", err=True)

    old = {}
    for name in _PROXIED:
        num = getattr(signal, name)
        old[num] = signal.signal(num, forward)
    return old


def _session(cid: str, *, tty: bool, stdin: bool, detach_keys: str | None, wait_condition: str | None,
             start: bool, quiet_start_error_prefix: str = "", sig_proxy: bool = True) -> int:
    """Attach to `cid` (and start it when `start`), pump the stream, return the exit code."""
    import signal

    from engine.cli import term

    c = client(timeout=None)
    params = {"stream": 1, "stdin": 1 if stdin else None, "stdout": 1, "stderr": 1, "detachKeys": detach_keys}
    sock, initial, _ = c.hijack("POST", f"/containers/{cid}/attach", params)
    waiter = None
    if wait_condition is not None:
        waiter = c.send("POST", f"/containers/{cid}/wait", {"condition": wait_condition or None}, stream=True)
        # dockerd (and engine) answer the wait's headers once the waiter is registered: seeing them before the
        # start means a fast exit cannot slip past a next-exit wait. A daemon that holds them back costs 5 s.
        if waiter.sock is not None:
            select.select([waiter.sock], [], [], 5)
    if start:
        try:
            c.request("POST", f"/containers/{cid}/start").read()
        except ClientError as err:
            sock.close()
            fail(f"{quiet_start_error_prefix}{err}", _start_error_code(err.message))
    resize_path = f"/containers/{cid}/resize"
    old = _proxy_signals(cid) if sig_proxy and not tty else {}
    try:
        detached = term.pump(sock, initial, tty=tty, stdin=stdin, detach_keys=detach_keys,
                             on_resize=lambda h, w: _resize(resize_path, (h, w)))
        if detached or waiter is None:
            return 0
        try:
            return _wait_status(waiter)
        except ClientError as err:
            die(err, 125)
    finally:
        for num, handler in old.items():
            signal.signal(num, handler)


def create_container(o: Any, *, pull: str = "missing", prefix: str = "engine: ") -> str:
    """POST /containers/create, pulling the image when it is missing (docker's createContainer)."""
    from engine.cli import images
    from engine.cli.runopts import OptionError, create_body
    from engine.errors import InvalidArgument
    from engine.images.reference import parse

    try:
        body = create_body(o)
        ref = parse(o.image)
    except (OptionError, InvalidArgument) as err:
        fail(f"{prefix}{err}", 125)
    c = client()
    params = {"name": o.name or None, "platform": o.platform or None}
    if pull == "always":
        images.pull_for_run(o.image, ref, o.platform)
    try:
        doc = c.json("POST", "/containers/create", params, body)
    except ClientError as err:
        if err.status != 404 or "No such image" not in err.message or pull == "never":
            fail(f"{prefix}{err}", 125)
        typer.echo(f"Unable to find image '{ref.familiar()}' locally", err=True)
        images.pull_for_run(o.image, ref, o.platform)
        try:
            doc = c.json("POST", "/containers/create", params, body)
        except ClientError as err2:
            fail(f"{prefix}{err2}", 125)
    for w in doc.get("Warnings") or []:
        typer.echo(f"WARNING: {w}", err=True)
    return str(doc["Id"])


def _run_options(image: str, command: list[str] | None, **kw: Any) -> Any:
    from engine.cli.runopts import RunOptions

    return RunOptions(image=image, command=list(command or []), **kw)


def _check_detach_keys(keys: str | None) -> None:
    if keys:
        from engine.cli.term import DetachKeyError, parse_detach_keys

        try:
            parse_detach_keys(keys)
        except DetachKeyError as err:
            fail(f"engine: {err}", 125)


def register(app: typer.Typer, container_app: typer.Typer) -> None:  # noqa: C901 - one place lists the verbs
    def run(
        image: str = typer.Argument(..., metavar="IMAGE"),
        command: list[str] = typer.Argument(None, metavar="[COMMAND] [ARG...]"),
        detach: bool = typer.Option(False, "-d", "--detach", help="run in the background, print the ID"),
        interactive: bool = typer.Option(False, "-i", "--interactive", help="keep STDIN open"),
        tty: bool = typer.Option(False, "-t", "--tty", help="allocate a pseudo-TTY"),
        rm: bool = typer.Option(False, "--rm", help="remove the container when it exits"),
        env: list[str] = typer.Option([], "-e", "--env", help="KEY=VALUE (repeatable)"),
        env_file: list[str] = typer.Option([], "--env-file"),
        volume: list[str] = typer.Option([], "-v", "--volume", help="SRC:DST[:OPTS] or DST"),
        mount: list[str] = typer.Option([], "--mount", help="type=bind|volume|tmpfs,source=,target=,..."),
        workdir: str = typer.Option("", "-w", "--workdir"),
        user: str = typer.Option("", "-u", "--user"),
        name: str = typer.Option("", "--name"),
        entrypoint: str | None = typer.Option(None, "--entrypoint"),
        publish: list[str] = typer.Option([], "-p", "--publish", help="[IP:]HOST:CONTAINER[/PROTO]"),
        network: str = typer.Option("", "--network", "--net"),
        hostname: str = typer.Option("", "-h", "--hostname"),
        label: list[str] = typer.Option([], "-l", "--label"),
        memory: str = typer.Option("", "-m", "--memory"),
        cpus: str = typer.Option("", "--cpus"),
        restart: str = typer.Option("", "--restart", help="no|always|unless-stopped|on-failure[:N]"),
        init: bool = typer.Option(False, "--init"),
        privileged: bool = typer.Option(False, "--privileged"),
        cap_add: list[str] = typer.Option([], "--cap-add"),
        cap_drop: list[str] = typer.Option([], "--cap-drop"),
        read_only: bool = typer.Option(False, "--read-only"),
        tmpfs: list[str] = typer.Option([], "--tmpfs", help="PATH[:OPTS]"),
        detach_keys: str | None = typer.Option(None, "--detach-keys"),
        platform: str = typer.Option("", "--platform"),
        pull: str = typer.Option("missing", "--pull", help="always|missing|never"),
        sig_proxy: bool = typer.Option(True, "--sig-proxy/--no-sig-proxy", help="proxy received signals"),
    ) -> None:
        """Create and run a new container from an image."""
        _check_detach_keys(detach_keys)
        if tty and interactive and not detach and not os.isatty(sys.stdin.fileno()):
            fail("the input device is not a TTY", 1)
        o = _run_options(image, command, detach=detach, interactive=interactive, tty=tty, rm=rm, env=env,
                         env_file=env_file, volumes=volume, mounts=mount, workdir=workdir, user=user, name=name,
                         entrypoint=entrypoint, publish=publish, network=network, hostname=hostname,
                         labels=label, memory=memory, cpus=cpus, restart=restart, init=init,
                         privileged=privileged, cap_add=cap_add, cap_drop=cap_drop, read_only=read_only,
                         tmpfs=tmpfs, platform=platform, console_size=_console_size(tty))
        cid = create_container(o, pull=pull)
        if detach:
            c = client()
            try:
                c.request("POST", f"/containers/{cid}/start").read()
            except ClientError as err:
                fail(f"engine: {err}", _start_error_code(err.message))
            typer.echo(cid)
            return
        code = _session(cid, tty=tty, stdin=interactive, detach_keys=detach_keys,
                        wait_condition="removed" if rm else "next-exit", start=True,
                        quiet_start_error_prefix="engine: ", sig_proxy=sig_proxy)
        raise typer.Exit(code)

    def create(
        image: str = typer.Argument(..., metavar="IMAGE"),
        command: list[str] = typer.Argument(None, metavar="[COMMAND] [ARG...]"),
        interactive: bool = typer.Option(False, "-i", "--interactive"),
        tty: bool = typer.Option(False, "-t", "--tty"),
        rm: bool = typer.Option(False, "--rm"),
        env: list[str] = typer.Option([], "-e", "--env"),
        env_file: list[str] = typer.Option([], "--env-file"),
        volume: list[str] = typer.Option([], "-v", "--volume"),
        mount: list[str] = typer.Option([], "--mount"),
        workdir: str = typer.Option("", "-w", "--workdir"),
        user: str = typer.Option("", "-u", "--user"),
        name: str = typer.Option("", "--name"),
        entrypoint: str | None = typer.Option(None, "--entrypoint"),
        publish: list[str] = typer.Option([], "-p", "--publish"),
        network: str = typer.Option("", "--network", "--net"),
        hostname: str = typer.Option("", "-h", "--hostname"),
        label: list[str] = typer.Option([], "-l", "--label"),
        memory: str = typer.Option("", "-m", "--memory"),
        cpus: str = typer.Option("", "--cpus"),
        restart: str = typer.Option("", "--restart"),
        init: bool = typer.Option(False, "--init"),
        privileged: bool = typer.Option(False, "--privileged"),
        cap_add: list[str] = typer.Option([], "--cap-add"),
        cap_drop: list[str] = typer.Option([], "--cap-drop"),
        read_only: bool = typer.Option(False, "--read-only"),
        tmpfs: list[str] = typer.Option([], "--tmpfs"),
        platform: str = typer.Option("", "--platform"),
        pull: str = typer.Option("missing", "--pull"),
    ) -> None:
        """Create a new container (not started); prints its ID."""
        o = _run_options(image, command, interactive=interactive, tty=tty, rm=rm, env=env, env_file=env_file,
                         volumes=volume, mounts=mount, workdir=workdir, user=user, name=name,
                         entrypoint=entrypoint, publish=publish, network=network, hostname=hostname,
                         labels=label, memory=memory, cpus=cpus, restart=restart, init=init,
                         privileged=privileged, cap_add=cap_add, cap_drop=cap_drop, read_only=read_only,
                         tmpfs=tmpfs, platform=platform, console_size=_console_size(tty), attach=False)
        typer.echo(create_container(o, pull=pull))

    def start(
        containers: list[str] = typer.Argument(..., metavar="CONTAINER..."),
        attach: bool = typer.Option(False, "-a", "--attach", help="attach STDOUT/STDERR, forward signals"),
        interactive: bool = typer.Option(False, "-i", "--interactive", help="attach STDIN"),
        detach_keys: str | None = typer.Option(None, "--detach-keys"),
    ) -> None:
        """Start one or more stopped containers."""
        c = client()
        if attach or interactive:
            if len(containers) > 1:
                fail("you cannot start and attach multiple containers at once")
            _check_detach_keys(detach_keys)
            try:
                info = c.json("GET", f"/containers/{_q(containers[0])}/json")
            except ClientError as err:
                die(err)
            tty = bool(info["Config"].get("Tty"))
            code = _session(info["Id"], tty=tty, stdin=interactive and bool(info["Config"].get("OpenStdin")),
                            detach_keys=detach_keys,
                            wait_condition="removed" if info["HostConfig"].get("AutoRemove") else "next-exit",
                            start=True)
            raise typer.Exit(code)
        failed = []
        for ctr in containers:
            try:
                c.request("POST", f"/containers/{_q(ctr)}/start").read()
                typer.echo(ctr)
            except ClientError as err:
                typer.echo(str(err), err=True)
                failed.append(ctr)
        if failed:
            fail(f"Error: failed to start containers: {', '.join(failed)}")

    def _each(containers: list[str], method: str, suffix: str, params: dict[str, Any] | None = None) -> None:
        c = client(timeout=None)
        bad = False
        for ctr in containers:
            try:
                c.request(method, f"/containers/{_q(ctr)}{suffix}", params).read()
                typer.echo(ctr)
            except ClientError as err:
                typer.echo(str(err), err=True)
                bad = True
        if bad:
            raise typer.Exit(1)

    def stop(containers: list[str] = typer.Argument(..., metavar="CONTAINER..."),
             time: int | None = typer.Option(None, "-t", "--time", "--timeout", help="seconds before SIGKILL"),
             signal: str | None = typer.Option(None, "-s", "--signal")) -> None:
        """Stop one or more running containers."""
        _each(containers, "POST", "/stop", {"t": time, "signal": signal})

    def restart(containers: list[str] = typer.Argument(..., metavar="CONTAINER..."),
                time: int | None = typer.Option(None, "-t", "--time", "--timeout"),
                signal: str | None = typer.Option(None, "-s", "--signal")) -> None:
        """Restart one or more containers."""
        _each(containers, "POST", "/restart", {"t": time, "signal": signal})

    def kill(containers: list[str] = typer.Argument(..., metavar="CONTAINER..."),
             signal: str | None = typer.Option(None, "-s", "--signal")) -> None:
        """Kill one or more running containers."""
        _each(containers, "POST", "/kill", {"signal": signal})

    def rm(containers: list[str] = typer.Argument(..., metavar="CONTAINER..."),
           force: bool = typer.Option(False, "-f", "--force"),
           volumes: bool = typer.Option(False, "-v", "--volumes"),
           link: bool = typer.Option(False, "-l", "--link")) -> None:
        """Remove one or more containers."""
        _each(containers, "DELETE", "", {"force": 1 if force else None, "v": 1 if volumes else None,
                                          "link": 1 if link else None})

    def pause(containers: list[str] = typer.Argument(..., metavar="CONTAINER...")) -> None:
        """Pause all processes within one or more containers."""
        _each(containers, "POST", "/pause")

    def unpause(containers: list[str] = typer.Argument(..., metavar="CONTAINER...")) -> None:
        """Unpause all processes within one or more containers."""
        _each(containers, "POST", "/unpause")

    def wait(containers: list[str] = typer.Argument(..., metavar="CONTAINER...")) -> None:
        """Block until containers stop, then print their exit codes."""
        c = client(timeout=None)
        bad = False
        for ctr in containers:
            try:
                doc = c.json("POST", f"/containers/{_q(ctr)}/wait")
                typer.echo(doc["StatusCode"])
            except ClientError as err:
                typer.echo(str(err), err=True)
                bad = True
        if bad:
            raise typer.Exit(1)

    def rename(container: str = typer.Argument(...), new_name: str = typer.Argument(...)) -> None:
        """Rename a container."""
        try:
            client().request("POST", f"/containers/{_q(container)}/rename", {"name": new_name}).read()
        except ClientError as err:
            die(err)

    def exec_(
        container: str = typer.Argument(..., metavar="CONTAINER"),
        command: list[str] = typer.Argument(..., metavar="COMMAND [ARG...]"),
        detach: bool = typer.Option(False, "-d", "--detach"),
        interactive: bool = typer.Option(False, "-i", "--interactive"),
        tty: bool = typer.Option(False, "-t", "--tty"),
        env: list[str] = typer.Option([], "-e", "--env"),
        env_file: list[str] = typer.Option([], "--env-file"),
        user: str = typer.Option("", "-u", "--user"),
        workdir: str = typer.Option("", "-w", "--workdir"),
        privileged: bool = typer.Option(False, "--privileged"),
        detach_keys: str | None = typer.Option(None, "--detach-keys"),
    ) -> None:
        """Execute a command in a running container."""
        from engine.cli import term
        from engine.cli.runopts import OptionError, env_value, read_env_file

        _check_detach_keys(detach_keys)
        if tty and interactive and not detach and not os.isatty(sys.stdin.fileno()):
            fail("the input device is not a TTY", 1)
        try:
            envs = [e for f in env_file for e in read_env_file(f)] + [env_value(e) for e in env]
        except OptionError as err:
            fail(str(err), 125)
        c = client(timeout=None)
        size = _console_size(tty) if not detach else None
        body = {"User": user, "Privileged": privileged, "Tty": tty, "ConsoleSize": list(size) if size else None,
                "AttachStdin": interactive and not detach, "AttachStderr": not detach,
                "AttachStdout": not detach, "Detach": detach, "DetachKeys": detach_keys or "",
                "Env": envs or None, "WorkingDir": workdir, "Cmd": command}
        try:
            c.json("GET", f"/containers/{_q(container)}/json")
            eid = c.json("POST", f"/containers/{_q(container)}/exec", None, body)["Id"]
            if detach:
                c.request("POST", f"/exec/{eid}/start", None, {"Detach": True, "Tty": tty}).read()
                return
            sock, initial, _ = c.hijack("POST", f"/exec/{eid}/start", None,
                                        {"Detach": False, "Tty": tty, "ConsoleSize": list(size) if size else None})
        except ClientError as err:
            die(err)
        detached = term.pump(sock, initial, tty=tty, stdin=interactive, detach_keys=detach_keys,
                             on_resize=lambda h, w: _resize(f"/exec/{eid}/resize", (h, w)))
        if detached:
            return
        try:
            raise typer.Exit(int(c.json("GET", f"/exec/{eid}/json").get("ExitCode") or 0))
        except ClientError as err:
            die(err)

    def attach(
        container: str = typer.Argument(...),
        no_stdin: bool = typer.Option(False, "--no-stdin", help="do not attach STDIN"),
        detach_keys: str | None = typer.Option(None, "--detach-keys"),
        sig_proxy: bool = typer.Option(True, "--sig-proxy/--no-sig-proxy"),
    ) -> None:
        """Attach local standard input, output and error streams to a running container."""
        _check_detach_keys(detach_keys)
        try:
            info = client().json("GET", f"/containers/{_q(container)}/json")
        except ClientError as err:
            die(err)
        state = info.get("State") or {}
        if not state.get("Running"):
            fail("You cannot attach to a stopped container, start it first")
        if state.get("Paused"):
            fail("You cannot attach to a paused container, unpause it first")
        tty = bool(info["Config"].get("Tty"))
        stdin = not no_stdin and bool(info["Config"].get("OpenStdin"))
        if tty and stdin and not os.isatty(sys.stdin.fileno()):
            fail("the input device is not a TTY")
        raise typer.Exit(_session(info["Id"], tty=tty, stdin=stdin, detach_keys=detach_keys, wait_condition="",
                                  start=False, sig_proxy=sig_proxy))

    def prune(force: bool = typer.Option(False, "-f", "--force", help="do not prompt for confirmation"),
              filter_: list[str] = typer.Option([], "--filter", help="until=, label= (repeatable)")) -> None:
        """Remove all stopped containers."""
        from engine.cli.ctrinfo import filters_param
        from engine.cli.format import human_size

        if not force:
            typer.echo("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ",
                       nl=False)
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                return
        try:
            doc = client(timeout=None).json("POST", "/containers/prune", {"filters": filters_param(filter_)})
        except ClientError as err:
            die(err)
        if doc.get("ContainersDeleted"):
            typer.echo("Deleted Containers:\n" + "\n".join(doc["ContainersDeleted"]) + "\n")
        typer.echo(f"Total reclaimed space: {human_size(doc.get('SpaceReclaimed') or 0)}")

    for target in (app, container_app):
        cmd = target.command
        cmd("run", context_settings=ALL_ARGS)(run)
        cmd("create", context_settings=ALL_ARGS)(create)
        cmd("exec", context_settings=ALL_ARGS)(exec_)
        for fn in (start, stop, restart, kill, rm, pause, unpause, wait, rename, attach):
            cmd(fn.__name__)(fn)
    container_app.command("prune")(prune)


def _q(s: str) -> str:
    from engine.cli.client import q

    return q(s)
