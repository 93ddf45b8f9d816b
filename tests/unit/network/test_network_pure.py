"""engine/network's pure parts without root: IPAM, -p parsing, DNS messages, the nft script."""

from __future__ import annotations

import struct

import pytest

from engine.errors import Conflict, InvalidArgument
from engine.network import dns, ipam, nft
from engine.network.links import mac_for
from engine.network.ports import PortSpec, from_port_bindings, parse_publish


def test_pool_checks() -> None:
    p = ipam.make_pool("10.9.8.7/24")
    assert (p.subnet, p.gateway, p.ip_range) == ("10.9.8.0/24", "10.9.8.1", "")
    assert ipam.make_pool("10.9.8.0/24", "10.9.8.254", "10.9.8.128/25").ip_range == "10.9.8.128/25"
    for bad in ("10.300.0.0/24", "nope", "10.0.0.0/33"):
        with pytest.raises(InvalidArgument, match="invalid CIDR"):
            ipam.make_pool(bad)
    with pytest.raises(InvalidArgument, match="gateway"):
        ipam.make_pool("10.9.8.0/24", "10.9.9.1")
    with pytest.raises(InvalidArgument, match="range"):
        ipam.make_pool("10.9.8.0/24", "", "10.9.9.0/25")
    with pytest.raises(InvalidArgument, match="IPv4"):
        ipam.make_pool("fd00::/64")


def test_allocate_is_sequential_wraps_and_skips() -> None:
    p = ipam.make_pool("10.1.1.0/29")  # hosts .1-.6, gateway .1
    assert ipam.allocate(p, set()) == "10.1.1.2"
    assert ipam.allocate(p, {"10.1.1.2"}, "10.1.1.2") == "10.1.1.3"
    assert ipam.allocate(p, set(), "10.1.1.6") == "10.1.1.2"  # wraps, never .7 (broadcast) or .1
    assert ipam.allocate(p, set(), "10.1.1.3") == "10.1.1.4"  # .2 freed but not reused at once
    with pytest.raises(Conflict, match="no available IPv4 addresses"):
        ipam.allocate(p, {f"10.1.1.{i}" for i in range(2, 7)})
    r = ipam.make_pool("10.1.0.0/16", "", "10.1.5.0/30")
    assert {ipam.allocate(r, set(), f"10.1.5.{i}") for i in range(4)} == {"10.1.5.0", "10.1.5.1", "10.1.5.2",
                                                                             "10.1.5.3"}
    assert ipam.check_static(p, "10.1.1.5", set()) == "10.1.1.5"
    with pytest.raises(Conflict, match="Address already in use"):
        ipam.check_static(p, "10.1.1.1", set())
    with pytest.raises(InvalidArgument):
        ipam.check_static(p, "10.1.2.5", set())


def test_subnet_choice_skips_taken_and_default_bridge() -> None:
    assert ipam.pick_subnet(ipam.default_pools(), ["172.18.0.0/16", "172.19.5.0/24"]) == "172.20.0.0/16"
    assert ipam.pick_subnet(ipam.default_pools([{"base": "10.5.0.0/16", "size": 24}]), ["10.5.0.0/23"]) == \
        "10.5.2.0/24"
    assert ipam.default_bridge_pool("", "engine", []).subnet == "172.31.0.0/16"
    assert ipam.default_bridge_pool("192.168.7.1/24", "x", []).gateway == "192.168.7.1"
    other = ipam.default_bridge_pool("", "t1", ["172.31.0.0/16"])
    assert other.net.subnet_of(ipam.IPv4Net("10.224.0.0/12"))
    assert ipam.default_bridge_pool("", "t1", ["172.31.0.0/16", other.subnet]).subnet != other.subnet


def test_publish_syntax() -> None:
    assert parse_publish("8080:80") == [PortSpec(80, "tcp", "", 8080)]
    assert parse_publish("127.0.0.1::53/udp") == [PortSpec(53, "udp", "127.0.0.1", 0)]
    assert parse_publish("80") == [PortSpec(80, "tcp", "", 0)]
    assert parse_publish("8000-8001:80-81") == [PortSpec(80, "tcp", "", 8000), PortSpec(81, "tcp", "", 8001)]
    with pytest.raises(InvalidArgument):
        parse_publish("8000-8002:80-81")
    with pytest.raises(InvalidArgument):
        parse_publish("70000:80")
    assert from_port_bindings({"80/tcp": [{"HostIp": "", "HostPort": "8080"}], "53/udp": None}) == [
        PortSpec(80, "tcp", "", 8080), PortSpec(53, "udp", "", 0)]


def test_mac_is_dockers() -> None:
    assert mac_for("172.17.0.2") == "02:42:ac:11:00:02"


def _query(name: str, qtype: int = 1) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)


def test_dns_answer() -> None:
    qid, _flags, name, qtype, end = dns.parse_question(_query("Web.Example"))
    assert (qid, name, qtype) == (0x1234, "web.example", 1)
    out = dns.answer(_query("web"), ["10.0.0.5", "10.0.0.6"])
    _id, flags, qd, an = struct.unpack("!HHHH", out[:8])
    assert flags & 0x8000 and flags & 0xF == 0 and (qd, an) == (1, 2)
    assert out.endswith(bytes([10, 0, 0, 6]))
    aaaa = dns.answer(_query("web", 28), ["10.0.0.5"])
    assert struct.unpack("!H", aaaa[6:8])[0] == 0  # known name, no AAAA: empty NOERROR
    assert struct.unpack("!H", dns.answer(_query("x"), [], rcode=3)[2:4])[0] & 0xF == 3
    with pytest.raises(ValueError):
        dns.parse_question(b"\0\1")
    assert dns.resolv_conf(["a.b"], ["ndots:2"]) == "nameserver 127.0.0.11\nsearch a.b\noptions ndots:0 ndots:2\n"


def test_nft_script_is_one_transaction_of_our_table_only() -> None:
    s = nft.render("tabc", [nft.BridgeRule("tabc-1", "10.1.0.0/24"), nft.BridgeRule("tabc-2", "10.2.0.0/24", True)],
                   [nft.PortRule("tcp", "", 8080, "10.1.0.2", 80, "tabc-1"),
                    nft.PortRule("udp", "127.0.0.1", 53, "10.1.0.2", 53, "tabc-1")])
    heads = [line.split() for line in s.splitlines() if line.startswith(("table", "delete"))]
    assert {(h[-2] if h[-1] == "{" else h[-1]) for h in heads} == {"tabc"}  # no other table is named
    assert all("inet" in h for h in heads)
    assert s.splitlines()[:2] == ["table inet tabc", "delete table inet tabc"]
    assert "tcp dport 8080 dnat ip to 10.1.0.2:80" in s
    assert "ip daddr 127.0.0.1 udp dport 53 dnat ip to 10.1.0.2:53" in s
    assert 'ip saddr 10.1.0.0/24 oifname != "tabc-1" masquerade' in s
    assert 'ip saddr 10.2.0.0/24 oifname != "tabc-2" masquerade' not in s  # internal: no way out
    assert 'iifname "tabc-2" oifname != "tabc-2" drop' in s


async def test_dns_handle_known_unknown_and_single_labels() -> None:
    server = dns.EmbeddedDNS(lambda cid, name: ["10.0.0.9"] if (cid, name) == ("c", "web") else None,
                             forwarders=[])
    out = await server.handle("c", _query("web"))
    assert out is not None and out.endswith(bytes([10, 0, 0, 9]))
    out = await server.handle("other", _query("web"))  # not a peer of this container
    assert out is not None and struct.unpack("!H", out[2:4])[0] & 0xF == 3
    out = await server.handle("c", _query("example.test"))  # no forwarder: SERVFAIL, nothing sent
    assert out is not None and struct.unpack("!H", out[2:4])[0] & 0xF == 2
    assert await server.handle("c", b"garbage") is None
