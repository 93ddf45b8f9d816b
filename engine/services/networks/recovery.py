"""Recovery of the network world at daemon start, from the journal's projection.

1. Docker's predefined networks exist (records).
2. Open brackets are settled: an ``attach_requested`` without outcome is rolled back (veth removed,
   address and ports released, ``endpoint.attach_failed``); a ``detach_requested`` is finished.
3. Attached endpoints whose namespace file or veth vanished (the container is gone) are detached.
4. Bridges of every network in use (and every user-defined one) are made or repaired; the nft table is
   rewritten whole; host ports are held again; embedded DNS serves every sandbox on a user network.
5. What no row knows is removed and journaled (``network.orphan_removed``): links with our prefix
   (bridges, veths), namespace files under <exec-root>/netns.

Running containers keep their connectivity: nothing that a row knows is torn down and re-made, the
bridge and veths stay, and the nft table is replaced atomically with the same rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from engine.events.types import Event
from engine.network import ipam, links, netns
from engine.network.ports import reserve
from engine.services.networks import model
from engine.services.networks.events import (
    AddressReleased,
    EndpointAttachFailed,
    EndpointDetached,
    OrphanRemoved,
    PortUnbound,
    SandboxRemoved,
    port_key,
)
from engine.services.networks.service import NAMESPACE, NetworkService


async def recover(svc: NetworkService) -> dict[str, int]:
    """Make the world match the journal; returns counts for logs and tests."""
    stats = {"rolled_back": 0, "finished": 0, "lost": 0, "orphans": 0}
    await svc.ensure_builtin()
    async with svc._lock:
        eps = await svc.endpoints()
        boxes = await svc._read(model.sandboxes)
        events: list[Event] = []
        gone: dict[str, bool] = {}
        for e in eps:
            alive = (e.state == "attached" and netns.is_netns(e.netns)
                     and await asyncio.to_thread(links.link_exists, e.host_if))
            if alive:
                continue
            await asyncio.to_thread(links.delete_link, e.host_if)
            if e.state == "attaching":
                stats["rolled_back"] += 1
                events.append(EndpointAttachFailed(endpoint_id=e.id, network_id=e.network_id,
                                                   container_id=e.container_id, error="daemon stopped mid-attach"))
            else:
                stats["finished" if e.state == "detaching" else "lost"] += 1
                events.append(EndpointDetached(endpoint_id=e.id, network_id=e.network_id, container_id=e.container_id))
            events.append(AddressReleased(network_id=e.network_id, ip=e.ip, endpoint_id=e.id))
            gone[e.container_id] = True
        keep = {e.container_id for e in eps if e.id not in {getattr(x, "endpoint_id", "") for x in events}}
        for p in await svc.ports():
            if p.container_id in gone and p.container_id not in keep:
                events.append(PortUnbound(key=port_key(p.proto, p.host_ip, p.host_port), proto=p.proto,
                                          host_ip=p.host_ip, host_port=p.host_port, container_id=p.container_id))
        for cid, path in boxes.items():
            if not netns.is_netns(path):
                events.append(SandboxRemoved(container_id=cid))
        if events:
            await svc.journal.append(events, namespace=NAMESPACE, actor="daemon", cause="recover")

        # the world: bridges, rules, ports, DNS
        nets = await svc.list()
        eps = await svc.endpoints()
        used = {e.network_id for e in eps}
        known_links = {e.host_if for e in eps}
        for n in nets:
            if n.kernel and (not n.builtin or n.id in used):
                await asyncio.to_thread(links.ensure_bridge, n.bridge, n.gateway, ipam.Pool(n.subnet, "").prefixlen,
                                        svc.mtu)
                known_links.add(n.bridge)
        orphans: list[Event] = []
        for name in await asyncio.to_thread(links.list_links, svc.prefix):
            if (name not in known_links and not _is_default_bridge(svc, name, nets)
                    and await asyncio.to_thread(links.delete_link, name)):
                orphans.append(OrphanRemoved(kind="link", name=name))
        boxes = await svc._read(model.sandboxes)
        known_paths = set(boxes.values())
        if svc.netns_dir.is_dir():
            for entry in os.listdir(svc.netns_dir):
                path = str(svc.netns_dir / entry)
                if path not in known_paths:
                    await asyncio.to_thread(netns.remove, path)
                    orphans.append(OrphanRemoved(kind="netns", name=path))
        if orphans:
            stats["orphans"] = len(orphans)
            await svc.journal.append(orphans, namespace=NAMESPACE, actor="daemon", cause="recover")
        await svc._apply_rules()
        for p in await svc.ports():
            key = port_key(p.proto, p.host_ip, p.host_port)
            if key not in svc._reserved:
                # someone may have taken it while we were down: the DNAT rule still wins
                with contextlib.suppress(Exception):
                    svc._reserved[key] = await asyncio.to_thread(reserve, p.proto, p.host_ip, p.host_port)
        await svc._refresh_dns()
        nets_by_id = {n.id: n for n in nets}
        for e in eps:
            owner = nets_by_id.get(e.network_id)
            if e.state == "attached" and owner is not None and owner.dns and netns.is_netns(e.netns):
                await svc.dns.serve(e.container_id, e.netns)
    return stats


def _is_default_bridge(svc: NetworkService, name: str, nets: list[model.Network]) -> bool:
    """The default bridge stays when it exists even with no endpoint (dockerd keeps docker0 too)."""
    return name == svc.bridge_name


async def recover_or_log(svc: NetworkService) -> None:
    """Recovery for the daemon's start: a failure (no nft, no netlink) is logged, not fatal — the API
    still answers and container starts on a bridge network report the error."""
    import logging

    try:
        stats = await recover(svc)
        if any(stats.values()):
            logging.getLogger("engine.networks").warning("network recovery: %s", stats)
    except Exception:
        logging.getLogger("engine.networks").exception("network recovery failed")
