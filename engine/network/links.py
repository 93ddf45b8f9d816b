"""Bridges and veth pairs through netlink (pyroute2), synchronous: callers run these in a thread.

* ``ensure_bridge`` makes (or repairs) a bridge with its gateway address, MTU and state up; idempotent,
  so recovery calls it for every network the journal knows.
* ``add_endpoint`` makes a veth pair, enslaves the host end to the bridge and moves the peer into the
  container's namespace as ``eth0`` (or ``eth1``…), with Docker's MAC (02:42 + the IPv4 address), the
  address, loopback up and — unless the network is internal — the default route via the gateway.
  A failure part-way removes what it made.
* Interfaces inside a namespace are configured from a thread that joined it (``netns.in_netns``), so
  every netlink socket is opened in the namespace it talks about.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from engine.network import netns

# pyroute2 logs every netlink message at DEBUG: a daemon at --log-level debug would drown in them
logging.getLogger("pyroute2").setLevel(logging.WARNING)

F = TypeVar("F", bound=Callable[..., Any])


def off_loop(fn: F) -> F:
    """pyroute2's synchronous IPRoute runs its own event loop: called from a thread that runs one (a test,
    a careless caller), do the work in a short-lived thread instead of failing."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return fn(*args, **kwargs)
        return netns._in_thread(lambda: fn(*args, **kwargs))

    return wrapper  # type: ignore[return-value]


def mac_for(ip: str) -> str:
    """Docker's MAC for an IPv4 address: 02:42 followed by the four address bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


@off_loop
def link_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return _index(ipr, name) is not None


@off_loop
def list_links(prefix: str) -> list[str]:
    """Names of the host's links that start with `prefix`."""
    with IPRoute() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return [n for n in names if n and n.startswith(prefix)]


@off_loop
def ensure_bridge(name: str, gateway: str | None, prefixlen: int, mtu: int = 0) -> None:
    """Make the bridge if missing, give it the gateway address if missing, bring it up."""
    with IPRoute() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            ipr.link("add", ifname=name, kind="bridge")
            idx = _index(ipr, name)
            assert idx is not None
        if mtu:
            ipr.link("set", index=idx, mtu=mtu)
        if gateway:
            have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx, family=2)}
            if gateway not in have:
                ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")
    _sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")


@off_loop
def bridge_addresses(name: str) -> list[str]:
    """The IPv4 addresses of a link as "a.b.c.d/len" ([] when it does not exist)."""
    with IPRoute() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return []
        return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx, family=2)]


@off_loop
def delete_link(name: str) -> bool:
    """Delete a link by name; False when it did not exist."""
    with IPRoute() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return False
        try:
            ipr.link("del", index=idx)
        except NetlinkError as err:
            if err.code != 19:  # ENODEV: gone meanwhile
                raise
            return False
        return True


@off_loop
def add_endpoint(*, bridge: str, host_if: str, netns_path: str, ifname: str, ip: str, prefixlen: int,
                 gateway: str | None, mac: str, mtu: int = 0) -> None:
    """veth pair host_if <-> ifname, ifname moved into netns_path and configured there."""
    tmp_peer = host_if + "p" if len(host_if) < 15 else host_if[:14] + "p"
    with IPRoute() as ipr:
        br = _index(ipr, bridge)
        if br is None:
            raise FileNotFoundError(f"bridge {bridge} does not exist")
        ipr.link("add", ifname=host_if, kind="veth", peer={"ifname": tmp_peer})
        try:
            host_idx = _index(ipr, host_if)
            peer_idx = _index(ipr, tmp_peer)
            assert host_idx is not None and peer_idx is not None
            if mtu:
                ipr.link("set", index=host_idx, mtu=mtu)
                ipr.link("set", index=peer_idx, mtu=mtu)
            ipr.link("set", index=host_idx, master=br, state="up")
            # hairpin: a container reaching its own published port through a host address is DNATed
            # back out of the port it came in by (as dockerd without the userland proxy)
            _sysctl_path(f"/sys/class/net/{host_if}/brport/hairpin_mode", "1")
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                ipr.link("set", index=peer_idx, net_ns_fd=fd)
            finally:
                os.close(fd)
        except BaseException:
            delete_link(host_if)
            raise

    def inside() -> None:
        with IPRoute() as nipr:
            lo = _index(nipr, "lo")
            if lo is not None:
                nipr.link("set", index=lo, state="up")
            idx = _index(nipr, tmp_peer)
            assert idx is not None
            nipr.link("set", index=idx, ifname=ifname, address=mac)
            nipr.addr("add", index=idx, address=ip, prefixlen=prefixlen)
            nipr.link("set", index=idx, state="up")
            if gateway:
                have_default = any(r.get_attr("RTA_DST") is None and r["dst_len"] == 0
                                   for r in nipr.get_routes(family=2, table=254))
                if not have_default:
                    nipr.route("add", dst="0.0.0.0/0", gateway=gateway)

    try:
        netns.in_netns(netns_path, inside)
    except BaseException:
        delete_link(host_if)
        raise


@off_loop
def free_ifname(netns_path: str) -> str:
    """The first ethN name not used inside the namespace."""

    def names() -> set[str]:
        with IPRoute() as ipr:
            return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}

    used = netns.in_netns(netns_path, names)
    n = 0
    while f"eth{n}" in used:
        n += 1
    return f"eth{n}"


@off_loop
def host_routes() -> list[ipaddress.IPv4Network]:
    """IPv4 networks the host routes directly (to refuse a subnet that would collide with one)."""
    out = []
    with IPRoute() as ipr:
        for r in ipr.get_routes(family=2, table=254):
            dst = r.get_attr("RTA_DST")
            if dst and r["dst_len"]:
                out.append(ipaddress.IPv4Network(f"{dst}/{r['dst_len']}", strict=False))
    return out


def _sysctl(key: str, value: str) -> None:
    _sysctl_path(f"/proc/sys/{key}", value)


def _sysctl_path(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError:
        pass


def enable_forwarding() -> None:
    """IPv4 forwarding on, as dockerd sets it: containers reach each other's published ports through it."""
    _sysctl("net/ipv4/ip_forward", "1")
