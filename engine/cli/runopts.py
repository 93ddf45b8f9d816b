"""`engine run` / `engine create` flags → the body of ``POST /containers/create``, as the docker CLI
builds it (cli/command/container/opts.go): Config with HostConfig and NetworkingConfig inline.

Pure functions over plain values (no I/O but reading --env-file and the caller's environment), so the
flag → request mapping is unit-tested without a daemon. Bad values raise ValueError with docker's
wording; the caller prints it and exits 125.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

_RAM = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")


class OptionError(ValueError):
    pass


def ram_in_bytes(s: str, flag: str = "--memory") -> int:
    """go-units RAMInBytes: ``512m`` → 536870912 (binary multiples, an optional ``b``/``ib``)."""
    m = _RAM.match(s.strip())
    if not m:
        raise OptionError(f'invalid argument "{s}" for "{flag}" flag: invalid size: \'{s}\'')
    mult = 1024 ** (" kmgtp".index(m.group(2).lower()) if m.group(2) else 0)
    return int(float(m.group(1)) * mult)


def nano_cpus(s: str) -> int:
    try:
        v = float(s)
    except ValueError:
        raise OptionError(f'invalid argument "{s}" for "--cpus" flag: failed to parse {s} as a rational number') \
            from None
    return int(round(v * 1e9))


def env_value(item: str) -> str:
    """``KEY`` alone takes the caller's value when it has one (docker's opts.ValidateEnv)."""
    if "=" in item:
        if item.startswith("="):
            raise OptionError(f"invalid environment variable: {item}")
        return item
    val = os.environ.get(item)
    return item if val is None else f"{item}={val}"


def read_env_file(path: str) -> list[str]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise OptionError(f"open {path}: {err.strerror.lower() if err.strerror else err}") from None
    out = []
    for line in lines:
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        out.append(env_value(line))
    return out


def parse_ports(specs: list[str]) -> tuple[dict[str, dict], dict[str, list[dict[str, str]]]]:
    """``-p`` (nat.ParsePortSpec): ``[ip:][hostPort:]containerPort[/proto]``, ranges on either side."""
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        raw, proto = spec, "tcp"
        if "/" in raw:
            raw, proto = raw.rsplit("/", 1)
            if proto not in ("tcp", "udp", "sctp"):
                raise OptionError(f"invalid proto: {proto}")
        ip, host, ctr = "", "", raw
        if raw.startswith("["):
            end = raw.find("]")
            ip, rest = raw[1:end], raw[end + 2:]
            host, _, ctr = rest.rpartition(":")
        else:
            parts = raw.split(":")
            if len(parts) == 2:
                host, ctr = parts
            elif len(parts) == 3:
                ip, host, ctr = parts
            elif len(parts) > 3:
                raise OptionError(f"invalid port format: {spec}")
        if not ctr:
            raise OptionError(f"no port specified: {spec}<empty>")
        c0, c1 = _port_range(ctr, spec)
        if host:
            h0, h1 = _port_range(host, spec)
            if c1 - c0 != h1 - h0 and h1 - h0 != 0 and c0 != c1:
                raise OptionError(f"invalid ranges specified for container and host Ports: {ctr} and {host}")
        for i, port in enumerate(range(c0, c1 + 1)):
            key = f"{port}/{proto}"
            exposed[key] = {}
            if not host:
                hp = ""
            elif c0 == c1 and h1 != h0:
                hp = f"{h0}-{h1}"
            else:
                hp = str(h0 + i)
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": hp})
    return exposed, bindings


def _port_range(s: str, spec: str) -> tuple[int, int]:
    lo, _, hi = s.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise OptionError(f"invalid containerPort: {s}" if s else f"invalid port format: {spec}") from None
    if not (0 <= a <= 65535 and a <= b <= 65535):
        raise OptionError(f"invalid port range: {s}")
    return a, b


def parse_mount(spec: str) -> dict[str, Any]:
    """``--mount type=bind,source=/a,target=/b,readonly`` → a HostConfig.Mounts entry."""
    m: dict[str, Any] = {"Type": "volume"}
    bind: dict[str, Any] = {}
    vol: dict[str, Any] = {}
    tmp: dict[str, Any] = {}
    for part in spec.split(","):
        key, eq, val = part.partition("=")
        key = key.strip().lower()
        if key in ("readonly", "ro"):
            if eq and val.lower() not in ("1", "true", "0", "false"):
                raise OptionError(f"invalid value for {key}: {val}")
            m["ReadOnly"] = not eq or val.lower() in ("1", "true")
            continue
        if key == "volume-nocopy":
            vol["NoCopy"] = not eq or val.lower() in ("1", "true")
            continue
        if not eq:
            raise OptionError(f"invalid field '{part}' must be a key=value pair")
        if key == "type":
            m["Type"] = val
        elif key in ("source", "src"):
            m["Source"] = val
        elif key in ("target", "destination", "dst"):
            m["Target"] = val
        elif key == "consistency":
            m["Consistency"] = val
        elif key == "bind-propagation":
            bind["Propagation"] = val
        elif key == "volume-label":
            k, _, v = val.partition("=")
            vol.setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            vol.setdefault("DriverConfig", {})["Name"] = val
        elif key == "volume-opt":
            k, _, v = val.partition("=")
            vol.setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key == "volume-subpath":
            vol["Subpath"] = val
        elif key == "tmpfs-size":
            tmp["SizeBytes"] = ram_in_bytes(val, "--mount")
        elif key == "tmpfs-mode":
            tmp["Mode"] = int(val, 8)
        else:
            raise OptionError(f"unexpected key '{key}' in '{part}'")
    if "Target" not in m:
        raise OptionError("target is required")
    if bind:
        m["BindOptions"] = bind
    if vol:
        m["VolumeOptions"] = vol
    if tmp:
        m["TmpfsOptions"] = tmp
    return m


def parse_restart(s: str) -> dict[str, Any]:
    name, _, count = s.partition(":")
    if count and name != "on-failure":
        raise OptionError("invalid restart policy format: maximum retry count can only be used with 'on-failure'")
    try:
        n = int(count) if count else 0
    except ValueError:
        raise OptionError("invalid restart policy format: maximum retry count must be an integer") from None
    return {"Name": name or "no", "MaximumRetryCount": n}


def parse_labels(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = v
    return out


@dataclass
class RunOptions:
    """The flags of `run`/`create` that shape the request (docker's names)."""

    image: str
    command: list[str] = field(default_factory=list)
    detach: bool = False
    interactive: bool = False
    tty: bool = False
    rm: bool = False
    env: list[str] = field(default_factory=list)
    env_file: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""
    name: str = ""
    entrypoint: str | None = None
    publish: list[str] = field(default_factory=list)
    network: str = ""
    hostname: str = ""
    labels: list[str] = field(default_factory=list)
    memory: str = ""
    cpus: str = ""
    restart: str = ""
    init: bool = False
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    read_only: bool = False
    tmpfs: list[str] = field(default_factory=list)
    platform: str = ""
    console_size: tuple[int, int] | None = None
    attach: bool = True  # run attaches unless -d; create never does


def create_body(o: RunOptions) -> dict[str, Any]:
    """The JSON body docker sends for these flags."""
    if o.rm and o.restart and o.restart != "no":
        raise OptionError("conflicting options: cannot specify both --restart and --rm")
    env = [e for f in o.env_file for e in read_env_file(f)] + [env_value(e) for e in o.env]
    exposed, bindings = parse_ports(o.publish)
    binds: list[str] = []
    anon: dict[str, dict] = {}
    for v in o.volumes:
        if ":" in v:
            binds.append(v)
        elif v.startswith("/"):
            anon[v] = {}
        else:
            raise OptionError(f"invalid volume specification: '{v}'")
    attach = o.attach and not o.detach
    tmpfs = {}
    for t in o.tmpfs:
        path, _, opts = t.partition(":")
        tmpfs[path] = opts
    host: dict[str, Any] = {
        "Binds": binds or None,
        "ContainerIDFile": "",
        "LogConfig": {"Type": "", "Config": {}},
        "NetworkMode": o.network or "default",
        "PortBindings": bindings,
        "RestartPolicy": parse_restart(o.restart) if o.restart else {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": o.rm,
        "VolumeDriver": "",
        "VolumesFrom": None,
        "ConsoleSize": list(o.console_size) if o.console_size and o.tty else [0, 0],
        "CapAdd": o.cap_add or None,
        "CapDrop": o.cap_drop or None,
        "Privileged": o.privileged,
        "ReadonlyRootfs": o.read_only,
        "Memory": ram_in_bytes(o.memory) if o.memory else 0,
        "NanoCpus": nano_cpus(o.cpus) if o.cpus else 0,
        "Init": True if o.init else None,
    }
    if tmpfs:
        host["Tmpfs"] = tmpfs
    if o.mounts:
        host["Mounts"] = [parse_mount(m) for m in o.mounts]
    body: dict[str, Any] = {
        "Hostname": o.hostname,
        "Domainname": "",
        "User": o.user,
        "AttachStdin": attach and o.interactive,
        "AttachStdout": attach,
        "AttachStderr": attach,
        "Tty": o.tty,
        "OpenStdin": o.interactive,
        "StdinOnce": attach and o.interactive,
        "Env": env,
        "Cmd": o.command or None,
        "Image": o.image,
        "Volumes": anon,
        "WorkingDir": o.workdir,
        "Entrypoint": ([o.entrypoint] if o.entrypoint else [""]) if o.entrypoint is not None else None,
        "OnBuild": None,
        "Labels": parse_labels(o.labels),
        "HostConfig": host,
        "NetworkingConfig": {"EndpointsConfig": {}},
    }
    if exposed:
        body["ExposedPorts"] = exposed
    return body
