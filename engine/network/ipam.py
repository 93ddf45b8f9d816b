"""IPv4 address management: parse and check a network's pool, pick subnets and addresses. Pure functions.

* A network has a subnet, a gateway (default: the subnet's first host) and an optional ip-range (a
  sub-pool addresses are handed out from, as ``--ip-range``).
* Addresses are handed out as Docker's default IPAM does: sequentially after the last one handed out,
  wrapping around, skipping those in use — so an address just released is not reused at once. The
  caller keeps the cursor and the set in use in the journal's projection and decides inside the write
  transaction, so no address is ever held twice, also across restarts.
* Subnets for networks created without one come from the default pools (172.18.0.0/16 … 172.30.0.0/16
  then 192.168.x.0/20 blocks), skipping any that overlaps a network of ours or a route of the host.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from engine.errors import Conflict, InvalidArgument

IPv4Net = ipaddress.IPv4Network
IPv4Addr = ipaddress.IPv4Address

DEFAULT_BRIDGE_CIDR = "172.31.0.1/16"  # the default bridge: unlikely to collide with Docker's 172.17/16


@dataclass(frozen=True)
class Pool:
    subnet: str
    gateway: str
    ip_range: str = ""

    @property
    def net(self) -> IPv4Net:
        return IPv4Net(self.subnet)

    @property
    def prefixlen(self) -> int:
        return self.net.prefixlen


def parse_subnet(text: str) -> IPv4Net:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as err:
        raise InvalidArgument(f"invalid CIDR address: {text}") from err
    if net.version != 4:
        raise InvalidArgument(f"only IPv4 subnets are supported: {text}")
    if str(net) != text and ipaddress.ip_interface(text).network != net:
        raise InvalidArgument(f"invalid CIDR address: {text}")
    if net.prefixlen > 30:
        raise InvalidArgument(f"subnet {text} is too small: at least /30 is needed")
    return net  # type: ignore[return-value]


def parse_ip(text: str, what: str = "IP address") -> IPv4Addr:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError as err:
        raise InvalidArgument(f"invalid {what}: {text}") from err
    if ip.version != 4:
        raise InvalidArgument(f"only IPv4 is supported: {text}")
    return ip  # type: ignore[return-value]


def make_pool(subnet: str, gateway: str = "", ip_range: str = "") -> Pool:
    """Check a user's --subnet/--gateway/--ip-range and return the pool (network address normalised)."""
    net = parse_subnet(subnet)  # a host address with the prefix (10.1.2.3/24) is normalised, as Docker
    gw = parse_ip(gateway, "gateway") if gateway else net.network_address + 1
    if gw not in net or gw in (net.network_address, net.broadcast_address):
        raise InvalidArgument(f"no matching subnet for gateway {gw}")
    rng = ""
    if ip_range:
        r = parse_subnet(ip_range)
        if not r.subnet_of(net):
            raise InvalidArgument(f"no matching subnet for range {ip_range}")
        rng = str(r)
    return Pool(str(net), str(gw), rng)


def overlaps(a: str, b: str) -> bool:
    return IPv4Net(a).overlaps(IPv4Net(b))


def default_pools(configured: list[object] | None = None) -> Iterator[IPv4Net]:
    """Candidate subnets in order: daemon.json's default-address-pools, else Docker-like defaults."""
    if configured:
        for item in configured:
            base = item.get("base") if isinstance(item, dict) else None  # type: ignore[union-attr]
            size = int(item.get("size", 24)) if isinstance(item, dict) else 24  # type: ignore[union-attr]
            if base:
                yield from IPv4Net(base).subnets(new_prefix=size)
        return
    for second in range(18, 31):
        yield IPv4Net(f"172.{second}.0.0/16")
    yield from IPv4Net("192.168.0.0/16").subnets(new_prefix=20)


def default_bridge_pool(bip: str, prefix: str, taken: list[str]) -> Pool:
    """The default bridge's pool: --bip as given (gateway/prefix), else 172.31.0.0/16 when nothing routes
    there, else (a second daemon, a test daemon) a /24 of 10.224.0.0/12 chosen from the network prefix's
    hash and then scanned, skipping whatever is taken."""
    if bip:
        iface = ipaddress.IPv4Interface(bip)
        if iface.ip == iface.network.network_address:
            return make_pool(str(iface.network))
        return make_pool(str(iface.network), str(iface.ip))
    used = [IPv4Net(t) for t in taken]
    first = IPv4Net(DEFAULT_BRIDGE_CIDR, strict=False)
    if not any(first.overlaps(u) for u in used):
        return make_pool(str(first))
    space = list(IPv4Net("10.224.0.0/12").subnets(new_prefix=24))
    start = zlib.crc32(prefix.encode()) % len(space)
    for i in range(len(space)):
        cand = space[(start + i * 7919) % len(space)]
        if not any(cand.overlaps(u) for u in used):
            return make_pool(str(cand))
    raise Conflict("could not find a free subnet for the default bridge: set --bip")


def pick_subnet(candidates: Iterable[IPv4Net], taken: Iterable[str]) -> str:
    used = [IPv4Net(t) for t in taken]
    for cand in candidates:
        if not any(cand.overlaps(u) for u in used):
            return str(cand)
    raise Conflict("could not find an available, non-overlapping IPv4 address pool among the defaults to "
                   "assign to the network")


def allocate(pool: Pool, in_use: set[str], last: str = "") -> str:
    """The next free address of the pool after `last` (wrapping), never the gateway or in_use."""
    net = pool.net
    rng = IPv4Net(pool.ip_range) if pool.ip_range else net
    first = int(rng.network_address) + (1 if rng.network_address == net.network_address else 0)
    end = int(rng.broadcast_address) - (1 if rng.broadcast_address == net.broadcast_address else 0)
    if end < first:
        raise Conflict(f"no available IPv4 addresses on this network's address pools: {pool.subnet}")
    start = int(IPv4Addr(last)) + 1 if last else first
    if start < first or start > end:
        start = first
    size = end - first + 1
    for i in range(size):
        cand = first + (start - first + i) % size
        text = str(IPv4Addr(cand))
        if text != pool.gateway and text not in in_use:
            return text
    raise Conflict(f"no available IPv4 addresses on this network's address pools: {pool.subnet}")


def check_static(pool: Pool, ip: str, in_use: set[str]) -> str:
    """Check a static --ip against the pool: inside the subnet, not the gateway, not taken."""
    addr = parse_ip(ip)
    net = pool.net
    if addr not in net or addr in (net.network_address, net.broadcast_address):
        raise InvalidArgument(f"no available IPv4 addresses on this network's address pools: {ip} is not "
                              f"in subnet {pool.subnet}")
    text = str(addr)
    if text == pool.gateway or text in in_use:
        raise Conflict(f"Address already in use: {text}")
    return text
