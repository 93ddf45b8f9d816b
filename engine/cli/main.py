"""The `engine` CLI (typer): the daemon, and a client of the Docker Engine API socket for the rest.

The docker-like verbs live in containers.py (run, create, start, stop, exec, attach, …), ctrinfo.py
(ps, inspect, logs, top, port, stats, cp) and images.py (pull, push, images, image *, tag, rmi, save,
load, import); those modules import only typer at module level, so `engine --help` stays fast.

`-H/--host` or ENGINE_HOST choose the daemon, like docker's DOCKER_HOST. Errors are one line on stderr
and exit code 1 — usage errors too (an unknown flag, a value that does not parse): ``_App`` runs typer
outside click's standalone mode and prints them as one line instead of click's boxed usage text.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

import typer

import engine
from engine.cli import containers as _containers
from engine.cli import ctrinfo as _ctrinfo
from engine.cli import images as _images
from engine.cli.common import State as _State
from engine.cli.common import client, fail
from engine.cli.errors import ClientError

try:  # typer >= 0.25 carries its own copy of click
    from typer import _click as _clk
except ImportError:  # pragma: no cover
    import click as _clk  # type: ignore[no-redef]


class _App(typer.Typer):
    """typer's app, with usage errors as one line and exit code 1."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("standalone_mode", False)
        self._only_invoked(kwargs.get("args"))
        try:
            rv = super().__call__(*args, **kwargs)
        except _clk.exceptions.NoArgsIsHelpError as err:  # `engine`, `engine journal`: the help
            typer.echo(err.ctx.get_help())
            sys.exit(0)
        except _clk.exceptions.UsageError as err:
            path = err.ctx.command_path if err.ctx is not None else "engine"
            msg = " ".join(err.format_message().split())
            typer.echo(f"{path}: {msg} (see '{path} --help')", err=True)
            # docker exits 125 when run/create/exec cannot even be sent (its code for "the CLI failed")
            sys.exit(125 if err.ctx is not None and err.ctx.info_name in ("run", "create", "exec") else 1)
        except _clk.exceptions.ClickException as err:
            typer.echo(" ".join(err.format_message().split()), err=True)
            sys.exit(1)
        except typer.Abort:  # EOF on a prompt; Ctrl-C arrives as Exit(130)
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


    def _only_invoked(self, argv: list[str] | None) -> None:
        """Keep only the command being run: typer turns every registered command into a click command
        before parsing, and with ~40 docker verbs that is ~10 ms of every `engine ps`. `--help` and
        unknown names keep the full set (the listing, click's error)."""
        argv = list(sys.argv[1:] if argv is None else argv)
        i = 0
        while i < len(argv) and argv[i].startswith("-"):
            if argv[i] in ("--help", "--"):
                return
            i += 1 if "=" in argv[i] or argv[i] == "--tlsverify" else 2
        if i >= len(argv):
            return
        name = argv[i]
        cmds = [c for c in self.registered_commands if (c.name or c.callback.__name__) == name]  # type: ignore[union-attr]
        groups = [g for g in self.registered_groups if g.name == name]
        if cmds or groups:
            self.registered_commands, self.registered_groups = cmds, groups


class _PlainCoercion:
    """A parameter value converted directly (see _fast_coercion)."""

    def __init__(self, annotation: Any) -> None:
        self.annotation = annotation

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multi = param.multiple or param.nargs == -1
        if value is None:
            return () if multi else None
        if self.annotation == list[str]:
            if isinstance(value, str):
                raise _clk.exceptions.BadParameter("Value must be an iterable.", ctx=ctx, param=param)
            return [str(v) for v in value]
        if self.annotation is int and not isinstance(value, int):
            try:
                return int(value)
            except (TypeError, ValueError):
                raise _clk.exceptions.BadParameter(f"{value!r} is not a valid integer.", ctx=ctx,
                                                   param=param) from None
        if self.annotation is str:
            return str(value)
        return value


def _fast_coercion() -> None:
    """typer >= 0.2x coerces every parameter value through a pydantic TypeAdapter, and importing pydantic
    alone costs ~50 ms of every command. For the plain types our commands declare (str, int, bool,
    list[str]) a direct conversion gives the same values; anything else keeps typer's path. A typer
    without that machinery (older versions) is left alone."""
    from typer import core

    param_cls = getattr(core, "_TyperParameter", None)
    original = getattr(param_cls, "get_runtime_param", None)
    if param_cls is None or original is None or getattr(original, "_engine_fast", False):
        return

    def get_runtime_param(self: Any) -> Any:
        ann = getattr(getattr(self, "type_descriptor", None), "annotation", None)
        if ann in (str, int, bool) or ann == list[str]:
            if not isinstance(getattr(self, "_runtime_param", None), _PlainCoercion):
                self._runtime_param = _PlainCoercion(ann)
            return self._runtime_param
        return original(self)

    get_runtime_param._engine_fast = True  # type: ignore[attr-defined]
    param_cls.get_runtime_param = get_runtime_param


_fast_coercion()

app = _App(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
           help="engine: a container engine with a journal")
journal_app = _App(no_args_is_help=True, rich_markup_mode=None, help="Inspect and verify the event journal")
app.add_typer(journal_app, name="journal")
image_app = _App(no_args_is_help=True, rich_markup_mode=None, help="Manage images")
app.add_typer(image_app, name="image")
container_app = _App(no_args_is_help=True, rich_markup_mode=None, help="Manage containers")
app.add_typer(container_app, name="container")
_containers.register(app, container_app)
_ctrinfo.register(app, container_app)
_images.register(app, image_app)


@app.callback()
def _global(
    host: str | None = typer.Option(None, "-H", "--host", help="daemon socket (unix://, tcp://); env ENGINE_HOST"),
    tlsverify: bool = typer.Option(False, "--tlsverify", help="use TLS and verify the daemon"),
    tlscacert: str = typer.Option("", "--tlscacert"),
    tlscert: str = typer.Option("", "--tlscert"),
    tlskey: str = typer.Option("", "--tlskey"),
) -> None:
    _State.host = host
    _State.tls = {"tlsverify": tlsverify, "tlscacert": tlscacert, "tlscert": tlscert, "tlskey": tlskey}


@app.command()
def daemon(
    root: str | None = typer.Option(None, "--root", "--data-root", help="state root [/var/lib/engine]"),
    exec_root: str | None = typer.Option(None, "--exec-root", help="runtime state root [/run/engine]"),
    hosts: list[str] | None = typer.Option(None, "-H", "--host", help="Docker API listener (repeatable)"),
    containerd_socket: str | None = typer.Option(None, "--containerd-socket", help="containerd gRPC socket path"),
    config_file: str | None = typer.Option(None, "--config", "--config-file", help="daemon.json"),
    log_level: str | None = typer.Option(None, "--log-level", "-l"),
    debug: bool | None = typer.Option(None, "--debug", "-D"),
    tls: bool | None = typer.Option(None, "--tls/--no-tls", help="TLS on tcp hosts; --no-tls allows plain tcp"),
    tlsverify: bool | None = typer.Option(None, "--tlsverify", help="TLS and require client certificates"),
    tlscacert: str | None = typer.Option(None, "--tlscacert"),
    tlscert: str | None = typer.Option(None, "--tlscert"),
    tlskey: str | None = typer.Option(None, "--tlskey"),
    group: str | None = typer.Option(None, "--group", "-G", help="group owning the sockets [engine]"),
    journal_durability: str | None = typer.Option(None, "--journal-durability",
                                                     help="SQLite synchronous: off|normal|full|extra [normal]"),
    cgroup_parent: str | None = typer.Option(None, "--cgroup-parent", help="parent cgroup of containers [engine]"),
    insecure_registries: list[str] | None = typer.Option(None, "--insecure-registry",
                                                         help="plain-HTTP registry host[:port] or CIDR (repeatable)"),
    add_runtimes: list[str] | None = typer.Option(None, "--add-runtime", help="NAME=PATH of an OCI runtime"),
    default_runtime: str | None = typer.Option(None, "--default-runtime", help="runtime name [engine]"),
    bridge: str | None = typer.Option(None, "--bridge", "-b", help="default bridge name ('none': no bridge)"),
    bip: str | None = typer.Option(None, "--bip", help="default bridge address, CIDR"),
    fixed_cidr: str | None = typer.Option(None, "--fixed-cidr", help="container addresses from this range"),
    mtu: int | None = typer.Option(None, "--mtu"),
    dns: list[str] | None = typer.Option(None, "--dns", help="DNS server for containers (repeatable)"),
    dns_search: list[str] | None = typer.Option(None, "--dns-search"),
    dns_opts: list[str] | None = typer.Option(None, "--dns-opt"),
    userland_proxy: bool | None = typer.Option(None, "--userland-proxy/--no-userland-proxy"),
    network_prefix: str | None = typer.Option(None, "--network-prefix",
                                              help="prefix of host network objects (nft tables, veths) [engine]"),
    log_driver: str | None = typer.Option(None, "--log-driver", help="json-file|local|none [json-file]"),
    log_opts: list[str] | None = typer.Option(None, "--log-opt", help="KEY=VALUE (repeatable)"),
    default_shm_size: str | None = typer.Option(None, "--default-shm-size"),
    init: bool | None = typer.Option(None, "--init", help="run an init inside containers by default"),
    init_path: str | None = typer.Option(None, "--init-path"),
    offline: bool | None = typer.Option(None, "--offline",
                                        help="never contact a registry that is not on this host"),
) -> None:
    """Run the engine daemon in the foreground."""
    from engine import config as config_mod
    from engine.daemon import main
    from engine.errors import EngineError

    given = {"root": root, "exec_root": exec_root, "hosts": hosts or None, "containerd_socket": containerd_socket,
             "log_level": log_level, "debug": debug, "tls": tls, "tlsverify": tlsverify, "tlscacert": tlscacert,
             "tlscert": tlscert, "tlskey": tlskey, "group": group, "journal_durability": journal_durability,
             "cgroup_parent": cgroup_parent, "insecure_registries": insecure_registries or None,
             "default_runtime": default_runtime, "bridge": bridge, "bip": bip, "fixed_cidr": fixed_cidr, "mtu": mtu,
             "dns": dns or None, "dns_search": dns_search or None, "dns_opts": dns_opts or None,
             "userland_proxy": userland_proxy, "network_prefix": network_prefix, "log_driver": log_driver,
             "default_shm_size": default_shm_size, "init": init, "init_path": init_path, "offline": offline}
    flags: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    try:
        if add_runtimes:
            flags["runtimes"] = {k: {"path": v} for k, v in config_mod.key_values(add_runtimes, "--add-runtime").items()}
        if log_opts:
            flags["log_opts"] = config_mod.key_values(log_opts, "--log-opt")
        cfg = config_mod.load(flags, config_file)
    except EngineError as err:
        fail(f"engine daemon: {err}")
    raise typer.Exit(main(cfg))


@app.command()
def version(fmt: str | None = typer.Option(None, "--format", "-f", help="json")) -> None:
    """Show the client and daemon versions."""
    try:
        server = client().json("GET", "/version")
    except ClientError as err:
        server = None
        error = str(err)
    if fmt == "json":
        typer.echo(json.dumps({"Client": {"Version": engine.__version__}, "Server": server}, indent=2))
    else:
        typer.echo(f"Client:\n Version:     {engine.__version__}\n Python:      {sys.version.split()[0]}")
        if server:
            typer.echo(f"\nServer:\n Version:     {server['Version']}\n API version: {server['ApiVersion']} "
                       f"(minimum version {server['MinAPIVersion']})\n Runtime:     {server['GoVersion']}\n"
                       f" OS/Arch:     {server['Os']}/{server['Arch']}\n Kernel:      {server['KernelVersion']}")
    if server is None:
        fail(error)


@app.command()
def info(fmt: str | None = typer.Option(None, "--format", "-f", help="json")) -> None:
    """Show system-wide information."""
    try:
        doc = client().json("GET", "/info")
    except ClientError as err:
        fail(str(err))
    if fmt == "json":
        typer.echo(json.dumps(doc, indent=2))
        return
    j = doc.get("EngineJournal", {})
    rows = [("Server Version", doc["ServerVersion"]), ("ID", doc["ID"]), ("Name", doc["Name"]),
            ("Containers", doc["Containers"]), ("Images", doc["Images"]), ("Storage Driver", doc["Driver"]),
            ("Cgroup Driver", doc["CgroupDriver"]), ("Cgroup Version", doc["CgroupVersion"]),
            ("Kernel Version", doc["KernelVersion"]), ("Operating System", doc["OperatingSystem"]),
            ("CPUs", doc["NCPU"]), ("Total Memory", f"{doc['MemTotal'] / 2**30:.2f}GiB"),
            ("Root Dir", doc["DockerRootDir"]), ("Journal", j.get("Path", "")),
            ("Journal Seq", j.get("LastSeq", "")), ("Journal Durability", j.get("Durability", "")),
            ("Namespaces", j.get("Namespaces", ""))]
    for k, v in rows:
        typer.echo(f" {k + ':':<20} {v}")


def _fmt_time(ns: int) -> str:
    sec, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:09d}Z"


def _print_event(ev: dict[str, Any], fmt: str | None) -> None:
    if fmt == "json":
        typer.echo(json.dumps(ev, separators=(",", ":")))
        return
    payload = ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in ev["event"].items())
    ns = f" ns={ev['namespace']}" if ev["namespace"] else ""
    typer.echo(f"{_fmt_time(ev['time_ns'])} #{ev['seq']} {ev['type']} {ev['subject']} "
               f"({payload}){ns} actor=[{ev['actor']}] cause={ev['cause']}")


def _filter_params(filters: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in filters:
        key, eq, value = f.partition("=")
        if not eq or key not in ("type", "subject", "namespace", "actor"):
            fail(f"invalid filter {f!r}: use type=, subject=, namespace= or actor= (values may use * globs)")
        out.setdefault(key, []).append(value)
    return out


def _stream(params: dict[str, Any], fmt: str | None) -> None:
    try:
        for ev in client(timeout=None).lines("/engine/journal", params):
            _print_event(ev, fmt)
            sys.stdout.flush()
    except ClientError as err:
        fail(str(err))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command()
def events(
    since: str | None = typer.Option(None, "--since", help="unix time, RFC 3339, or a duration (10m)"),
    until: str | None = typer.Option(None, "--until"),
    filters: list[str] = typer.Option([], "--filter", "-f", help="type=, subject=, namespace=, actor= (repeatable)"),
    fmt: str | None = typer.Option(None, "--format", help="json: one JSON object per line"),
) -> None:
    """Stream the journal's events (all types), from --since on, live until Ctrl-C or --until."""
    params: dict[str, Any] = {"follow": 1, "since": since, "until": until, **_filter_params(filters)}
    if since is None:
        params["tail"] = 0
    _stream(params, fmt)


@journal_app.command("tail")
def journal_tail(
    n: int = typer.Option(20, "-n", "--tail", help="the last N matching events (0: all)"),
    follow: bool = typer.Option(False, "-f", "--follow", help="then keep streaming new events"),
    types: list[str] = typer.Option([], "--type", help="event type, e.g. namespace.created or 'namespace.*'"),
    subjects: list[str] = typer.Option([], "--subject"),
    namespaces: list[str] = typer.Option([], "--namespace"),
    actors: list[str] = typer.Option([], "--actor", help="e.g. 'uid=1000*'"),
    since: str | None = typer.Option(None, "--since"),
    until: str | None = typer.Option(None, "--until"),
    from_seq: int | None = typer.Option(None, "--from-seq"),
    to_seq: int | None = typer.Option(None, "--to-seq"),
    fmt: str | None = typer.Option(None, "--format", help="json"),
) -> None:
    """Who did what, when: the last events of the journal, filtered."""
    params = {"type": types, "subject": subjects, "namespace": namespaces, "actor": actors, "since": since,
              "until": until, "from_seq": from_seq, "to_seq": to_seq, "tail": n or None,
              "follow": 1 if follow else None}
    _stream(params, fmt)


@journal_app.command("verify")
def journal_verify(
    root: str | None = typer.Option(None, "--root", help="verify <root>/engine.db directly (daemon stopped)"),
    fmt: str | None = typer.Option(None, "--format", help="json"),
) -> None:
    """Check the hash chain and rebuild every projection from the journal, comparing row for row."""
    if root:
        from engine.errors import EngineError
        from engine.events.verify import verify_path
        from engine.services import all_projections

        path = os.path.join(root, "engine.db")
        if not os.path.exists(path):
            fail(f"no journal at {path}")
        try:
            report = verify_path(path, all_projections()).to_dict()
        except EngineError as err:
            fail(f"verify failed: {err}")
    else:
        try:
            report = client(timeout=None).json("POST", "/engine/journal/verify")
        except ClientError as err:
            fail(str(err))
    if fmt == "json":
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(f"events: {report['events']}  last seq: {report['last_seq']}  head: {report['last_hash'][:16]}")
        for problem in report["chain_errors"]:
            typer.echo(f"chain: {problem}")
        for name, t in report["tables"].items():
            state = "ok" if t["ok"] else f"DIFFERS (missing {len(t['missing'])}, extra {len(t['extra'])})"
            typer.echo(f"projection {name}: {t['rows']} rows, {state}")
        typer.echo("journal verified" if report["ok"] else "journal verification FAILED")
    if not report["ok"]:
        raise typer.Exit(1)


def main() -> None:
    app()
