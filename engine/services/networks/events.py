"""Network events and the ``networks`` projection (tables in migrations/0010_networks.sql).

Kernel side effects are bracketed: ``endpoint.attach_requested`` (with the address it holds, in the
same append as ``address.allocated`` and any ``port.published``) → veth/addresses/rules →
``endpoint.attached`` | ``endpoint.attach_failed``; ``endpoint.detach_requested`` → removal →
``endpoint.detached`` (+ ``address.released``, ``port.unpublished``). Recovery at daemon start settles any
bracket left open and journals what it removed from the world (``network.orphan_removed``).
"""

from __future__ import annotations

import sqlite3
from typing import ClassVar

import msgspec

from engine.errors import AlreadyExists, Conflict
from engine.events.projection import Projection
from engine.events.types import Envelope, Event

_enc = msgspec.json.Encoder()


class NetworkCreated(Event, frozen=True):
    TYPE: ClassVar[str] = "network.created"
    SUBJECT: ClassVar[str] = "id"
    id: str
    name: str
    driver: str
    bridge: str = ""
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = {}
    options: dict[str, str] = {}
    builtin: bool = False


class NetworkRemoved(Event, frozen=True):
    TYPE: ClassVar[str] = "network.removed"
    SUBJECT: ClassVar[str] = "id"
    id: str
    name: str = ""


class SandboxCreated(Event, frozen=True):
    """A container's network namespace file exists (made before the container's process)."""

    TYPE: ClassVar[str] = "network.sandbox_created"
    SUBJECT: ClassVar[str] = "container_id"
    container_id: str
    netns: str


class SandboxRemoved(Event, frozen=True):
    TYPE: ClassVar[str] = "network.sandbox_removed"
    SUBJECT: ClassVar[str] = "container_id"
    container_id: str


class AddressAllocated(Event, frozen=True):
    TYPE: ClassVar[str] = "address.allocated"
    SUBJECT: ClassVar[str] = "ip"
    network_id: str
    ip: str
    endpoint_id: str


class AddressReleased(Event, frozen=True):
    TYPE: ClassVar[str] = "address.released"
    SUBJECT: ClassVar[str] = "ip"
    network_id: str
    ip: str
    endpoint_id: str


class EndpointAttachRequested(Event, frozen=True):
    TYPE: ClassVar[str] = "endpoint.attach_requested"
    SUBJECT: ClassVar[str] = "endpoint_id"
    endpoint_id: str
    network_id: str
    container_id: str
    name: str
    ip: str
    mac: str
    host_if: str
    ifname: str
    netns: str
    aliases: list[str] = []


class EndpointAttached(Event, frozen=True):
    TYPE: ClassVar[str] = "endpoint.attached"
    SUBJECT: ClassVar[str] = "endpoint_id"
    endpoint_id: str
    network_id: str
    container_id: str


class EndpointAttachFailed(Event, frozen=True):
    TYPE: ClassVar[str] = "endpoint.attach_failed"
    SUBJECT: ClassVar[str] = "endpoint_id"
    endpoint_id: str
    network_id: str
    container_id: str
    error: str = ""


class EndpointDetachRequested(Event, frozen=True):
    TYPE: ClassVar[str] = "endpoint.detach_requested"
    SUBJECT: ClassVar[str] = "endpoint_id"
    endpoint_id: str
    network_id: str
    container_id: str


class EndpointDetached(Event, frozen=True):
    TYPE: ClassVar[str] = "endpoint.detached"
    SUBJECT: ClassVar[str] = "endpoint_id"
    endpoint_id: str
    network_id: str
    container_id: str


class PortBound(Event, frozen=True):
    TYPE: ClassVar[str] = "port.published"
    SUBJECT: ClassVar[str] = "key"
    key: str  # "tcp/0.0.0.0:8080"
    proto: str
    host_ip: str
    host_port: int
    container_id: str
    container_port: int
    network_id: str
    container_ip: str


class PortUnbound(Event, frozen=True):
    TYPE: ClassVar[str] = "port.unpublished"
    SUBJECT: ClassVar[str] = "key"
    key: str
    proto: str
    host_ip: str
    host_port: int
    container_id: str


class OrphanRemoved(Event, frozen=True):
    """Recovery removed something of ours in the world that no row knew (a link, a netns file)."""

    TYPE: ClassVar[str] = "network.orphan_removed"
    SUBJECT: ClassVar[str] = "name"
    kind: str
    name: str


def port_key(proto: str, host_ip: str, host_port: int) -> str:
    return f"{proto}/{host_ip or '0.0.0.0'}:{host_port}"


def apply(env: Envelope, tx: sqlite3.Cursor) -> None:
    ev = env.event
    if isinstance(ev, NetworkCreated):
        if tx.execute("SELECT 1 FROM networks WHERE name = ?", (ev.name,)).fetchone():
            raise AlreadyExists(f"network with name {ev.name} already exists")
        tx.execute("INSERT INTO networks(id, name, driver, bridge, subnet, gateway, ip_range, internal, attachable,"
                   " labels, options, builtin, created_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (ev.id, ev.name, ev.driver, ev.bridge, ev.subnet, ev.gateway, ev.ip_range, int(ev.internal),
                    int(ev.attachable), _enc.encode(ev.labels).decode(), _enc.encode(ev.options).decode(),
                    int(ev.builtin), env.time_ns))
    elif isinstance(ev, NetworkRemoved):
        tx.execute("DELETE FROM networks WHERE id = ?", (ev.id,))
        tx.execute("DELETE FROM net_addresses WHERE network_id = ?", (ev.id,))
    elif isinstance(ev, SandboxCreated):
        tx.execute("INSERT OR REPLACE INTO net_sandboxes(container_id, netns, created_ns) VALUES (?,?,?)",
                   (ev.container_id, ev.netns, env.time_ns))
    elif isinstance(ev, SandboxRemoved):
        tx.execute("DELETE FROM net_sandboxes WHERE container_id = ?", (ev.container_id,))
    elif isinstance(ev, AddressAllocated):
        if tx.execute("SELECT 1 FROM net_addresses WHERE network_id = ? AND ip = ?",
                      (ev.network_id, ev.ip)).fetchone():
            raise Conflict(f"Address already in use: {ev.ip}")
        tx.execute("INSERT INTO net_addresses(network_id, ip, endpoint_id) VALUES (?,?,?)",
                   (ev.network_id, ev.ip, ev.endpoint_id))
        tx.execute("UPDATE networks SET last_ip = ? WHERE id = ?", (ev.ip, ev.network_id))
    elif isinstance(ev, AddressReleased):
        tx.execute("DELETE FROM net_addresses WHERE network_id = ? AND ip = ? AND endpoint_id = ?",
                   (ev.network_id, ev.ip, ev.endpoint_id))
    elif isinstance(ev, EndpointAttachRequested):
        tx.execute("INSERT INTO net_endpoints(id, network_id, container_id, name, aliases, ip, mac, host_if, ifname,"
                   " netns, state, created_ns) VALUES (?,?,?,?,?,?,?,?,?,?,'attaching',?)",
                   (ev.endpoint_id, ev.network_id, ev.container_id, ev.name, _enc.encode(ev.aliases).decode(),
                    ev.ip, ev.mac, ev.host_if, ev.ifname, ev.netns, env.time_ns))
    elif isinstance(ev, EndpointAttached):
        tx.execute("UPDATE net_endpoints SET state = 'attached' WHERE id = ?", (ev.endpoint_id,))
    elif isinstance(ev, EndpointDetachRequested):
        tx.execute("UPDATE net_endpoints SET state = 'detaching' WHERE id = ?", (ev.endpoint_id,))
    elif isinstance(ev, (EndpointAttachFailed, EndpointDetached)):
        tx.execute("DELETE FROM net_endpoints WHERE id = ?", (ev.endpoint_id,))
    elif isinstance(ev, PortBound):
        tx.execute("INSERT INTO net_ports(proto, host_ip, host_port, container_id, container_port, network_id,"
                   " container_ip) VALUES (?,?,?,?,?,?,?)",
                   (ev.proto, ev.host_ip, ev.host_port, ev.container_id, ev.container_port, ev.network_id,
                    ev.container_ip))
    elif isinstance(ev, PortUnbound):
        tx.execute("DELETE FROM net_ports WHERE proto = ? AND host_ip = ? AND host_port = ? AND container_id = ?",
                   (ev.proto, ev.host_ip, ev.host_port, ev.container_id))


PROJECTION = Projection(
    name="networks",
    tables=("networks", "net_addresses", "net_sandboxes", "net_endpoints", "net_ports"),
    events=(NetworkCreated, NetworkRemoved, SandboxCreated, SandboxRemoved, AddressAllocated, AddressReleased,
            EndpointAttachRequested, EndpointAttached, EndpointAttachFailed, EndpointDetachRequested,
            EndpointDetached, PortBound, PortUnbound, OrphanRemoved),
    apply=apply,
)
