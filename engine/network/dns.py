"""Embedded DNS for user-defined networks: one asyncio server in the daemon for every container.

As Docker's: inside each container on a user-defined network, 127.0.0.11:53 answers the names and
aliases of the containers that share a network with it; any other name is forwarded to the host's
resolvers (or the daemon's --dns) and the answer relayed. The default bridge gets no server.

Design: a UDP socket is bound to 127.0.0.11:53 *inside* the container's namespace by a thread that
joined it (``netns.in_netns``); the socket keeps its namespace after the thread leaves, and the daemon's
one event loop serves it (``loop.create_datagram_endpoint(sock=…)``). So there is one process and one
loop for all namespaces, and no NAT rule is needed to reach the resolver. Forwarded queries leave from
the daemon's own namespace. Only what containers need is parsed: the header and the first question;
A answers are built here, everything else about known names is an empty NOERROR, an unknown single
label is NXDOMAIN, other names go to the forwarders (SERVFAIL when none answers within the timeout).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from engine.network import netns

DNS_IP = "127.0.0.11"
QTYPE_A = 1
Lookup = Callable[[str, str], "list[str] | None"]  # (container id, name) -> addresses, None = not ours


def parse_question(msg: bytes) -> tuple[int, int, str, int, int]:
    """(id, flags, qname lower-case without the final dot, qtype, end offset of the question)."""
    if len(msg) < 12:
        raise ValueError("short dns message")
    qid, flags, qd = struct.unpack("!HHH", msg[:6])
    if qd < 1:
        raise ValueError("no question")
    labels = []
    pos = 12
    while True:
        if pos >= len(msg):
            raise ValueError("truncated name")
        n = msg[pos]
        pos += 1
        if n == 0:
            break
        if n & 0xC0:
            raise ValueError("compressed question name")
        labels.append(msg[pos:pos + n].decode("ascii", "replace"))
        pos += n
    if pos + 4 > len(msg):
        raise ValueError("truncated question")
    qtype, _qclass = struct.unpack("!HH", msg[pos:pos + 4])
    return qid, flags, ".".join(labels).lower(), qtype, pos + 4


def answer(query: bytes, addrs: list[str], rcode: int = 0, ttl: int = 600) -> bytes:
    """A response to `query` with A records for addrs (only when the question is type A)."""
    qid, flags, _name, qtype, end = parse_question(query)
    rd = flags & 0x0100
    records = addrs if qtype == QTYPE_A and rcode == 0 else []
    out_flags = 0x8000 | 0x0400 | rd | 0x0080 | (rcode & 0xF)  # QR, AA, RD copied, RA
    head = struct.pack("!HHHHHH", qid, out_flags, 1, len(records), 0, 0)
    body = query[12:end]
    for ip in records:
        body += struct.pack("!HHHIH", 0xC00C, QTYPE_A, 1, ttl, 4) + ipaddress.IPv4Address(ip).packed
    return head + body


class _Forwarder(asyncio.DatagramProtocol):
    def __init__(self, fut: asyncio.Future[bytes]) -> None:
        self.fut = fut

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.fut.done():
            self.fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)


class _Server(asyncio.DatagramProtocol):
    def __init__(self, dns: EmbeddedDNS, container_id: str) -> None:
        self.dns = dns
        self.container_id = container_id
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.ensure_future(self.dns.handle(self.container_id, data))
        task.add_done_callback(lambda t: self._reply(t, addr))

    def _reply(self, task: asyncio.Future[bytes | None], addr: tuple[str, int]) -> None:
        if task.cancelled() or task.exception() is not None or self.transport is None:
            return
        out = task.result()
        if out:
            self.transport.sendto(out, addr)


class EmbeddedDNS:
    """Serves 127.0.0.11:53 in each registered namespace; `lookup` answers the network-scoped names."""

    def __init__(self, lookup: Lookup, forwarders: list[str] | None = None, timeout: float = 2.0) -> None:
        self.lookup = lookup
        self.forwarders = forwarders if forwarders is not None else host_resolvers()
        self.timeout = timeout
        self._servers: dict[str, asyncio.DatagramTransport] = {}

    async def serve(self, container_id: str, netns_path: str) -> None:
        """Bind 127.0.0.11:53/udp inside the namespace and serve it on this loop (idempotent)."""
        if container_id in self._servers:
            return

        def bind() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((DNS_IP, 53))
            except BaseException:
                s.close()
                raise
            return s

        sock = await asyncio.to_thread(netns.in_netns, netns_path, _lo_up_and(bind))
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Server(self, container_id), sock=sock)
        self._servers[container_id] = transport

    def stop(self, container_id: str) -> None:
        t = self._servers.pop(container_id, None)
        if t is not None:
            t.close()

    def close(self) -> None:
        for cid in list(self._servers):
            self.stop(cid)

    def serving(self) -> list[str]:
        return list(self._servers)

    async def handle(self, container_id: str, query: bytes) -> bytes | None:
        try:
            _qid, _flags, name, qtype, _end = parse_question(query)
        except ValueError:
            return None
        found = self.lookup(container_id, name)
        if found is not None:
            return answer(query, found)
        if "." not in name:
            # a single label that is no container here (a peer on another network, a typo): answered
            # NXDOMAIN at once rather than asked of the host's resolvers, which would send it off the host
            return answer(query, [], rcode=3)
        if not self.forwarders:
            return answer(query, [], rcode=2)
        for server in self.forwarders:
            try:
                return await self._forward(server, query)
            except (TimeoutError, OSError):
                continue
        return answer(query, [], rcode=2)

    async def _forward(self, server: str, query: bytes) -> bytes:
        host, _, port = server.partition("#")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Forwarder(fut),
                                                           remote_addr=(host, int(port or 53)))
        try:
            transport.sendto(query)
            return await asyncio.wait_for(fut, self.timeout)
        finally:
            transport.close()


def _lo_up_and(fn: Callable[[], socket.socket]) -> Callable[[], socket.socket]:
    def run() -> socket.socket:
        from pyroute2 import IPRoute  # type: ignore[import-untyped]

        with IPRoute() as ipr:
            lo = ipr.link_lookup(ifname="lo")
            if lo:
                ipr.link("set", index=lo[0], state="up")
        return fn()

    return run


def host_resolvers(path: str = "/etc/resolv.conf") -> list[str]:
    """The host's nameservers, skipping loopback ones (they do not exist inside a container's namespace
    but the forwarder runs on the host, so they are kept: forwarding happens from the daemon)."""
    out = []
    try:
        for line in Path(path).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                out.append(parts[1])
    except OSError:
        pass
    return out


def resolv_conf(search: list[str] | None = None, options: list[str] | None = None) -> str:
    """The resolv.conf a container on a user-defined network gets."""
    lines = [f"nameserver {DNS_IP}"]
    if search:
        lines.append("search " + " ".join(search))
    lines.append("options " + " ".join(["ndots:0", *(options or [])]))
    return "\n".join(lines) + "\n"
