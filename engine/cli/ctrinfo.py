"""Read-side container verbs of the `engine` CLI: ps, inspect, logs, top, port, stats --no-stream.

Each prints what the docker CLI prints for the same API answer: ps's columns and the derived fields of
its formatter context (ID truncated to 12, Command quoted and cut to 20, "2 minutes ago", Ports as
``0.0.0.0:8080->80/tcp``, Names without the leading slash), so ``--format '{{.Names}}'`` and
``--format json`` give docker's values. ``inspect`` tries a container, then an image (``--type`` to
choose), and prints a 4-space-indented JSON array or the template per object.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import typer

from engine.cli.common import ClientError, client, die, fail, print_inspect


def filters_param(items: list[str]) -> str | None:
    """``--filter k=v`` (repeatable) → ``{"k":{"v":true}}``."""
    out: dict[str, dict[str, bool]] = {}
    for f in items:
        k, eq, v = f.partition("=")
        if not eq:
            fail("bad format of filter (expected name=value)")
        out.setdefault(k.strip().lower(), {})[v] = True
    return json.dumps(out, separators=(",", ":")) if out else None


def display_ports(ports: list[dict[str, Any]]) -> str:
    """docker's DisplayablePorts: ports sorted (private port, IP, public port, type); runs of consecutive
    ports with the same IP and type (published on the same number, or not published) shown as a range
    (``0.0.0.0:8000-8001->8000-8001/tcp``, ``53-54/udp``), other mappings as ``IP:PUB->PRIV/type``."""
    def key(p: dict[str, Any]) -> tuple[int, str, int, str]:
        return (p.get("PrivatePort") or 0, p.get("IP") or "", p.get("PublicPort") or 0, p.get("Type") or "")

    groups: dict[str, list[int]] = {}
    order: list[str] = []
    result: list[str] = []
    mappings: list[str] = []
    for p in sorted(ports or [], key=key):
        cur, typ, ip = p.get("PrivatePort") or 0, p.get("Type") or "tcp", p.get("IP") or ""
        group_key = typ
        if ip:
            if (p.get("PublicPort") or 0) != cur:
                host = f"[{ip}]" if ":" in ip else ip
                mappings.append(f"{host}:{p.get('PublicPort') or 0}->{cur}/{typ}")
                continue
            group_key = f"{ip}/{typ}"
        g = groups.get(group_key)
        if g is None:
            groups[group_key] = [cur, cur]
            order.append(group_key)
        elif cur == g[1] + 1:
            g[1] = cur
        else:
            result.append(_form_group(group_key, g[0], g[1]))
            groups[group_key] = [cur, cur]
    result += [_form_group(k, *groups[k]) for k in order]
    return ", ".join(result + mappings)


def _form_group(key: str, first: int, last: int) -> str:
    ip, _, typ = key.rpartition("/")
    rng = str(first) if first == last else f"{first}-{last}"
    if ip:
        rng = f"{ip}:{rng}->{rng}"
    return f"{rng}/{typ}"


class ContainerRow:
    """docker's ContainerContext over one /containers/json item."""

    FIELDS = ("Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes", "Mounts", "Names", "Networks",
              "Ports", "RunningFor", "Size", "State", "Status")

    def __init__(self, c: dict[str, Any], trunc: bool = True) -> None:
        self.c = c
        self.trunc = trunc

    @property
    def ID(self) -> str:  # noqa: N802 - docker's template names
        from engine.cli.format import trunc_id

        return trunc_id(self.c["Id"]) if self.trunc else self.c["Id"]

    @property
    def Names(self) -> str:  # noqa: N802
        names = [n[1:] if n.startswith("/") else n for n in self.c.get("Names") or []]
        return ",".join(n for n in names if "/" not in n)

    @property
    def Image(self) -> str:  # noqa: N802
        from engine.cli.format import trunc_id

        img = self.c.get("Image") or ""
        if not img:
            return "<no image>"
        if self.trunc:
            if img.startswith("sha256:") or re.fullmatch(r"[0-9a-f]{64}", img):
                return trunc_id(img)
            if "@" in img:
                return img.split("@", 1)[0]
        return img

    @property
    def Command(self) -> str:  # noqa: N802
        from engine.cli.format import ellipsis, go_quote

        cmd = self.c.get("Command") or ""
        return go_quote(ellipsis(cmd, 20) if self.trunc else cmd)

    @property
    def CreatedAt(self) -> str:  # noqa: N802
        t = time.localtime(int(self.c.get("Created") or 0))
        return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", t)

    @property
    def RunningFor(self) -> str:  # noqa: N802
        from engine.cli.format import human_duration

        return human_duration(time.time() - int(self.c.get("Created") or 0)) + " ago"

    @property
    def Ports(self) -> str:  # noqa: N802
        return display_ports(self.c.get("Ports") or [])

    @property
    def State(self) -> str:  # noqa: N802
        return str(self.c.get("State") or "")

    @property
    def Status(self) -> str:  # noqa: N802
        return str(self.c.get("Status") or "")

    @property
    def Size(self) -> str:  # noqa: N802
        from engine.cli.format import human_size

        srw = human_size(self.c.get("SizeRw") or 0, 3)
        if self.c.get("SizeRootFs"):
            return f"{srw} (virtual {human_size(self.c['SizeRootFs'], 3)})"
        return srw

    @property
    def Labels(self) -> str:  # noqa: N802
        return ",".join(f"{k}={v}" for k, v in sorted((self.c.get("Labels") or {}).items()))

    @property
    def Mounts(self) -> str:  # noqa: N802
        from engine.cli.format import ellipsis

        out = []
        for m in self.c.get("Mounts") or []:
            name = m.get("Name") or m.get("Source") or ""
            out.append(ellipsis(name, 15) if self.trunc and m.get("Name") else name)
        return ",".join(out)

    @property
    def Networks(self) -> str:  # noqa: N802
        return ",".join(sorted(((self.c.get("NetworkSettings") or {}).get("Networks") or {}).keys()))

    @property
    def LocalVolumes(self) -> str:  # noqa: N802
        return str(sum(1 for m in self.c.get("Mounts") or [] if m.get("Driver") == "local"))

    def Label(self, name: str) -> str:  # noqa: N802
        return str((self.c.get("Labels") or {}).get(name, ""))

    def to_dict(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in self.FIELDS}


PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
              "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
              "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
              "LocalVolumes": "LOCAL VOLUMES"}


def ps_output(items: list[dict[str, Any]], *, quiet: bool, fmt: str | None, no_trunc: bool, size: bool) -> str:
    from engine.cli.format import render_rows

    rows = [ContainerRow(c, trunc=not no_trunc) for c in items]
    if quiet and not fmt:
        return "".join(r.ID + "\n" for r in rows)
    default = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    if size:
        default += "\t{{.Size}}"
    return render_rows(rows, fmt, default, PS_HEADERS)


def _timestamp(value: str | None) -> str | None:
    """docker's timetypes.GetTimestamp: a duration before now, RFC 3339, or unix seconds."""
    if not value:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return value
    m = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)", value)
    if m:
        scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
        secs = sum(float(n) * scale[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value))
        t = time.time() - secs
        return f"{int(t)}.{int((t % 1) * 1e9):09d}"
    from datetime import datetime

    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"invalid value for \"since\"/\"until\": {value}")
    if dt.tzinfo is None:
        dt = dt.astimezone()
    t = dt.timestamp()
    return f"{int(t)}.{int(round((t % 1) * 1e9)):09d}"


def register(app: typer.Typer, container_app: typer.Typer) -> None:
    def ps(
        all_: bool = typer.Option(False, "-a", "--all", help="show all containers (default: running)"),
        quiet: bool = typer.Option(False, "-q", "--quiet", help="only display container IDs"),
        last: int = typer.Option(-1, "-n", "--last", help="show the n last created containers"),
        latest: bool = typer.Option(False, "-l", "--latest"),
        filter_: list[str] = typer.Option([], "-f", "--filter", help="KEY=VALUE (repeatable)"),
        fmt: str | None = typer.Option(None, "--format", help="table TEMPLATE, TEMPLATE or json"),
        no_trunc: bool = typer.Option(False, "--no-trunc"),
        size: bool = typer.Option(False, "-s", "--size", help="display total file sizes"),
    ) -> None:
        """List containers."""
        if latest and last == -1:
            last = 1
        params = {"all": 1 if all_ or last > 0 else None, "limit": last if last > 0 else None,
                  "size": 1 if size else None, "filters": filters_param(filter_)}
        try:
            items = client().json("GET", "/containers/json", params)
        except ClientError as err:
            die(err)
        sys.stdout.write(ps_output(items, quiet=quiet, fmt=fmt, no_trunc=no_trunc, size=size))

    def inspect(
        names: list[str] = typer.Argument(..., metavar="NAME|ID..."),
        fmt: str | None = typer.Option(None, "-f", "--format"),
        type_: str | None = typer.Option(None, "--type", help="container|image"),
        size: bool = typer.Option(False, "-s", "--size"),
    ) -> None:
        """Return low-level information on containers or images."""
        from engine.cli.client import q

        c = client()
        objs, errors = [], []
        kinds = [type_] if type_ else ["container", "image"]
        for name in names:
            for kind in kinds:
                path = (f"/containers/{q(name)}/json" if kind == "container" else f"/images/{q(name)}/json")
                try:
                    objs.append(c.json("GET", path, {"size": 1} if size and kind == "container" else None))
                    break
                except ClientError as err:
                    if err.status != 404:
                        die(err)
            else:
                errors.append(f"Error: No such {type_ if type_ else 'object'}: {name}")
        print_inspect(objs, fmt, errors)

    def logs(
        container: str = typer.Argument(...),
        follow: bool = typer.Option(False, "-f", "--follow"),
        tail: str = typer.Option("all", "-n", "--tail"),
        since: str | None = typer.Option(None, "--since"),
        until: str | None = typer.Option(None, "--until"),
        timestamps: bool = typer.Option(False, "-t", "--timestamps"),
        details: bool = typer.Option(False, "--details"),
    ) -> None:
        """Fetch the logs of a container."""
        from engine.cli.client import q
        from engine.cli.term import Demux

        c = client(timeout=None)
        try:
            info = c.json("GET", f"/containers/{q(container)}/json")
            params = {"stdout": 1, "stderr": 1, "follow": 1 if follow else None, "tail": tail,
                      "since": _timestamp(since), "until": _timestamp(until),
                      "timestamps": 1 if timestamps else None, "details": 1 if details else None}
            resp = c.request("GET", f"/containers/{info['Id']}/logs", params, stream=True)
            demux = None if info["Config"].get("Tty") else Demux(sys.stdout.fileno(), sys.stderr.fileno())
            for chunk in c.body(resp):
                if demux is None:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
                else:
                    demux.feed(chunk)
        except ClientError as err:
            die(err)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    def top(container: str = typer.Argument(...), ps_args: list[str] = typer.Argument(None)) -> None:
        """Display the running processes of a container."""
        from engine.cli.client import q
        from engine.cli.format import table

        try:
            doc = client().json("GET", f"/containers/{q(container)}/top",
                                {"ps_args": " ".join(ps_args) if ps_args else None})
        except ClientError as err:
            die(err)
        sys.stdout.write(table([doc["Titles"], *doc["Processes"]], minwidth=20))

    def port(container: str = typer.Argument(...), private: str | None = typer.Argument(None)) -> None:
        """List port mappings or a specific mapping for the container."""
        from engine.cli.client import q

        try:
            info = client().json("GET", f"/containers/{q(container)}/json")
        except ClientError as err:
            die(err)
        ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
        if private:
            key = private if "/" in private else f"{private}/tcp"
            binds = ports.get(key)
            if not binds:
                fail(f"Error: No public port '{key}' published for {container}")
            for b in binds:
                ip = b.get("HostIp") or "0.0.0.0"
                typer.echo(f"{f'[{ip}]' if ':' in ip else ip}:{b.get('HostPort')}")
            return
        for key in sorted(ports, key=lambda k: (int(k.split("/")[0]), k)):
            for b in ports[key] or []:
                ip = b.get("HostIp") or "0.0.0.0"
                typer.echo(f"{key} -> {f'[{ip}]' if ':' in ip else ip}:{b.get('HostPort')}")

    def stats(
        containers: list[str] = typer.Argument(None, metavar="[CONTAINER...]"),
        all_: bool = typer.Option(False, "-a", "--all"),
        no_stream: bool = typer.Option(False, "--no-stream", help="print one sample and exit"),
        no_trunc: bool = typer.Option(False, "--no-trunc"),
        fmt: str | None = typer.Option(None, "--format"),
    ) -> None:
        """Display a live stream of containers' resource usage (--no-stream: one sample)."""
        from engine.cli.stats import stats_command

        stats_command(client(timeout=None), list(containers or []), all_=all_, no_stream=no_stream,
                      no_trunc=no_trunc, fmt=fmt)

    def cp(src: str = typer.Argument(..., metavar="SRC"), dest: str = typer.Argument(..., metavar="DEST"),
           quiet: bool = typer.Option(False, "-q", "--quiet")) -> None:
        """Copy files/folders between a container (CONTAINER:PATH) and the local filesystem ('-': a tar)."""
        from engine.cli.cp import CpError
        from engine.cli.cp import cp as run_cp

        try:
            line = run_cp(client(timeout=None), src, dest)
        except ClientError as err:
            die(err)
        except (CpError, OSError) as err:
            fail(f"Error: {err}")
        if line and not quiet:
            typer.echo(line, err=True)

    app.command("ps")(ps)
    app.command("inspect")(inspect)
    container_app.command("ls")(ps)
    container_app.command("ps", hidden=True)(ps)
    container_app.command("list", hidden=True)(ps)

    def container_inspect(names: list[str] = typer.Argument(..., metavar="CONTAINER..."),
                          fmt: str | None = typer.Option(None, "-f", "--format"),
                          size: bool = typer.Option(False, "-s", "--size")) -> None:
        """Display detailed information on one or more containers."""
        inspect(names, fmt, "container", size)

    container_app.command("inspect")(container_inspect)
    for target in (app, container_app):
        target.command("cp")(cp)
        target.command("top", context_settings={"allow_interspersed_args": False})(top)
        for fn in (logs, port, stats):
            target.command(fn.__name__)(fn)
