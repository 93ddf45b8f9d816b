"""A container session as `run`, `start -a` and `attach` drive it, and the create that `run`/`create`
share: attach (hijacked) and wait sent before the start, the wait's response headers awaited (the
daemon's sign the waiter is registered, so a fast exit cannot slip past a next-exit wait), start, resize,
the stream pumped by term.py, signals proxied to the container without a TTY (--sig-proxy), and the exit
code from the wait. Docker's exit codes: 125 when the daemon refuses, 126/127 when the start says the
command could not be invoked / found, else the container's code."""

from __future__ import annotations

import contextlib
import select
import socket
import sys
from typing import Any

import typer

from engine.cli.common import ClientError, client, die, fail


def start_error_code(msg: str) -> int:
    """docker's runStartContainerErr: 127 not found, 126 not invokable, else 125."""
    if any(s in msg for s in ("executable file not found", "no such file or directory",
                              "system cannot find the file specified")):
        return 127
    if "permission denied" in msg or "is a directory" in msg:
        return 126
    return 125


def console_size(tty: bool) -> tuple[int, int] | None:
    from engine.cli.term import window_size

    return window_size(sys.stdout.fileno()) if tty else None


def resize(path: str, size: tuple[int, int] | None) -> None:
    if size:
        with contextlib.suppress(ClientError):
            client().request("POST", path, {"h": size[0], "w": size[1]}).read()


def wait_status(conn: Any) -> int:
    resp = client().response(conn)
    doc = __import__("json").loads(resp.read() or b"{}")
    if (doc.get("Error") or {}).get("Message"):
        typer.echo(doc["Error"]["Message"], err=True)
    return int(doc.get("StatusCode", 125))


_PROXIED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGCONT", "SIGTSTP")


def proxy_signals(cid: str) -> dict[int, Any]:
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


def run_session(cid: str, *, tty: bool, stdin: bool, detach_keys: str | None, wait_condition: str | None,
             start: bool, quiet_start_error_prefix: str = "", sig_proxy: bool = True) -> int:
    """Attach to `cid` (and start it when `start`), pump the stream, return the exit code."""
    import signal

    from engine.cli import term

    c = client(timeout=None)
    params = {"stream": 1, "stdin": 1 if stdin else None, "stdout": 1, "stderr": 1, "detachKeys": detach_keys}
    sock, initial, _ = c.hijack("POST", f"/containers/{cid}/attach", params)
    if not stdin:  # docker half-closes at once when it sends no input, before the start
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
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
            fail(f"{quiet_start_error_prefix}{err}", start_error_code(err.message))
    resize_path = f"/containers/{cid}/resize"
    old = proxy_signals(cid) if sig_proxy and not tty else {}
    try:
        detached = term.pump(sock, initial, tty=tty, stdin=stdin, detach_keys=detach_keys,
                             on_resize=lambda h, w: resize(resize_path, (h, w)))
        if detached or waiter is None:
            return 0
        try:
            return wait_status(waiter)
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


def check_detach_keys(keys: str | None) -> None:
    if keys:
        from engine.cli.term import DetachKeyError, parse_detach_keys

        try:
            parse_detach_keys(keys)
        except DetachKeyError as err:
            fail(f"engine: {err}", 125)
