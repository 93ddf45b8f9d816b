"""Read model of the networks projection: rows as small structs, and the queries commands decide on."""

from __future__ import annotations

import sqlite3

import msgspec

_dec_map = msgspec.json.Decoder(dict[str, str])
_dec_list = msgspec.json.Decoder(list[str])

BUILTIN = ("bridge", "host", "none")


class Network(msgspec.Struct, frozen=True):
    id: str
    name: str
    driver: str
    bridge: str
    subnet: str
    gateway: str
    ip_range: str
    internal: bool
    attachable: bool
    labels: dict[str, str]
    options: dict[str, str]
    builtin: bool
    last_ip: str
    created_ns: int

    @property
    def kernel(self) -> bool:
        """True for a network with a kernel bridge (the bridge driver)."""
        return self.driver == "bridge"

    @property
    def dns(self) -> bool:
        """Embedded DNS serves user-defined bridge networks only (as Docker)."""
        return self.driver == "bridge" and not self.builtin


class Endpoint(msgspec.Struct, frozen=True):
    id: str
    network_id: str
    container_id: str
    name: str
    aliases: list[str]
    ip: str
    mac: str
    host_if: str
    ifname: str
    netns: str
    state: str


class Port(msgspec.Struct, frozen=True):
    proto: str
    host_ip: str
    host_port: int
    container_id: str
    container_port: int
    network_id: str
    container_ip: str


_NET_COLS = ("id, name, driver, bridge, subnet, gateway, ip_range, internal, attachable, labels, options, builtin,"
             " last_ip, created_ns")
_EP_COLS = "id, network_id, container_id, name, aliases, ip, mac, host_if, ifname, netns, state"

Conn = sqlite3.Connection | sqlite3.Cursor


def _net(row: tuple) -> Network:
    return Network(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]), bool(row[8]),
                   _dec_map.decode(row[9]), _dec_map.decode(row[10]), bool(row[11]), row[12], row[13])


def _ep(row: tuple) -> Endpoint:
    return Endpoint(row[0], row[1], row[2], row[3], _dec_list.decode(row[4]), *row[5:])


def networks(conn: Conn) -> list[Network]:
    return [_net(r) for r in conn.execute(f"SELECT {_NET_COLS} FROM networks ORDER BY created_ns, id")]


def find_network(conn: Conn, ref: str) -> Network | None:
    """By full id, by exact name, then by unique id prefix (Docker's order)."""
    row = conn.execute(f"SELECT {_NET_COLS} FROM networks WHERE id = ?", (ref,)).fetchone()
    if row is None:
        row = conn.execute(f"SELECT {_NET_COLS} FROM networks WHERE name = ?", (ref,)).fetchone()
    if row is None and ref:
        rows = conn.execute(f"SELECT {_NET_COLS} FROM networks WHERE id LIKE ? ESCAPE '\\'",
                            (ref.replace("%", "\\%").replace("_", "\\_") + "%",)).fetchall()
        if len(rows) == 1:
            row = rows[0]
    return _net(row) if row else None


def endpoints(conn: Conn, *, network_id: str | None = None, container_id: str | None = None) -> list[Endpoint]:
    q, args = f"SELECT {_EP_COLS} FROM net_endpoints", []
    conds = []
    if network_id is not None:
        conds.append("network_id = ?")
        args.append(network_id)
    if container_id is not None:
        conds.append("container_id = ?")
        args.append(container_id)
    if conds:
        q += " WHERE " + " AND ".join(conds)
    return [_ep(r) for r in conn.execute(q + " ORDER BY created_ns, id", args)]


def addresses(conn: Conn, network_id: str) -> set[str]:
    return {r[0] for r in conn.execute("SELECT ip FROM net_addresses WHERE network_id = ?", (network_id,))}


def ports(conn: Conn, container_id: str | None = None) -> list[Port]:
    q = "SELECT proto, host_ip, host_port, container_id, container_port, network_id, container_ip FROM net_ports"
    rows = conn.execute(q + (" WHERE container_id = ?" if container_id else "") + " ORDER BY host_port",
                        (container_id,) if container_id else ())
    return [Port(*r) for r in rows]


def sandboxes(conn: Conn) -> dict[str, str]:
    return dict(conn.execute("SELECT container_id, netns FROM net_sandboxes").fetchall())


def dns_names(conn: Conn) -> dict[str, dict[str, list[str]]]:
    """For each container on a user-defined network: the names it can resolve (its peers' container
    names, aliases and short ids on the networks it shares with them, lower-case) -> addresses."""
    nets = {n.id: n for n in networks(conn)}
    eps = [e for e in endpoints(conn) if e.state == "attached" and e.network_id in nets and nets[e.network_id].dns]
    by_net: dict[str, list[Endpoint]] = {}
    for e in eps:
        by_net.setdefault(e.network_id, []).append(e)
    out: dict[str, dict[str, list[str]]] = {}
    for e in eps:
        table = out.setdefault(e.container_id, {})
        for peer in by_net[e.network_id]:
            for n in {peer.name, *peer.aliases, peer.container_id[:12]}:
                if n:
                    addrs = table.setdefault(n.lower(), [])
                    if peer.ip not in addrs:
                        addrs.append(peer.ip)
    return out
