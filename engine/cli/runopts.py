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
    devices: list[str] = field(default_factory=list)
    ulimits: list[str] = field(default_factory=list)
    shm_size: str = ""
    pids_limit: int | None = None
    security_opt: list[str] = field(default_factory=list)
    sysctls: list[str] = field(default_factory=list)
    cpu_shares: int = 0
    cpuset_cpus: str = ""
    memory_swap: str = ""
    oom_kill_disable: bool = False
    add_hosts: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    log_driver: str = ""
    log_opts: list[str] = field(default_factory=list)
    stop_signal: str = ""
    stop_timeout: int | None = None
    expose: list[str] = field(default_factory=list)
    publish_all: bool = False
    group_add: list[str] = field(default_factory=list)
    ipc: str = ""
    pid: str = ""
    uts: str = ""
    cgroup_parent: str = ""
    runtime: str = ""
    domainname: str = ""
    volumes_from: list[str] = field(default_factory=list)
    health_cmd: str = ""
    health_interval: str = ""
    health_timeout: str = ""
    health_start_period: str = ""
    health_retries: int = 0
    no_healthcheck: bool = False


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def go_duration_ns(s: str, flag: str) -> int:
    """time.ParseDuration: ``1m30s`` → nanoseconds."""
    scale = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    if s == "0":
        return 0
    parts = _DURATION.findall(s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise OptionError(f'invalid argument "{s}" for "{flag}" flag: time: invalid duration "{s}"')
    return int(sum(float(n) * scale[u] for n, u in parts))


def parse_device(s: str) -> dict[str, str]:
    """``--device /dev/x[:/dev/y][:rwm]``."""
    parts = s.split(":")
    host = parts[0]
    ctr, perms = host, "rwm"
    if len(parts) == 2:
        if parts[1] and set(parts[1]) <= set("rwm"):
            perms = parts[1]
        else:
            ctr = parts[1]
    elif len(parts) == 3:
        ctr, perms = parts[1], parts[2]
        if not set(perms) <= set("rwm"):
            raise OptionError(f"invalid device mode: {perms}")
    elif len(parts) > 3:
        raise OptionError(f"invalid device specification: {s}")
    return {"PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": perms}


def parse_ulimit(s: str) -> dict[str, Any]:
    """``--ulimit nofile=1024[:2048]``."""
    name, eq, val = s.partition("=")
    if not eq:
        raise OptionError(f"invalid ulimit argument: {s}")
    soft, _, hard = val.partition(":")
    try:
        return {"Name": name, "Soft": int(soft), "Hard": int(hard or soft)}
    except ValueError:
        raise OptionError(f"invalid ulimit argument: {s}") from None


def _apply_extras(o: RunOptions, body: dict[str, Any], host: dict[str, Any]) -> None:
    """The less common flags, each only when given (docker leaves their fields at the zero value)."""
    if o.devices:
        host["Devices"] = [parse_device(d) for d in o.devices]
    if o.ulimits:
        host["Ulimits"] = [parse_ulimit(u) for u in o.ulimits]
    if o.shm_size:
        host["ShmSize"] = ram_in_bytes(o.shm_size, "--shm-size")
    if o.pids_limit is not None:
        host["PidsLimit"] = o.pids_limit
    if o.security_opt:
        host["SecurityOpt"] = list(o.security_opt)
    if o.sysctls:
        host["Sysctls"] = parse_labels(o.sysctls)
    if o.cpu_shares:
        host["CpuShares"] = o.cpu_shares
    if o.cpuset_cpus:
        host["CpusetCpus"] = o.cpuset_cpus
    if o.memory_swap:
        host["MemorySwap"] = -1 if o.memory_swap == "-1" else ram_in_bytes(o.memory_swap, "--memory-swap")
    if o.oom_kill_disable:
        host["OomKillDisable"] = True
    if o.add_hosts:
        host["ExtraHosts"] = list(o.add_hosts)
    for key, val in (("Dns", o.dns), ("DnsSearch", o.dns_search), ("DnsOptions", o.dns_options),
                     ("GroupAdd", o.group_add), ("VolumesFrom", o.volumes_from)):
        if val:
            host[key] = list(val)
    if o.log_driver or o.log_opts:
        host["LogConfig"] = {"Type": o.log_driver, "Config": parse_labels(o.log_opts)}
    for key, sval in (("IpcMode", o.ipc), ("PidMode", o.pid), ("UTSMode", o.uts), ("CgroupParent", o.cgroup_parent),
                      ("Runtime", o.runtime)):
        if sval:
            host[key] = sval
    if o.publish_all:
        host["PublishAllPorts"] = True
    if o.stop_signal:
        body["StopSignal"] = o.stop_signal
    if o.stop_timeout is not None:
        body["StopTimeout"] = o.stop_timeout
    if o.domainname:
        body["Domainname"] = o.domainname
    for e in o.expose:
        port, _, proto = e.partition("/")
        lo, hi = _port_range(port, e)
        for n in range(lo, hi + 1):
            body.setdefault("ExposedPorts", {})[f"{n}/{proto or 'tcp'}"] = {}
    if o.no_healthcheck:
        if o.health_cmd:
            raise OptionError("--no-healthcheck conflicts with --health-* options")
        body["Healthcheck"] = {"Test": ["NONE"]}
    elif o.health_cmd or o.health_interval or o.health_timeout or o.health_start_period or o.health_retries:
        hc: dict[str, Any] = {}
        if o.health_cmd:
            hc["Test"] = ["CMD-SHELL", o.health_cmd]
        for hkey, dur, flag in (("Interval", o.health_interval, "--health-interval"),
                                ("Timeout", o.health_timeout, "--health-timeout"),
                                ("StartPeriod", o.health_start_period, "--health-start-period")):
            if dur:
                hc[hkey] = go_duration_ns(dur, flag)
        if o.health_retries:
            hc["Retries"] = o.health_retries
        body["Healthcheck"] = hc


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
    _apply_extras(o, body, host)
    return body
