"""Who is on the other end of a connection: the actor recorded on every event a request causes.

Unix sockets: the peer's uid, gid and pid from SO_PEERCRED (and the process name, read once per
connection, for the audit trail). TLS: the client certificate's subject. Plain TCP: the address.
"""

from __future__ import annotations

import socket
import struct


def unix_peer(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process that connected to a unix socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)


def actor_from_socket(sock: socket.socket | None) -> str:
    if sock is None:
        return "unknown"
    if sock.family == socket.AF_UNIX:
        try:
            pid, uid, gid = unix_peer(sock)
        except OSError:
            return "unix:unknown"
        comm = ""
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            pass
        return f"uid={uid} gid={gid} pid={pid}" + (f" comm={comm}" if comm else "")
    try:
        host, port = sock.getpeername()[:2]
        return f"tcp:{host}:{port}"
    except OSError:
        return "tcp:unknown"


def actor_from_cert(cert: dict | None, fallback: str) -> str:
    """`tls:CN=alice,O=example` from the dict ssl.SSLSocket.getpeercert() returns."""
    if not cert:
        return fallback
    names = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
             "localityName": "L", "stateOrProvinceName": "ST", "emailAddress": "emailAddress"}
    parts = [f"{names.get(k, k)}={v}" for rdn in cert.get("subject", ()) for k, v in rdn]
    return "tls:" + ",".join(parts) if parts else fallback
