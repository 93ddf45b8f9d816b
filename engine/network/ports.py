"""Published ports: parsing Docker's forms and holding the host port.

* ``parse_publish("[ip:][host[-host]:]container[-container][/proto]")`` → PortSpec list, as ``-p``;
  ranges expand pairwise; an empty host port (``-p 80``) or ``0`` means an ephemeral one.
* ``from_port_bindings(HostConfig.PortBindings)`` reads the API's ``{"80/tcp": [{"HostIp", "HostPort"}]}``.
* ``reserve(proto, host_ip, port)`` binds (without listen) a socket on the host port so no other
  process can take it while the container holds it and so a taken port fails now with Docker's
  message; port 0 lets the kernel pick from ip_local_port_range. The packets themselves are DNATed by
  nftables and never reach these sockets.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from engine.errors import Conflict, InvalidArgument


@dataclass(frozen=True)
class PortSpec:
    container_port: int
    proto: str = "tcp"
    host_ip: str = ""
    host_port: int = 0


def _port(text: str, what: str) -> int:
    try:
        n = int(text)
    except ValueError as err:
        raise InvalidArgument(f"invalid {what}: {text}") from err
    if not 0 <= n <= 65535:
        raise InvalidArgument(f"invalid {what}: {text}")
    return n


def _range(text: str, what: str) -> list[int]:
    if "-" in text:
        lo, _, hi = text.partition("-")
        a, b = _port(lo, what), _port(hi, what)
        if b < a:
            raise InvalidArgument(f"invalid {what}: {text}")
        return list(range(a, b + 1))
    return [_port(text, what)]


def parse_publish(spec: str) -> list[PortSpec]:
    """Docker's -p syntax."""
    proto = "tcp"
    body = spec
    if "/" in spec:
        body, _, proto = spec.rpartition("/")
        proto = proto.lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    host_ip = ""
    parts = body.rsplit(":", 2)
    if len(parts) == 3:
        host_ip, host, cont = parts
        host_ip = host_ip.strip("[]")
    elif len(parts) == 2:
        host, cont = parts
    else:
        host, cont = "", parts[0]
    if not cont:
        raise InvalidArgument(f"no port specified: {spec}<empty>")
    conts = _range(cont, "containerPort")
    hosts = _range(host, "hostPort") if host else [0] * len(conts)
    if len(hosts) == 1 and len(conts) > 1 and hosts[0] == 0:
        hosts = [0] * len(conts)
    if len(hosts) != len(conts):
        if len(conts) == 1:  # a host range for one container port: the first free one is taken
            return [PortSpec(conts[0], proto, host_ip, hosts[0])]
        raise InvalidArgument(f"invalid ranges specified for container and host Ports: {cont} and {host}")
    return [PortSpec(c, proto, host_ip, h) for c, h in zip(conts, hosts, strict=True)]


def from_port_bindings(bindings: dict[str, list[dict[str, str]] | None] | None) -> list[PortSpec]:
    """HostConfig.PortBindings in the API's shape."""
    out: list[PortSpec] = []
    for key, items in (bindings or {}).items():
        port, _, proto = key.partition("/")
        cport = _port(port, "containerPort")
        for item in items or [{}]:
            hp = (item or {}).get("HostPort") or "0"
            hosts = _range(hp, "hostPort")
            out.append(PortSpec(cport, proto or "tcp", (item or {}).get("HostIp") or "", hosts[0]))
    return out


def reserve(proto: str, host_ip: str, host_port: int) -> socket.socket:
    """Hold the host port; raise Docker's 'port is already allocated' when taken."""
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind((host_ip or "0.0.0.0", host_port))
    except OSError as err:
        s.close()
        if err.errno in (errno.EADDRINUSE, errno.EACCES):
            raise Conflict(f"Bind for {host_ip or '0.0.0.0'}:{host_port} failed: port is already allocated") from err
        if err.errno == errno.EADDRNOTAVAIL:
            raise InvalidArgument(f"cannot bind to {host_ip}: address not available on this host") from err
        raise
    return s
