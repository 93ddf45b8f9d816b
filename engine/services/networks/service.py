"""NetworkService: Docker's bridge networks, endpoints and published ports, journaled.

Commands decide inside the journal's write transaction (name taken, subnet overlap, the next free
address, a port held) and bracket the kernel work (engine/network: netlink, nftables, embedded DNS)
with intent and outcome events. One asyncio lock serialises kernel changes; reads are SELECTs.

The container start/stop path calls, in this order:
  ``netns = await create_sandbox(cid)`` → put ``{"type": "network", "path": netns}`` in the OCI spec →
  ``await attach(cid, netns, [EndpointRequest(network, aliases, ip)], ports, name=...)`` before the
  process starts; and after it exits ``await detach(cid)`` then ``await remove_sandbox(cid)``.
"""

from __future__ import annotations

import asyncio
import builtins
import ipaddress
import re
import secrets
import socket
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, PermissionDenied
from engine.events.journal import Journal
from engine.events.types import Event
from engine.network import dns as dnsmod
from engine.network import ipam, links, netns, nft
from engine.network.ports import PortSpec, reserve
from engine.services.networks import model
from engine.services.networks.events import (
    AddressAllocated,
    AddressReleased,
    EndpointAttached,
    EndpointAttachFailed,
    EndpointAttachRequested,
    EndpointDetached,
    EndpointDetachRequested,
    NetworkCreated,
    NetworkRemoved,
    PortBound,
    PortUnbound,
    SandboxCreated,
    SandboxRemoved,
    port_key,
)

if TYPE_CHECKING:
    from engine.config import Config

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
NAMESPACE = "moby"


@dataclass(frozen=True)
class EndpointRequest:
    network: str
    aliases: builtins.list[str] = field(default_factory=list)
    ip: str = ""
    mac: str = ""  # Docker's --mac-address; "" = 02:42 + the address


@dataclass
class EndpointSettings:
    """What Docker shows under NetworkSettings.Networks.<name>."""

    network_id: str
    endpoint_id: str
    ip: str
    prefixlen: int
    gateway: str
    mac: str
    aliases: builtins.list[str]
    dns_names: builtins.list[str]


class NetworkService:
    def __init__(self, journal: Journal, *, prefix: str = "engine", exec_root: str | Path = "/run/engine",
                 bridge_name: str = "", bridge_cidr: str = "", mtu: int = 0,
                 default_pools: builtins.list[object] | None = None, dns_forwarders: builtins.list[str] | None = None) -> None:
        self.journal = journal
        self.prefix = prefix
        self.table = prefix
        self.netns_dir = Path(exec_root) / "netns"
        self.bridge_name = bridge_name or f"{prefix}0"
        # "" = choose at the first start (--bip unset): 172.31.0.0/16 when free, as dockerd picks docker0's
        self.bridge_cidr = bridge_cidr
        self.mtu = mtu
        self.default_pools = default_pools
        self.dns = dnsmod.EmbeddedDNS(self._dns_lookup, dns_forwarders)
        self._lock = asyncio.Lock()
        self._reserved: dict[str, socket.socket] = {}
        self._dns_names: dict[str, dict[str, builtins.list[str]]] = {}  # container id -> name -> addresses

    @classmethod
    def from_config(cls, journal: Journal, config: Config) -> NetworkService:
        return cls(journal, prefix=config.network_prefix, exec_root=config.exec_root, bridge_name=config.bridge,
                   bridge_cidr=config.bip, mtu=config.mtu,
                   default_pools=config.default_address_pools, dns_forwarders=config.dns or None)

    # ---- names -------------------------------------------------------------------------------

    def _bridge_for(self, net_id: str) -> str:
        return f"{self.prefix}-{net_id[:14 - len(self.prefix)]}"

    def _veth_for(self, ep_id: str) -> str:
        return f"{self.prefix}v{ep_id[:13 - len(self.prefix)]}"

    async def _read(self, fn):  # type: ignore[no-untyped-def]
        return await self.journal.run_read(fn)

    # ---- networks ----------------------------------------------------------------------------

    async def ensure_builtin(self) -> None:
        """Docker's predefined networks bridge, host and none (records only; the bridge is made on use)."""
        nets = await self._read(model.networks)
        have = {n.name for n in nets}
        events: builtins.list[Event] = []
        if "bridge" not in have:
            existing = await asyncio.to_thread(links.bridge_addresses, self.bridge_name)
            if existing and not self.bridge_cidr:
                # as dockerd with docker0: without --bip an existing bridge keeps the address it has
                pool = ipam.default_bridge_pool(existing[0], self.prefix, [])
            else:
                routes = [str(r) for r in await asyncio.to_thread(links.host_routes)]
                pool = ipam.default_bridge_pool(self.bridge_cidr, self.prefix,
                                                routes + [n.subnet for n in nets if n.subnet])
        for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            if name in have:
                continue
            ev = NetworkCreated(id=secrets.token_hex(32), name=name, driver=driver, builtin=True)
            if name == "bridge":
                ev = NetworkCreated(id=ev.id, name=name, driver=driver, builtin=True, bridge=self.bridge_name,
                                    subnet=pool.subnet, gateway=pool.gateway,
                                    options={"com.docker.network.bridge.default_bridge": "true",
                                             "com.docker.network.bridge.enable_icc": "true",
                                             "com.docker.network.bridge.enable_ip_masquerade": "true",
                                             "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                                             "com.docker.network.bridge.name": self.bridge_name,
                                             "com.docker.network.driver.mtu": str(self.mtu or 1500)})
            events.append(ev)
        if events:
            await self.journal.append(events, namespace=NAMESPACE, actor="daemon", cause="recover")
        bridge = await self.inspect("bridge")
        # made at start, as docker0: its route then keeps other daemons (tests) from choosing its subnet
        await asyncio.to_thread(links.ensure_bridge, bridge.bridge, bridge.gateway,
                                ipam.Pool(bridge.subnet, "").prefixlen, self.mtu)

    async def create(self, name: str, *, driver: str = "bridge", internal: bool = False, attachable: bool = False,
                     labels: dict[str, str] | None = None, options: dict[str, str] | None = None, subnet: str = "",
                     gateway: str = "", ip_range: str = "", actor: str) -> model.Network:
        if not name or not _NAME.match(name):
            raise InvalidArgument(f"invalid network name \"{name}\": must match [a-zA-Z0-9][a-zA-Z0-9_.-]")
        driver = driver or "bridge"
        if driver != "bridge":
            raise NotFound(f"could not find plugin {driver} in v1 plugin registry: plugin not found")
        if name in model.BUILTIN:
            raise PermissionDenied(f"{name} is a pre-defined network and cannot be created")
        if subnet:
            pool = ipam.make_pool(subnet, gateway, ip_range)
        elif gateway or ip_range:
            raise InvalidArgument("gateway and ip-range need a subnet")
        else:
            pool = None
        routes = await asyncio.to_thread(links.host_routes)
        net_id = secrets.token_hex(32)
        options = dict(options or {})
        bridge = options.get("com.docker.network.bridge.name") or self._bridge_for(net_id)
        chosen: builtins.list[ipam.Pool] = []

        def decide(tx: sqlite3.Cursor) -> builtins.list[Event]:
            if tx.execute("SELECT 1 FROM networks WHERE name = ?", (name,)).fetchone():
                raise AlreadyExists(f"network with name {name} already exists")
            taken = [n.subnet for n in model.networks(tx) if n.subnet]
            if pool is not None:
                if any(ipam.overlaps(pool.subnet, t) for t in taken):
                    raise PermissionDenied("invalid pool request: Pool overlaps with other one on this address space")
                p = pool
            else:
                sub = ipam.pick_subnet(ipam.default_pools(self.default_pools), taken + [str(r) for r in routes])
                p = ipam.make_pool(sub)
            chosen.append(p)
            return [NetworkCreated(id=net_id, name=name, driver=driver, bridge=bridge, subnet=p.subnet,
                                   gateway=p.gateway, ip_range=p.ip_range, internal=internal,
                                   attachable=attachable, labels=dict(labels or {}), options=options)]

        async with self._lock:
            await self.journal.append(decide, namespace=NAMESPACE, actor=actor)
            p = chosen[0]
            try:
                await asyncio.to_thread(links.ensure_bridge, bridge, p.gateway, p.prefixlen, self.mtu)
                await self._apply_rules()
            except BaseException as err:
                await asyncio.to_thread(links.delete_link, bridge)
                await self.journal.append([NetworkRemoved(id=net_id, name=name)], namespace=NAMESPACE,
                                          actor=actor)
                await self._apply_rules()
                raise Conflict(f"failed to create network {name}: {err}") from err
        return await self.inspect(net_id)

    async def list(self) -> builtins.list[model.Network]:
        return await self._read(model.networks)  # type: ignore[no-any-return]

    async def inspect(self, ref: str) -> model.Network:
        net = await self._read(lambda c: model.find_network(c, ref))
        if net is None:
            raise NotFound(f"network {ref} not found")
        return net  # type: ignore[no-any-return]

    async def endpoints(self, *, network_id: str | None = None, container_id: str | None = None
                        ) -> builtins.list[model.Endpoint]:
        return await self._read(  # type: ignore[no-any-return]
            lambda c: model.endpoints(c, network_id=network_id, container_id=container_id))

    async def ports(self, container_id: str | None = None) -> builtins.list[model.Port]:
        return await self._read(lambda c: model.ports(c, container_id))  # type: ignore[no-any-return]

    async def remove(self, ref: str, *, actor: str) -> None:
        net = await self.inspect(ref)

        def check(tx: sqlite3.Cursor) -> None:
            if net.builtin:
                raise PermissionDenied(f"{net.name} is a pre-defined network and cannot be removed")
            eps = model.endpoints(tx, network_id=net.id)
            if eps:
                raise PermissionDenied(f"error while removing network: network {net.name} has active endpoints "
                                       f"(name:\"{eps[0].name}\" id:\"{eps[0].container_id[:12]}\")")

        async with self._lock:
            await self.journal.append([NetworkRemoved(id=net.id, name=net.name)], namespace=NAMESPACE, actor=actor,
                                      check=check)
            await asyncio.to_thread(links.delete_link, net.bridge)
            await self._apply_rules()

    async def prune(self, *, labels: builtins.list[str] | None = None, until_ns: int | None = None,
                    actor: str) -> builtins.list[str]:
        """Remove user-defined networks without endpoints; returns their names."""
        gone = []
        for net in await self.list():
            if net.builtin or (until_ns is not None and net.created_ns >= until_ns):
                continue
            if labels and not all(_label_match(net.labels, f) for f in labels):
                continue
            try:
                await self.remove(net.id, actor=actor)
            except (PermissionDenied, NotFound):
                continue
            gone.append(net.name)
        return gone

    # ---- sandboxes and endpoints --------------------------------------------------------------

    async def create_sandbox(self, container_id: str, *, actor: str = "daemon") -> str:
        """Make the container's network namespace file (<exec-root>/netns/<id>); returns its path."""
        path = self.netns_dir / container_id
        if netns.is_netns(path):
            return str(path)
        await asyncio.to_thread(netns.create, path)
        await asyncio.to_thread(netns.in_netns, path, _lo_up)
        await self.journal.append([SandboxCreated(container_id=container_id, netns=str(path))],
                                  namespace=NAMESPACE, actor=actor)
        return str(path)

    async def remove_sandbox(self, container_id: str, *, actor: str = "daemon") -> None:
        boxes = await self._read(model.sandboxes)
        path = boxes.get(container_id) or str(self.netns_dir / container_id)
        self.dns.stop(container_id)
        await asyncio.to_thread(netns.remove, path)
        if container_id in boxes:
            await self.journal.append([SandboxRemoved(container_id=container_id)], namespace=NAMESPACE, actor=actor)

    async def attach(self, container_id: str, netns_path: str, networks: builtins.list[EndpointRequest],
                     ports: builtins.list[PortSpec] | None = None, *, name: str = "", actor: str = "daemon"
                     ) -> dict[str, EndpointSettings]:
        """Connect a container's namespace to networks and publish its ports; returns settings by network name.

        `host` and `none` make no endpoint. Ports are DNATed to the container's address on the first
        bridge network. All or nothing: a failure leaves no veth, address, rule or port behind."""
        name = name.lstrip("/")
        async with self._lock:
            return await self._attach(container_id, netns_path, networks, list(ports or []), name, actor)

    async def _attach(self, cid: str, path: str, reqs: builtins.list[EndpointRequest], ports: builtins.list[PortSpec], name: str,
                      actor: str) -> dict[str, EndpointSettings]:
        nets: builtins.list[tuple[model.Network, EndpointRequest]] = []
        for req in reqs:
            net = await self.inspect(req.network)
            if net.kernel:
                nets.append((net, req))
        if ports and not nets:
            ports = []
        for net, req in nets:
            if req.ip and not net.dns:
                raise InvalidArgument("user specified IP address is supported on user defined networks only")
            if req.aliases and not net.dns:
                raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
        if not nets:
            return {}
        # hold host ports first: a taken port fails before anything is made
        held: dict[str, socket.socket] = {}
        bound: builtins.list[tuple[PortSpec, int]] = []
        try:
            for p in ports:
                s = await asyncio.to_thread(reserve, p.proto, p.host_ip, p.host_port)
                port = s.getsockname()[1]
                held[port_key(p.proto, p.host_ip, port)] = s
                bound.append((p, port))
        except BaseException:
            for s in held.values():
                s.close()
            raise
        ifnames = await asyncio.to_thread(_free_ifnames, path, len(nets))
        planned: builtins.list[tuple[model.Network, EndpointAttachRequested]] = []

        def decide(tx: sqlite3.Cursor) -> builtins.list[Event]:
            planned.clear()
            events: builtins.list[Event] = []
            for (net, req), ifname in zip(nets, ifnames, strict=True):
                if model.endpoints(tx, network_id=net.id, container_id=cid):
                    raise AlreadyExists(f"endpoint with name {name} already exists in network {net.name}")
                row = model.find_network(tx, net.id)
                if row is None:
                    raise NotFound(f"network {net.name} not found")
                pool = ipam.Pool(row.subnet, row.gateway, row.ip_range)
                used = model.addresses(tx, net.id)
                ip = ipam.check_static(pool, req.ip, used) if req.ip else ipam.allocate(pool, used, row.last_ip)
                ep_id = secrets.token_hex(32)
                ev = EndpointAttachRequested(endpoint_id=ep_id, network_id=net.id, container_id=cid, name=name,
                                             ip=ip, mac=req.mac or links.mac_for(ip), host_if=self._veth_for(ep_id),
                                             ifname=ifname, netns=path, aliases=list(req.aliases))
                events += [AddressAllocated(network_id=net.id, ip=ip, endpoint_id=ep_id), ev]
                planned.append((row, ev))
            first_net, first_ep = planned[0]
            for p, port in bound:
                key = port_key(p.proto, p.host_ip, port)
                for other in model.ports(tx):
                    if other.proto == p.proto and other.host_port == port and (
                            not other.host_ip or not p.host_ip or other.host_ip == p.host_ip):
                        raise Conflict(f"Bind for {p.host_ip or '0.0.0.0'}:{port} failed: port is already allocated")
                events.append(PortBound(key=key, proto=p.proto, host_ip=p.host_ip, host_port=port, container_id=cid,
                                        container_port=p.container_port, network_id=first_net.id,
                                        container_ip=first_ep.ip))
            return events

        try:
            await self.journal.append(decide, namespace=NAMESPACE, actor=actor)
        except BaseException:
            for s in held.values():
                s.close()
            raise
        self._reserved.update(held)
        made: builtins.list[str] = []
        try:
            for net, ev in planned:
                await asyncio.to_thread(links.ensure_bridge, net.bridge, net.gateway, ipam.Pool(net.subnet, "").prefixlen,
                                        self.mtu)
                made.append(ev.host_if)
                await asyncio.to_thread(links.add_endpoint, bridge=net.bridge, host_if=ev.host_if, netns_path=path,
                                        ifname=ev.ifname, ip=ev.ip, prefixlen=ipam.Pool(net.subnet, "").prefixlen,
                                        gateway=None if net.internal else net.gateway, mac=ev.mac, mtu=self.mtu)
            await self._apply_rules()
            if any(net.dns for net, _ in planned):
                await self.dns.serve(cid, path)
        except BaseException as err:
            for host_if in made:
                await asyncio.to_thread(links.delete_link, host_if)
            await self._settle_failed(cid, [ev for _, ev in planned], [(p.proto, p.host_ip, port) for p, port in bound],
                                      str(err), actor)
            await self._apply_rules()
            raise
        await self.journal.append([EndpointAttached(endpoint_id=ev.endpoint_id, network_id=ev.network_id,
                                                    container_id=cid) for _, ev in planned],
                                  namespace=NAMESPACE, actor=actor)
        await self._refresh_dns()
        return {net.name: _settings(net, ev) for net, ev in planned}

    async def _settle_failed(self, cid: str, eps: builtins.list[EndpointAttachRequested], ports: builtins.list[tuple[str, str, int]],
                             error: str, actor: str) -> None:
        events: builtins.list[Event] = []
        for ev in eps:
            events += [EndpointAttachFailed(endpoint_id=ev.endpoint_id, network_id=ev.network_id, container_id=cid,
                                            error=error[:500]),
                       AddressReleased(network_id=ev.network_id, ip=ev.ip, endpoint_id=ev.endpoint_id)]
        for proto, host_ip, port in ports:
            key = port_key(proto, host_ip, port)
            s = self._reserved.pop(key, None)
            if s is not None:
                s.close()
            events.append(PortUnbound(key=key, proto=proto, host_ip=host_ip, host_port=port, container_id=cid))
        if events:
            await self.journal.append(events, namespace=NAMESPACE, actor=actor, cause="api")

    async def connect(self, network: str, container_id: str, *, aliases: builtins.list[str] | None = None, ip: str = "",
                      name: str = "", actor: str) -> EndpointSettings:
        """Connect a running container (one with a sandbox) to one more network."""
        boxes = await self._read(model.sandboxes)
        path = boxes.get(container_id)
        if path is None:
            raise Conflict(f"container {container_id} is not running")
        if not name:
            eps = await self.endpoints(container_id=container_id)
            name = eps[0].name if eps else container_id[:12]
        net = await self.inspect(network)
        if await self._read(lambda c: model.endpoints(c, network_id=net.id, container_id=container_id)):
            raise AlreadyExists(f"endpoint with name {name} already exists in network {net.name}")
        out = await self.attach(container_id, path, [EndpointRequest(net.id, list(aliases or []), ip)], [],
                                name=name, actor=actor)
        return out[net.name]

    async def disconnect(self, network: str, container_id: str, *, actor: str) -> None:
        net = await self.inspect(network)
        async with self._lock:
            eps = await self._read(lambda c: model.endpoints(c, network_id=net.id, container_id=container_id))
            if not eps:
                raise Conflict(f"container {container_id} is not connected to network {net.name}")
            await self._detach(container_id, eps, actor, ports_too=False)

    async def detach(self, container_id: str, *, actor: str = "daemon") -> None:
        """Undo attach: remove the container's endpoints, addresses and published ports (idempotent)."""
        async with self._lock:
            eps = await self.endpoints(container_id=container_id)
            await self._detach(container_id, eps, actor, ports_too=True)

    async def _detach(self, cid: str, eps: builtins.list[model.Endpoint], actor: str, *, ports_too: bool) -> None:
        ports = await self.ports(cid) if ports_too else []
        if not eps and not ports:
            return
        if eps:
            await self.journal.append([EndpointDetachRequested(endpoint_id=e.id, network_id=e.network_id,
                                                               container_id=cid) for e in eps],
                                      namespace=NAMESPACE, actor=actor)
        for e in eps:
            await asyncio.to_thread(links.delete_link, e.host_if)
        events: builtins.list[Event] = []
        for e in eps:
            events += [EndpointDetached(endpoint_id=e.id, network_id=e.network_id, container_id=cid),
                       AddressReleased(network_id=e.network_id, ip=e.ip, endpoint_id=e.id)]
        for p in ports:
            key = port_key(p.proto, p.host_ip, p.host_port)
            s = self._reserved.pop(key, None)
            if s is not None:
                s.close()
            events.append(PortUnbound(key=key, proto=p.proto, host_ip=p.host_ip, host_port=p.host_port,
                                      container_id=cid))
        await self.journal.append(events, namespace=NAMESPACE, actor=actor)
        await self._apply_rules()
        remaining = await self.endpoints(container_id=cid)
        if not any(n.dns for n in [await self.inspect(e.network_id) for e in remaining]):
            self.dns.stop(cid)
        await self._refresh_dns()

    # ---- kernel state from the projection ------------------------------------------------------

    async def _apply_rules(self) -> None:
        def q(conn: sqlite3.Connection) -> tuple[builtins.list[model.Network], builtins.list[model.Port]]:
            return model.networks(conn), model.ports(conn)

        nets, ports = await self._read(q)
        used = {e.network_id for e in await self.endpoints()}
        bridges = [nft.BridgeRule(n.bridge, n.subnet, n.internal, n.gateway) for n in nets
                   if n.kernel and (not n.builtin or n.id in used)]
        by_net = {n.id: n.bridge for n in nets}
        rules = [nft.PortRule(p.proto, p.host_ip, p.host_port, p.container_ip, p.container_port,
                              by_net.get(p.network_id, "")) for p in ports]
        await asyncio.to_thread(links.enable_forwarding)
        await asyncio.to_thread(nft.apply, self.table, bridges, rules)

    async def _refresh_dns(self) -> None:
        self._dns_names = await self._read(model.dns_names)

    def _dns_lookup(self, container_id: str, name: str) -> builtins.list[str] | None:
        return self._dns_names.get(container_id, {}).get(name.rstrip(".").lower())

    async def close(self) -> None:
        self.dns.close()
        for s in self._reserved.values():
            s.close()
        self._reserved.clear()


def _settings(net: model.Network, ev: EndpointAttachRequested) -> EndpointSettings:
    names = [n for n in [ev.name, *ev.aliases] if n] if net.dns else []
    return EndpointSettings(network_id=net.id, endpoint_id=ev.endpoint_id, ip=ev.ip,
                            prefixlen=ipaddress.IPv4Network(net.subnet).prefixlen,
                            gateway="" if net.internal else net.gateway, mac=ev.mac, aliases=list(ev.aliases),
                            dns_names=names + ([ev.container_id[:12]] if net.dns else []))


def _lo_up() -> None:
    from pyroute2 import IPRoute  # type: ignore[import-untyped]

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname="lo")
        if idx:
            ipr.link("set", index=idx[0], state="up")


def _free_ifnames(path: str, n: int) -> builtins.list[str]:
    first = int(links.free_ifname(path)[3:])
    return [f"eth{first + i}" for i in range(n)]


def _label_match(labels: dict[str, str], flt: str) -> bool:
    neg = flt.startswith("!")
    key, _, value = flt.lstrip("!").partition("=")
    hit = key in labels and (not value or labels[key] == value)
    return not hit if neg else hit
