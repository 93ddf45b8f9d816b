"""Docker's JSON shapes for containers: ``ContainerInspect`` (``GET /containers/{id}/json``) and the list's
summary (``GET /containers/json``), with Docker's time formats and ``Status`` strings.

Times are Go's RFC3339Nano (trailing zeros dropped; ``0001-01-01T00:00:00Z`` for never). The
``Status`` column follows docker/go-units' HumanDuration ("Up 5 seconds", "Exited (0) About a minute
ago"). Until engine/network exists, NetworkSettings has the network's entry with no address.
"""

from __future__ import annotations

import time
from typing import Any

from engine.humanize import human_duration
from engine.services.dockerd import record as rec
from engine.services.dockerd.mounts import MountPoint
from engine.services.dockerd.record import DockerContainer

ZERO_TIME = "0001-01-01T00:00:00Z"
_HIDDEN_HC = ()


def rfc3339nano(ns: int) -> str:
    if not ns:
        return ZERO_TIME
    sec, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    f = f"{frac:09d}".rstrip("0")
    return base + (f".{f}" if f else "") + "Z"


def status_text(c: DockerContainer, now_ns: int | None = None, health: str = "") -> str:
    now = now_ns or time.time_ns()
    s = c.state
    if s.status == rec.RUNNING:
        suffix = {"starting": " (health: starting)", "healthy": " (healthy)", "unhealthy": " (unhealthy)"}
        return f"Up {human_duration((now - s.started_at) / 1e9)}{suffix.get(health, '')}"
    if s.status == rec.PAUSED:
        return f"Up {human_duration((now - s.started_at) / 1e9)} (Paused)"
    if s.status == rec.RESTARTING:
        return f"Restarting ({s.exit_code}) {human_duration((now - s.finished_at) / 1e9)} ago"
    if s.status == rec.REMOVING:
        return "Removal In Progress"
    if s.status == rec.DEAD:
        return "Dead"
    if s.status == rec.EXITED or s.finished_at:
        return f"Exited ({s.exit_code}) {human_duration((now - s.finished_at) / 1e9)} ago"
    return "Created"


def docker_state(c: DockerContainer) -> dict[str, Any]:
    s = c.state
    status = s.status if s.status != rec.CREATING else rec.CREATED
    return {"Status": status, "Running": s.running, "Paused": s.status == rec.PAUSED,
            "Restarting": s.status == rec.RESTARTING, "OOMKilled": s.oom_killed, "Dead": s.status == rec.DEAD,
            "Pid": s.pid if s.status in (rec.RUNNING, rec.PAUSED) else 0, "ExitCode": s.exit_code, "Error": s.error,
            "StartedAt": rfc3339nano(s.started_at), "FinishedAt": rfc3339nano(s.finished_at)}


def mounts(c: DockerContainer, volumes_root: str = "") -> list[dict[str, Any]]:
    out = []
    for m in c.mounts:
        p = MountPoint(**m)
        if p.type == "volume" and not p.source and volumes_root:
            p.source = f"{volumes_root}/{p.name}/_data"
        out.append(p.docker())
    return out


def _network_entry() -> dict[str, Any]:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
            "GwPriority": 0, "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}


def network_settings(c: DockerContainer, attached: dict[str, Any] | None = None,
                     ports: dict[str, Any] | None = None) -> dict[str, Any]:
    """NetworkSettings; `attached` is the endpoints by network name (netattach.settings), `ports` the
    published ports. The top-level address fields are the default bridge's, as dockerd fills them."""
    mode = c.host_config.get("NetworkMode") or "bridge"
    running = c.state.status in (rec.RUNNING, rec.PAUSED)
    nets: dict[str, Any] = {} if mode.startswith("container:") else {mode: _network_entry()}
    nets.update(attached or {})
    main = (attached or {}).get("bridge") or {}
    return {"Bridge": "", "SandboxID": c.id if running and mode != "host" else "", "SandboxKey":
            f"/proc/{c.state.pid}/ns/net" if running and mode not in ("host",) else "", "Ports": ports or {},
            "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": main.get("EndpointID", ""),
            "Gateway": main.get("Gateway", ""), "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPAddress": main.get("IPAddress", ""), "IPPrefixLen": main.get("IPPrefixLen", 0), "IPv6Gateway": "",
            "MacAddress": main.get("MacAddress", ""), "Networks": nets}


def port_list(ports: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The list's ``Ports``: published ones with their host side, exposed ones without."""
    out: list[dict[str, Any]] = []
    for key, binds in (ports or {}).items():
        port, _, proto = key.partition("/")
        if not binds:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
            continue
        for b in binds:
            out.append({"IP": b.get("HostIp") or "0.0.0.0", "PrivatePort": int(port),
                        "PublicPort": int(b.get("HostPort") or 0), "Type": proto or "tcp"})
    return out


def config(c: DockerContainer) -> dict[str, Any]:
    cfg = c.config
    out = {"Hostname": cfg.get("Hostname") or c.id[:12], "Domainname": cfg.get("Domainname") or "",
           "User": cfg.get("User") or "", "AttachStdin": bool(cfg.get("AttachStdin")),
           "AttachStdout": bool(cfg.get("AttachStdout")), "AttachStderr": bool(cfg.get("AttachStderr")),
           "Tty": bool(cfg.get("Tty")), "OpenStdin": bool(cfg.get("OpenStdin")),
           "StdinOnce": bool(cfg.get("StdinOnce")), "Env": cfg.get("Env") or None, "Cmd": cfg.get("Cmd") or None,
           "Image": c.image, "Volumes": cfg.get("Volumes") or None, "WorkingDir": cfg.get("WorkingDir") or "",
           "Entrypoint": cfg.get("Entrypoint") or None, "OnBuild": cfg.get("OnBuild") or None,
           "Labels": cfg.get("Labels") or {}}
    for key in ("ExposedPorts", "Healthcheck", "StopSignal", "StopTimeout", "Shell", "ArgsEscaped"):
        if cfg.get(key) not in (None, "", [], {}):
            out[key] = cfg[key]
    return out


def inspect(c: DockerContainer, *, size: tuple[int, int] | None = None, volumes_root: str = "",
            exec_ids: list[str] | None = None, health: dict[str, Any] | None = None,
            networks: tuple[dict[str, Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    hc = dict(c.host_config)
    hc.setdefault("MaskedPaths", None)
    out: dict[str, Any] = {
        "Id": c.id, "Created": rfc3339nano(c.created), "Path": c.path, "Args": list(c.args),
        "State": docker_state(c), "Image": c.image_id, "ResolvConfPath": c.resolv_path,
        "HostnamePath": c.hostname_path, "HostsPath": c.hosts_path, "LogPath": c.log_path, "Name": c.name,
        "RestartCount": c.restart_count, "Driver": c.snapshotter, "Platform": "linux", "MountLabel": "",
        "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": exec_ids or None, "HostConfig": hc,
        "GraphDriver": {"Data": None, "Name": c.snapshotter}, "Mounts": mounts(c, volumes_root),
        "Config": config(c), "NetworkSettings": network_settings(c, *(networks or ({}, {}))),
    }
    if health is not None:
        out["State"]["Health"] = health
    if size is not None:
        out["SizeRw"], out["SizeRootFs"] = size
    return out


def summary(c: DockerContainer, *, size: tuple[int, int] | None = None, volumes_root: str = "",
            health: str = "", networks: tuple[dict[str, Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    mode = c.host_config.get("NetworkMode") or "bridge"
    out: dict[str, Any] = {
        "Id": c.id, "Names": [c.name], "Image": c.image, "ImageID": c.image_id,
        "Command": " ".join([c.path, *c.args]) if c.args else c.path, "Created": c.created // 1_000_000_000,
        "Ports": port_list((networks or ({}, {}))[1]), "Labels": c.config.get("Labels") or {},
        "State": docker_state(c)["Status"], "Status": status_text(c, health=health),
        "HostConfig": {"NetworkMode": mode},
        "NetworkSettings": {"Networks": network_settings(c, *(networks or ({}, {})))["Networks"]}, "Mounts": [
            {k: v for k, v in m.items()} for m in mounts(c, volumes_root)],
    }
    if size is not None:
        out["SizeRw"], out["SizeRootFs"] = size
    return out
