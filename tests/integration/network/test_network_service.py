"""NetworkService with real namespaces, bridges, veths and nftables (root).

Each "container" is a namespace file made by the service (create_sandbox) with busybox processes run in
it through nsenter; the service's embedded DNS answers at 127.0.0.11 inside. Nothing leaves the machine:
the only addresses used are in 10.200.0.0/13 subnets on bridges the test made, and loopback.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time

import pytest

from engine.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, PermissionDenied
from engine.network import links, netns, nft
from engine.network.ports import PortSpec
from engine.services.networks.service import EndpointRequest

BB = "/bin/busybox"


async def _container(env, cid: str, network: str, *, aliases=(), ip="", ports=(), name=None):  # type: ignore[no-untyped-def]
    path = await env.svc.create_sandbox(cid)
    out = await env.svc.attach(cid, path, [EndpointRequest(network, list(aliases), ip)], list(ports),
                               name=name or cid)
    return path, out


def _httpd(env, ns: str, tmp, port: int = 80, body: str = "hello"):  # type: ignore[no-untyped-def]
    root = tmp / f"www{port}-{abs(hash(ns)) % 10000}"
    root.mkdir(exist_ok=True)
    (root / "index.html").write_text(body)
    p = env.spawn(ns, BB, "httpd", "-f", "-p", str(port), "-h", str(root))
    return p


async def _wait_http(env, ns: str | None, url: str, timeout: float = 5.0) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        r = await env.arun(ns, BB, "wget", "-q", "-O", "-", url, timeout=3)
        if r.returncode == 0:
            return r.stdout
        last = r
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} not reachable: {last}")


async def _resolve(env, ns: str, name: str) -> str:  # type: ignore[no-untyped-def]
    """The address the embedded DNS gives for name inside ns (busybox-static's own resolver segfaults on
    glibc NSS, so wget gets the address from nslookup, which asks 127.0.0.11 directly)."""
    r = await env.arun(ns, BB, "nslookup", name, "127.0.0.11")
    assert r.returncode == 0, r.stdout + r.stderr
    answers = r.stdout.split("Name:", 1)[-1]
    return [w for w in answers.split() if w.count(".") == 3 and w.replace(".", "").isdigit()][0]


async def _unreachable(env, ns: str, url: str) -> bool:  # type: ignore[no-untyped-def]
    r = await env.arun(ns, BB, "wget", "-q", "-O", "-", url, timeout=1.5)  # -T crashes busybox-static
    return r.returncode != 0


async def test_same_network_by_name_and_alias_other_network_not(net, tmp_path):  # type: ignore[no-untyped-def]
    svc = net.svc
    a = await svc.create("front", subnet=net.subnets[0], actor="test")
    b = await svc.create("back", subnet=net.subnets[1], actor="test")
    assert a.bridge.startswith(net.prefix) and links.link_exists(a.bridge)
    ns1, s1 = await _container(net, "c1" * 32, "front", aliases=["web"], name="/one")
    ns2, s2 = await _container(net, "c2" * 32, "front", name="two")
    ns3, s3 = await _container(net, "c3" * 32, "back", name="three")
    ip1 = s1["front"].ip
    assert s1["front"].mac == links.mac_for(ip1) and s1["front"].gateway == a.gateway
    _httpd(net, ns1, tmp_path)
    _httpd(net, ns3, tmp_path)
    # by name and alias through the embedded DNS
    r = await net.arun(ns2, BB, "nslookup", "one", "127.0.0.11")
    assert r.returncode == 0 and ip1 in r.stdout, r.stdout + r.stderr
    r = await net.arun(ns2, BB, "nslookup", "web", "127.0.0.11")
    assert ip1 in r.stdout, r.stdout
    assert await _wait_http(net, ns2, f"http://{await _resolve(net, ns2, 'one')}/") == "hello"
    assert await _wait_http(net, ns2, f"http://{await _resolve(net, ns2, 'web')}/") == "hello"
    # a container on another network: no name, no packets
    r = await net.arun(ns3, BB, "nslookup", "one", "127.0.0.11")
    assert ip1 not in r.stdout
    assert await _unreachable(net, ns3, f"http://{ip1}/")
    assert await _unreachable(net, ns1, f"http://{s3['back'].ip}/")
    # inspect: endpoints shown, in use -> refused
    eps = await svc.endpoints(network_id=a.id)
    assert {e.name for e in eps} == {"one", "two"}
    with pytest.raises(PermissionDenied, match="has active endpoints"):
        await svc.remove("front", actor="test")
    # detach leaves no veth, address or rule
    veths = [e.host_if for e in eps]
    for cid in ("c1" * 32, "c2" * 32, "c3" * 32):
        await svc.detach(cid)
        await svc.remove_sandbox(cid)
    assert not any(links.link_exists(v) for v in veths)
    assert await svc.endpoints() == []
    await svc.remove("front", actor="test")
    await svc.remove("back", actor="test")
    assert not links.link_exists(a.bridge) and not links.link_exists(b.bridge)
    assert not any((net.exec_root / "netns").iterdir())


async def test_published_port_from_localhost_and_from_another_netns(net, tmp_path):  # type: ignore[no-untyped-def]
    svc = net.svc
    await svc.create("pub", subnet=net.subnets[0], actor="test")
    other = await svc.create("other", subnet=net.subnets[1], actor="test")
    ns1, s1 = await _container(net, "d1" * 32, "pub", ports=[PortSpec(80, "tcp", "", 0)])
    ns2, _ = await _container(net, "d2" * 32, "other")
    _httpd(net, ns1, tmp_path, body="published")
    (port,) = [p.host_port for p in await svc.ports("d1" * 32)]
    assert port > 0
    assert await _wait_http(net, None, f"http://127.0.0.1:{port}/") == "published"
    # from a container on another network, through the host's address on that network (its gateway)
    assert await _wait_http(net, ns2, f"http://{other.gateway}:{port}/") == "published"
    # hairpin: the container reaches its own published port through a host address
    assert await _wait_http(net, ns1, f"http://{other.gateway}:{port}/") == "published"
    # the port is held: a second binding of it fails naming the port, and leaves nothing
    before = links.list_links(net.prefix)
    with pytest.raises(Conflict, match=f"0.0.0.0:{port} failed: port is already allocated"):
        await _container(net, "d3" * 32, "pub", ports=[PortSpec(80, "tcp", "", port)])
    assert links.list_links(net.prefix) == before
    assert await svc.endpoints(container_id="d3" * 32) == []
    await svc.remove_sandbox("d3" * 32)
    with socket.socket() as s, pytest.raises(OSError):
        s.bind(("0.0.0.0", port))
    await svc.detach("d1" * 32)
    assert await svc.ports() == []
    with socket.socket() as s:
        s.bind(("0.0.0.0", port))  # released


async def test_internal_network_has_no_way_out(net, tmp_path):  # type: ignore[no-untyped-def]
    svc = net.svc
    inside = await svc.create("sealed", subnet=net.subnets[0], internal=True, actor="test")
    outside = await svc.create("open", subnet=net.subnets[1], actor="test")
    ns1, s1 = await _container(net, "e1" * 32, "sealed", name="in1")
    ns2, s2 = await _container(net, "e2" * 32, "sealed", name="in2")
    ns3, s3 = await _container(net, "e3" * 32, "open")
    _httpd(net, ns1, tmp_path, body="inside")
    _httpd(net, ns3, tmp_path, body="outside")
    assert s1["sealed"].gateway == ""
    assert await _wait_http(net, ns2, f"http://{await _resolve(net, ns2, 'in1')}/") == "inside"  # within the network: yes
    r = await net.arun(ns1, BB, "ip", "route")
    assert "default" not in r.stdout
    # even with a route forced in, nothing crosses the bridge
    assert (await net.arun(ns1, BB, "ip", "route", "add", "default", "via", inside.gateway)).returncode == 0
    assert await _unreachable(net, ns1, f"http://{s3['open'].ip}/")
    assert await _unreachable(net, ns1, f"http://{outside.gateway}:1/")
    assert await _unreachable(net, ns3, f"http://{s1['sealed'].ip}/")


async def test_bad_input_changes_nothing(net):  # type: ignore[no-untyped-def]
    svc = net.svc
    await svc.create("first", subnet=net.subnets[0], actor="test")
    async def state():  # type: ignore[no-untyped-def]
        nets = [(n.name, n.subnet, n.bridge) for n in await svc.list()]
        return nets, sorted(links.list_links(net.prefix)), await svc.endpoints(), await svc.ports()

    before = await state()
    with pytest.raises(PermissionDenied, match="overlaps"):
        await svc.create("second", subnet=net.subnets[0].replace(".0/24", ".128/25"), actor="test")
    with pytest.raises(InvalidArgument, match="invalid CIDR"):
        await svc.create("third", subnet="10.300.0.0/24", actor="test")
    with pytest.raises(InvalidArgument, match="gateway"):
        await svc.create("fourth", subnet=net.subnets[1], gateway="10.9.9.9", actor="test")
    with pytest.raises(AlreadyExists, match="network with name first already exists"):
        await svc.create("first", subnet=net.subnets[1], actor="test")
    with pytest.raises(PermissionDenied, match="pre-defined"):
        await svc.remove("bridge", actor="test")
    path = await svc.create_sandbox("f1" * 32)
    with pytest.raises(NotFound, match="network nowhere not found"):
        await svc.attach("f1" * 32, path, [EndpointRequest("nowhere")])
    await svc.attach("f1" * 32, path, [EndpointRequest("first", ip=net.subnets[0].replace(".0/24", ".50"))])
    path2 = await svc.create_sandbox("f2" * 32)
    with pytest.raises(Conflict, match="Address already in use"):
        await svc.attach("f2" * 32, path2, [EndpointRequest("first", ip=net.subnets[0].replace(".0/24", ".50"))])
    with pytest.raises(AlreadyExists, match="already exists in network first"):
        await svc.connect("first", "f1" * 32, actor="test")
    await svc.detach("f1" * 32)
    assert await state() == before


async def test_addresses_not_reused_at_once_and_across_restart(netenv):  # type: ignore[no-untyped-def]
    svc = await netenv.open()
    await svc.create("seq", subnet=netenv.subnets[0], actor="test")
    p = await svc.create_sandbox("g1" * 32)
    first = (await svc.attach("g1" * 32, p, [EndpointRequest("seq")]))["seq"].ip
    await svc.detach("g1" * 32)
    await netenv.close()
    svc = await netenv.open()
    second = (await svc.attach("g1" * 32, p, [EndpointRequest("seq")]))["seq"].ip
    assert second != first
    await netenv.close()


async def test_recovery_keeps_connectivity_and_removes_unknown(netenv, tmp_path):  # type: ignore[no-untyped-def]
    svc = await netenv.open()
    await svc.create("keep", subnet=netenv.subnets[0], actor="test")
    ns1, s1 = await _container(netenv, "h1" * 32, "keep", name="srv", ports=[PortSpec(80)])
    ns2, _ = await _container(netenv, "h2" * 32, "keep", name="cli")
    _httpd(netenv, ns1, tmp_path, body="kept")
    (port,) = [p.host_port for p in await svc.ports()]
    assert await _wait_http(netenv, ns2, f"http://{await _resolve(netenv, ns2, 'srv')}/") == "kept"
    # a daemon "crash": the service goes away without tearing anything down
    svc.dns.close()
    for s in svc._reserved.values():
        s.close()
    await netenv.journal.close()
    netenv.svc = netenv.journal = None
    # traffic keeps flowing while the daemon is down (kernel path)
    assert await _wait_http(netenv, None, f"http://127.0.0.1:{port}/") == "kept"
    # things no row knows: a veth and a namespace file with our prefix, a foreign rule table
    subprocess.run(["ip", "link", "add", f"{netenv.prefix}vstray", "type", "veth", "peer", "name",
                    f"{netenv.prefix}vstrayp"], check=True)
    stray_ns = netns.create(netenv.exec_root / "netns" / "stray")
    foreign = "x" + netenv.prefix
    subprocess.run(["nft", "add", "table", "inet", foreign], check=True)
    svc = await netenv.open()
    assert not links.link_exists(f"{netenv.prefix}vstray")
    assert not netns.is_netns(stray_ns)
    orphans = [e.event.name for e in await netenv.journal.read(where="type = 'network.orphan_removed'")]
    assert any(o.startswith(f"{netenv.prefix}vstray") for o in orphans) and stray_ns in orphans
    assert nft.table_exists(foreign)  # another table is never touched
    assert await _wait_http(netenv, ns2, f"http://{await _resolve(netenv, ns2, 'srv')}/") == "kept"  # DNS served again
    assert await _wait_http(netenv, None, f"http://127.0.0.1:{port}/") == "kept"
    assert nft.table_exists(netenv.prefix)
    nft.delete_table(foreign)
    await netenv.close()


async def test_dns_forwards_other_names_to_the_configured_resolver(netenv):  # type: ignore[no-untyped-def]
    # a test resolver on loopback that answers every A question with 10.1.2.3
    from engine.network.dns import answer

    class Fake(asyncio.DatagramProtocol):
        def connection_made(self, t):  # type: ignore[no-untyped-def]
            self.t = t

        def datagram_received(self, data, addr):  # type: ignore[no-untyped-def]
            self.t.sendto(answer(data, ["10.1.2.3"]), addr)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Fake, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        svc = await netenv.open(forwarders=[f"127.0.0.1#{port}"])
        await svc.create("fwd", subnet=netenv.subnets[0], actor="test")
        ns, _ = await _container(netenv, "i1" * 32, "fwd", name="me")
        r = await netenv.arun(ns, BB, "nslookup", "example.test", "127.0.0.11")
        assert "10.1.2.3" in r.stdout, r.stdout + r.stderr
        r = await netenv.arun(ns, BB, "nslookup", "me", "127.0.0.11")
        assert "10.1.2.3" not in r.stdout and "me" in r.stdout
        await netenv.close()
    finally:
        transport.close()


async def test_default_bridge_has_no_name_resolution(net, tmp_path):  # type: ignore[no-untyped-def]
    ns1, s1 = await _container(net, "j1" * 32, "bridge", name="plain")
    ns2, _ = await _container(net, "j2" * 32, "bridge", name="plain2")
    assert links.link_exists(net.svc.bridge_name)
    _httpd(net, ns1, tmp_path, body="b")
    assert await _wait_http(net, ns2, f"http://{s1['bridge'].ip}/") == "b"
    r = await net.arun(ns2, BB, "nslookup", "plain", "127.0.0.11", timeout=15)
    assert r.returncode != 0
    with pytest.raises(InvalidArgument, match="user defined networks"):
        p = await net.svc.create_sandbox("j3" * 32)
        await net.svc.attach("j3" * 32, p, [EndpointRequest("bridge", aliases=["x"])])


async def test_recovery_settles_an_attach_cut_short(netenv):  # type: ignore[no-untyped-def]
    """A daemon killed between endpoint.attach_requested and its outcome: the next start removes the
    veth it had made, releases the address and the port, and journals endpoint.attach_failed."""
    from engine.services.networks.events import AddressAllocated, EndpointAttachRequested, PortBound, port_key

    svc = await netenv.open()
    net = await svc.create("cut", subnet=netenv.subnets[0], actor="test")
    path = await svc.create_sandbox("k1" * 32)
    ip = netenv.subnets[0].replace(".0/24", ".9")
    host_if = f"{netenv.prefix}vcut"
    await netenv.journal.append([
        AddressAllocated(network_id=net.id, ip=ip, endpoint_id="e" * 64),
        EndpointAttachRequested(endpoint_id="e" * 64, network_id=net.id, container_id="k1" * 32, name="cut",
                                ip=ip, mac=links.mac_for(ip), host_if=host_if, ifname="eth0", netns=path),
        PortBound(key=port_key("tcp", "", 45678), proto="tcp", host_ip="", host_port=45678,
                  container_id="k1" * 32, container_port=80, network_id=net.id, container_ip=ip),
    ], namespace="moby", actor="test")
    subprocess.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", host_if + "p"], check=True)
    await netenv.close()
    svc = await netenv.open()
    assert not links.link_exists(host_if)
    assert await svc.endpoints() == [] and await svc.ports() == []
    failed = await netenv.journal.read(where="type = 'endpoint.attach_failed'")
    assert [e.event.endpoint_id for e in failed] == ["e" * 64]
    # the address is free again: a static request for it succeeds
    out = await svc.attach("k1" * 32, path, [EndpointRequest("cut", ip=ip)])
    assert out["cut"].ip == ip
    await netenv.close()


async def test_default_bridge_keeps_an_existing_bridges_address(netenv):  # type: ignore[no-untyped-def]
    """Without --bip an existing default bridge keeps its address (as dockerd with docker0): a second
    daemon root on the same prefix must not stack another address onto it."""
    name = f"{netenv.prefix}0"
    gw = netenv.subnets[3].replace(".0/24", ".1")
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", f"{gw}/24", "dev", name], check=True)
    svc = await netenv.open(bridge_cidr="")
    bridge = await svc.inspect("bridge")
    assert (bridge.subnet, bridge.gateway) == (netenv.subnets[3], gw)
    assert links.bridge_addresses(name) == [f"{gw}/24"]
    await netenv.close()
