"""State and helpers shared by the `engine` CLI's command modules: the daemon chosen by -H/ENGINE_HOST
and TLS flags, the client for it, and how errors end a command.

Exit codes follow the docker CLI: 1 for a failed command, 125 when `run`/`create` fail before the
container runs (the daemon refused, a flag was bad), 126/127 when the command could not be invoked or
found, and the container's own code for `run`/`start -a`/`wait`-like verbs.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from engine.cli.errors import ClientError

if TYPE_CHECKING:
    from engine.cli.client import Client


class State:
    host: str | None = None
    tls: dict[str, Any] = {}


def client(timeout: float | None = 60) -> Client:
    from engine.cli.client import Client

    return Client(State.host, timeout=timeout, **State.tls)


def fail(msg: str, code: int = 1) -> NoReturn:
    sys.stdout.flush()
    typer.echo(msg, err=True)
    raise typer.Exit(code)


def die(err: ClientError, code: int = 1) -> NoReturn:
    fail(str(err), code)


def parse_error(flag: str, value: str, why: str) -> NoReturn:
    """docker's message for a flag value that does not parse."""
    fail(f'invalid argument "{value}" for "{flag}" flag: {why}', 125)


__all__ = ["ClientError", "State", "client", "die", "fail", "parse_error"]


def print_inspect(objs: list[Any], fmt: str | None, errors: list[str]) -> None:
    """What docker's inspect verbs print: the objects (JSON or --format), then one line per name not found
    on stderr, exit code 1 when there was any."""
    import sys

    from engine.cli.format import TemplateError, inspect_output

    try:
        sys.stdout.write(inspect_output(objs, fmt) if objs or not fmt else "")
    except TemplateError as err:
        fail(str(err))
    for e in errors:
        typer.echo(e, err=True)
    if errors:
        raise typer.Exit(1)
