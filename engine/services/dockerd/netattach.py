"""A Docker container's network at start and after its exit, over engine/services/networks.

NetworkMode ``host`` has no namespace of its own; ``container:<id>`` joins that container's. ``none``,
``bridge`` and a user-defined network get a sandbox (``networks.create_sandbox``: a namespace file with
lo up); a bridge network is then attached before the process starts (an address on the network, a veth,
``PortBindings``/``PublishAllPorts`` published), and the container's /etc/hosts gains its address and
hostname, its /etc/resolv.conf the embedded DNS (127.0.0.11) on a user-defined network, as dockerd writes
them. After the exit the endpoints and ports are detached and the sandbox removed (both idempotent).

Without a network service (a daemon built without one) every mode but ``host`` is a private namespace
with only lo, brought up by the spec's hook (spec.py).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from engine.errors import EngineError, InvalidArgument, NotFound

if TYPE_CHECKING:
    from engine.services import Services
    from engine.services.dockerd.record import DockerContainer

log = logging.getLogger(__name__)
EMBEDDED_DNS = "127.0.0.11"


def _mode(c: DockerContainer) -> str:
    return c.host_config.get("NetworkMode") or "bridge"


def port_specs(hc: dict[str, Any], exposed: dict[str, Any] | None) -> list[Any]:
    """PortBindings (and PublishAllPorts over ExposedPorts) as the network service's PortSpecs."""
    from engine.network.ports import PortSpec

    out = []
    bindings = dict(hc.get("PortBindings") or {})
    if hc.get("PublishAllPorts"):
        for key in exposed or {}:
            bindings.setdefault(key, [{"HostIp": "", "HostPort": ""}])
    for key, binds in bindings.items():
        port, _, proto = key.partition("/")
        try:
            cport = int(port)
        except ValueError:
            raise InvalidArgument(f"invalid port specification: \"{key}\"") from None
        for b in binds or [{}]:
            hp = (b or {}).get("HostPort") or "0"
            try:
                host_port = int(hp.split("-")[0])
            except ValueError:
                raise InvalidArgument(f"invalid port specification: \"{hp}\"") from None
            out.append(PortSpec(container_port=cport, proto=proto or "tcp", host_ip=(b or {}).get("HostIp") or "",
                                host_port=host_port))
    return out


async def check(services: Services, hc: dict[str, Any]) -> None:
    """At create: the network must exist (404 ``network x not found``)."""
    mode = hc.get("NetworkMode") or "bridge"
    if mode in ("host", "none", "bridge", "default") or mode.startswith("container:"):
        return
    nets = getattr(services, "networks", None)
    if nets is None:
        raise NotFound(f"network {mode} not found")
    net = await nets.inspect(mode)
    if net.driver in ("host", "null"):
        return


async def start(services: Services, c: DockerContainer, *, actor: str) -> str | None:
    """Prepare the container's network; the namespace path for the spec, or None to let the runtime make
    one (no network service) or for ``host``/``container:`` modes (the spec handles those)."""
    nets = getattr(services, "networks", None)
    mode = _mode(c)
    if nets is None or mode == "host" or mode.startswith("container:"):
        return None
    path = await nets.create_sandbox(c.id, actor=actor)
    if mode == "none":
        return path
    from engine.services.networks.service import EndpointRequest

    eps = (c.networking or {}).get("EndpointsConfig") or {}
    # the CLI keys the default network's settings by its NetworkMode as given ("default" for no --network)
    ep_cfg = eps.get(mode) or (eps.get("default") if mode == "bridge" else None) or {}
    aliases = [a for a in (ep_cfg.get("Aliases") or []) if isinstance(a, str)]
    ip = ((ep_cfg.get("IPAMConfig") or {}).get("IPv4Address")) or ""
    mac = ep_cfg.get("MacAddress") or c.config.get("MacAddress") or ""
    try:
        settings = await nets.attach(c.id, path, [EndpointRequest(network=mode, aliases=aliases, ip=ip, mac=mac)],
                                     port_specs(c.host_config, c.config.get("ExposedPorts")), name=c.name,
                                     actor=actor)
    except BaseException:
        with contextlib.suppress(Exception):
            await nets.remove_sandbox(c.id, actor=actor)
        raise
    await _write_etc(services, c, settings)
    return path


async def _write_etc(services: Services, c: DockerContainer, settings: dict[str, Any]) -> None:
    import asyncio
    from pathlib import Path

    from engine.services.dockerd.containers import HOSTS, resolv_conf

    hostname = c.config.get("Hostname") or c.id[:12]
    lines = HOSTS
    for extra in c.host_config.get("ExtraHosts") or []:
        host, _, addr = extra.partition(":")
        lines += f"{addr}\t{host}\n"
    user_net = False
    for name, s in settings.items():
        lines += f"{s.ip}\t{hostname}\n"
        nets = getattr(services, "networks", None)
        if nets is not None:
            with contextlib.suppress(EngineError):
                user_net = user_net or (await nets.inspect(name)).dns
    resolv = resolv_conf(c.host_config, services.config, False)
    if user_net:
        opts = [ln for ln in resolv.splitlines() if ln.startswith(("search", "options"))]
        resolv = "\n".join([f"nameserver {EMBEDDED_DNS}", *opts, ""]) if opts else f"nameserver {EMBEDDED_DNS}\n"

    def write() -> None:
        if c.hosts_path:
            Path(c.hosts_path).write_text(lines)
        if c.resolv_path:
            Path(c.resolv_path).write_text(resolv)

    await asyncio.to_thread(write)


async def stop(services: Services, cid: str, *, actor: str) -> None:
    """After the exit (or at removal): endpoints, ports and the sandbox go; idempotent."""
    nets = getattr(services, "networks", None)
    if nets is None:
        return
    try:
        await nets.detach(cid, actor=actor)
    except EngineError as err:
        log.warning("container %s: detaching its network failed: %s", cid[:12], err)
    try:
        await nets.remove_sandbox(cid, actor=actor)
    except (EngineError, OSError) as err:
        log.warning("container %s: removing its network namespace failed: %s", cid[:12], err)


async def settings(services: Services, c: DockerContainer) -> tuple[dict[str, Any], dict[str, Any]]:
    """(NetworkSettings.Networks entries by network name, NetworkSettings.Ports) as Docker shows them."""
    nets = getattr(services, "networks", None)
    mode = _mode(c)
    if nets is None or mode.startswith("container:"):
        return {}, {}
    ports: dict[str, Any] = {key: None for key in (c.config.get("ExposedPorts") or {})}
    if c.state.status not in ("running", "paused", "restarting"):
        return {}, ports  # endpoints live from the start to the exit: nothing to read
    eps = await nets.endpoints(container_id=c.id)
    out: dict[str, Any] = {}
    for e in eps:
        try:
            net = await nets.inspect(e.network_id)
        except EngineError:
            continue
        prefix = ipaddress.ip_network(net.subnet, strict=False).prefixlen if net.subnet else 0
        out[net.name] = {"IPAMConfig": None, "Links": None, "Aliases": list(e.aliases) or None, "MacAddress": e.mac,
                         "DriverOpts": None, "GwPriority": 0, "NetworkID": net.id, "EndpointID": e.id,
                         "Gateway": "" if net.internal else net.gateway, "IPAddress": e.ip, "IPPrefixLen": prefix,
                         "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                         "DNSNames": ([n for n in [c.short_name, *e.aliases, c.id[:12]] if n] if net.dns else None)}
    for p in await nets.ports(c.id):
        key = f"{p.container_port}/{p.proto}"
        if ports.get(key) is None:
            ports[key] = []
        ports[key].append({"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
    return out, ports
