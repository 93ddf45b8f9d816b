"""Container lifecycle verbs of the `engine` CLI, as the docker CLI does them: run, create, start,
stop, restart, kill, rm, wait, pause, unpause, rename, exec, attach.

`run` is docker's sequence (INTERFACES §1.2): create (a 404 "No such image" pulls the image and
creates again), then — unless -d — attach and wait before the start, the stream, the wait's exit code
(session.py). `create` is `run`'s function with run's flags but -d/--detach-keys/--sig-proxy.
Multi-container verbs print each name they handled and exit 1 if any failed.

Only typer and the standard library are imported at module level; the rest is imported where used, so
`engine --help` stays fast.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from engine.cli.common import ClientError, client, die, fail
from engine.cli.session import (
    check_detach_keys,
    console_size,
    create_container,
    resize,
    run_session,
    start_error_code,
)

ALL_ARGS = {"allow_interspersed_args": False}


_CREATING: list[bool] | None = None  # set while `create` runs the shared body of `run`
_RUN_ONLY = ("detach", "detach_keys", "sig_proxy")


def _create_from(run: Any) -> Any:
    """`create` takes run's flags but -d, --detach-keys and --sig-proxy: the same function, with that
    signature (typer reads ``__signature__``), marked so that it creates and prints the ID."""
    import functools
    import inspect

    @functools.wraps(run)
    def create(**kwargs: Any) -> None:
        global _CREATING
        _CREATING = [True]
        try:
            run(detach=False, detach_keys=None, sig_proxy=True, **kwargs)
        finally:
            _CREATING = None

    sig = inspect.signature(run)
    create.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p for n, p in sig.parameters.items() if n not in _RUN_ONLY])
    create.__doc__ = "Create a new container (not started); prints its ID."
    return create


def _run_options(image: str, command: list[str] | None, **kw: Any) -> Any:
    from engine.cli.runopts import RunOptions

    return RunOptions(image=image, command=list(command or []), **kw)


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
        publish_all: bool = typer.Option(False, "-P", "--publish-all"),
        expose: list[str] = typer.Option([], "--expose"),
        network: str = typer.Option("", "--network", "--net"),
        hostname: str = typer.Option("", "-h", "--hostname"),
        domainname: str = typer.Option("", "--domainname"),
        label: list[str] = typer.Option([], "-l", "--label"),
        memory: str = typer.Option("", "-m", "--memory"),
        memory_swap: str = typer.Option("", "--memory-swap"),
        cpus: str = typer.Option("", "--cpus"),
        cpu_shares: int = typer.Option(0, "-c", "--cpu-shares"),
        cpuset_cpus: str = typer.Option("", "--cpuset-cpus"),
        pids_limit: int | None = typer.Option(None, "--pids-limit"),
        oom_kill_disable: bool = typer.Option(False, "--oom-kill-disable"),
        restart: str = typer.Option("", "--restart", help="no|always|unless-stopped|on-failure[:N]"),
        init: bool = typer.Option(False, "--init"),
        privileged: bool = typer.Option(False, "--privileged"),
        cap_add: list[str] = typer.Option([], "--cap-add"),
        cap_drop: list[str] = typer.Option([], "--cap-drop"),
        security_opt: list[str] = typer.Option([], "--security-opt"),
        device: list[str] = typer.Option([], "--device", help="HOST[:CONTAINER][:rwm]"),
        ulimit: list[str] = typer.Option([], "--ulimit", help="NAME=SOFT[:HARD]"),
        sysctl: list[str] = typer.Option([], "--sysctl"),
        shm_size: str = typer.Option("", "--shm-size"),
        read_only: bool = typer.Option(False, "--read-only"),
        tmpfs: list[str] = typer.Option([], "--tmpfs", help="PATH[:OPTS]"),
        group_add: list[str] = typer.Option([], "--group-add"),
        add_host: list[str] = typer.Option([], "--add-host", help="HOST:IP"),
        dns: list[str] = typer.Option([], "--dns"),
        dns_search: list[str] = typer.Option([], "--dns-search"),
        dns_option: list[str] = typer.Option([], "--dns-option"),
        ipc: str = typer.Option("", "--ipc"),
        pid: str = typer.Option("", "--pid"),
        uts: str = typer.Option("", "--uts"),
        cgroup_parent: str = typer.Option("", "--cgroup-parent"),
        runtime: str = typer.Option("", "--runtime"),
        volumes_from: list[str] = typer.Option([], "--volumes-from"),
        log_driver: str = typer.Option("", "--log-driver"),
        log_opt: list[str] = typer.Option([], "--log-opt"),
        stop_signal: str = typer.Option("", "--stop-signal"),
        stop_timeout: int | None = typer.Option(None, "--stop-timeout"),
        health_cmd: str = typer.Option("", "--health-cmd"),
        health_interval: str = typer.Option("", "--health-interval"),
        health_timeout: str = typer.Option("", "--health-timeout"),
        health_start_period: str = typer.Option("", "--health-start-period"),
        health_retries: int = typer.Option(0, "--health-retries"),
        no_healthcheck: bool = typer.Option(False, "--no-healthcheck"),
        cidfile: str = typer.Option("", "--cidfile", help="write the container ID to the file"),
        platform: str = typer.Option("", "--platform"),
        pull: str = typer.Option("missing", "--pull", help="always|missing|never"),
        detach_keys: str | None = typer.Option(None, "--detach-keys"),
        sig_proxy: bool = typer.Option(True, "--sig-proxy/--no-sig-proxy", help="proxy received signals"),
    ) -> None:
        """Create and run a new container from an image."""
        check_detach_keys(detach_keys)
        if tty and interactive and not detach and not os.isatty(sys.stdin.fileno()):
            fail("the input device is not a TTY", 1)
        o = _run_options(
            image, command, detach=detach, interactive=interactive, tty=tty, rm=rm, env=env, env_file=env_file,
            volumes=volume, mounts=mount, workdir=workdir, user=user, name=name, entrypoint=entrypoint,
            publish=publish, publish_all=publish_all, expose=expose, network=network, hostname=hostname,
            domainname=domainname, labels=label, memory=memory, memory_swap=memory_swap, cpus=cpus,
            cpu_shares=cpu_shares, cpuset_cpus=cpuset_cpus, pids_limit=pids_limit, oom_kill_disable=oom_kill_disable,
            restart=restart, init=init, privileged=privileged, cap_add=cap_add, cap_drop=cap_drop,
            security_opt=security_opt, devices=device, ulimits=ulimit, sysctls=sysctl, shm_size=shm_size,
            read_only=read_only, tmpfs=tmpfs, group_add=group_add, add_hosts=add_host, dns=dns, dns_search=dns_search,
            dns_options=dns_option, ipc=ipc, pid=pid, uts=uts, cgroup_parent=cgroup_parent, runtime=runtime,
            volumes_from=volumes_from, log_driver=log_driver, log_opts=log_opt, stop_signal=stop_signal,
            stop_timeout=stop_timeout, health_cmd=health_cmd, health_interval=health_interval,
            health_timeout=health_timeout, health_start_period=health_start_period, health_retries=health_retries,
            no_healthcheck=no_healthcheck, platform=platform, console_size=console_size(tty),
            attach=_CREATING is None)
        if cidfile and os.path.exists(cidfile):
            fail(f"engine: Container ID file found, make sure the other container isn't running or delete {cidfile}",
                 125)
        cid = create_container(o, pull=pull)
        if cidfile:
            try:
                with open(cidfile, "w") as f:
                    f.write(cid)
            except OSError as err:
                fail(f"engine: failed to write the container ID to the file: {err}", 125)
        if _CREATING is not None:
            typer.echo(cid)
            return
        if detach:
            c = client()
            try:
                c.request("POST", f"/containers/{cid}/start").read()
            except ClientError as err:
                fail(f"engine: {err}", start_error_code(err.message))
            typer.echo(cid)
            return
        code = run_session(cid, tty=tty, stdin=interactive, detach_keys=detach_keys,
                        wait_condition="removed" if rm else "next-exit", start=True,
                        quiet_start_error_prefix="engine: ", sig_proxy=sig_proxy)
        raise typer.Exit(code)

    create = _create_from(run)

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
            check_detach_keys(detach_keys)
            try:
                info = c.json("GET", f"/containers/{_q(containers[0])}/json")
            except ClientError as err:
                die(err)
            tty = bool(info["Config"].get("Tty"))
            code = run_session(info["Id"], tty=tty, stdin=interactive and bool(info["Config"].get("OpenStdin")),
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

        check_detach_keys(detach_keys)
        if tty and interactive and not detach and not os.isatty(sys.stdin.fileno()):
            fail("the input device is not a TTY", 1)
        try:
            envs = [e for f in env_file for e in read_env_file(f)] + [env_value(e) for e in env]
        except OptionError as err:
            fail(str(err), 125)
        c = client(timeout=None)
        size = console_size(tty) if not detach else None
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
                             on_resize=lambda h, w: resize(f"/exec/{eid}/resize", (h, w)))
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
        check_detach_keys(detach_keys)
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
        raise typer.Exit(run_session(info["Id"], tty=tty, stdin=stdin, detach_keys=detach_keys, wait_condition="",
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
