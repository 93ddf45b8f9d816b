"""nftables rules for bridge networks and published ports, in one table of our own.

Design: the whole table ``inet <prefix>`` is rendered from the journal's projection and replaced in
ONE nftables transaction (libnftables in-process, else ``nft -f -``) (``table …`` to make sure it exists, ``delete table …``, then the full
definition): every change is atomic, a rule no row knows cannot survive a reload, and no other table is
ever read or written. ``<prefix>`` is the daemon's ``network-prefix`` so parallel test daemons each own
their table.

Chains (all in the one table):

* ``prerouting``/``output`` (nat): packets to a local address jump to ``ports``, where published ports
  are DNATed to the container (``[ip:]host:container/proto``). ``output`` covers the host itself,
  including 127.0.0.1: the bridges have ``route_localnet`` set and ``postrouting`` masquerades 127/8 to
  the bridge address — the kernel fast path: no user-space proxy copies bytes, connections survive a
  daemon restart, and bench/net.py measured ~4x the requests/s of an asyncio proxy. The price,
  as with dockerd's --userland-proxy=false: route_localnet on our bridges (a ``raw_prerouting`` rule
  drops anything arriving on them for 127/8) and the client's source address is masqueraded.
* ``postrouting`` (nat): masquerade of a non-internal subnet leaving its bridge, hairpin (a container
  reaching a published port of its own network through a host address) and localhost sources.
* ``forward`` (filter, policy accept so other tables' traffic is untouched): replies, traffic inside one
  bridge, traffic out of a non-internal bridge, DNATed traffic into a bridge; everything else entering or
  leaving one of our bridges is dropped — this is the isolation between networks. Internal networks drop
  whatever crosses their bridge.
* ``input`` (filter): an internal network cannot reach the host either.
* ``raw_prerouting``: nothing arriving on a bridge may be addressed to 127/8 (route_localnet is on for
  the bridges; replies to localhost clients are de-NATed later, in the nat hooks, so they still pass).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass

from engine.errors import FailedPrecondition, Unavailable

_lib_lock = threading.Lock()
_lib: tuple[ctypes.CDLL, int] | None | bool = None  # (library, context); False = not available


def _libnft() -> tuple[ctypes.CDLL, int] | None:
    """libnftables in-process (Debian's libnftables1, which `nft` itself uses): one change costs ~0.1 ms
    instead of ~15 ms for a fork/exec of `nft -f -`. None when the library cannot be loaded."""
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("nftables") or "libnftables.so.1")
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
            ctx = lib.nft_ctx_new(0)
            lib.nft_ctx_buffer_error(ctx)
            lib.nft_ctx_buffer_output(ctx)
            _lib = (lib, ctx)
        except (OSError, AttributeError):
            _lib = False
    return _lib or None  # type: ignore[return-value]


def run_script(script: str) -> tuple[int, str]:
    """Run an nft script as one transaction: (0, "") or (rc, error text)."""
    with _lib_lock:
        found = _libnft()
        if found is not None:
            lib, ctx = found
            rc = lib.nft_run_cmd_from_buffer(ctx, script.encode())
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
            return rc, err.strip()
    proc = subprocess.run([nft_path(), "-f", "-"], input=script.encode(), capture_output=True)
    return proc.returncode, proc.stderr.decode(errors="replace").strip()


@dataclass(frozen=True)
class BridgeRule:
    bridge: str
    subnet: str
    internal: bool = False
    gateway: str = ""


@dataclass(frozen=True)
class PortRule:
    proto: str  # tcp | udp
    host_ip: str  # "" or "0.0.0.0" = every local address
    host_port: int
    container_ip: str
    container_port: int
    bridge: str


def nft_path() -> str:
    path = shutil.which("nft") or ("/usr/sbin/nft" if os.path.exists("/usr/sbin/nft") else None)
    if path is None:
        raise Unavailable("nft not found: install Debian's nftables package")
    return path


def _q(name: str) -> str:
    return '"' + name + '"'


def _set(names: list[str]) -> str:
    return "{ " + ", ".join(_q(n) for n in names) + " }"


def render(table: str, bridges: list[BridgeRule], ports: list[PortRule]) -> str:
    """The nft script that replaces table `inet <table>` with these rules."""
    lines = [f"table inet {table}", f"delete table inet {table}", f"table inet {table} {{"]
    all_br = [b.bridge for b in bridges]
    lines += ["  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;",
              "    fib daddr type local jump ports", "  }",
              "  chain output {", "    type nat hook output priority -100; policy accept;",
              "    fib daddr type local jump ports", "  }",
              "  chain ports {"]
    for p in ports:
        match = ""
        if p.host_ip and p.host_ip not in ("0.0.0.0", "::"):
            match = f"ip daddr {p.host_ip} "
        lines.append(f"    {match}{p.proto} dport {p.host_port} dnat ip to {p.container_ip}:{p.container_port}")
    lines.append("  }")
    lines += ["  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;"]
    for b in bridges:
        lines.append(f"    oifname {_q(b.bridge)} ip saddr 127.0.0.0/8 masquerade")
        lines.append(f"    oifname {_q(b.bridge)} ip saddr {b.subnet} ip daddr {b.subnet} ct status dnat masquerade")
        if not b.internal:
            lines.append(f"    ip saddr {b.subnet} oifname != {_q(b.bridge)} masquerade")
    lines.append("  }")
    lines += ["  chain forward {", "    type filter hook forward priority filter; policy accept;"]
    if all_br:
        lines.append("    ct state established,related accept")
        for b in bridges:
            if b.internal:
                lines.append(f"    iifname {_q(b.bridge)} oifname != {_q(b.bridge)} drop")
                lines.append(f"    oifname {_q(b.bridge)} iifname != {_q(b.bridge)} drop")
        for b in bridges:
            lines.append(f"    iifname {_q(b.bridge)} oifname {_q(b.bridge)} accept")
        external = [b.bridge for b in bridges if not b.internal]
        if external:
            lines.append(f"    iifname {_set(external)} oifname != {_set(all_br)} accept")
            lines.append(f"    oifname {_set(external)} ct status dnat accept")
        lines.append(f"    iifname {_set(all_br)} drop")
        lines.append(f"    oifname {_set(all_br)} drop")
    lines.append("  }")
    lines += ["  chain input {", "    type filter hook input priority filter; policy accept;"]
    if all_br:
        for b in bridges:
            if b.internal:
                lines.append(f"    iifname {_q(b.bridge)} drop")
    lines.append("  }")
    lines += ["  chain raw_prerouting {", "    type filter hook prerouting priority raw; policy accept;"]
    if all_br:
        lines.append(f"    iifname {_set(all_br)} ip daddr 127.0.0.0/8 drop")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def apply(table: str, bridges: list[BridgeRule], ports: list[PortRule]) -> None:
    """Replace the table in one atomic nft transaction."""
    for b in bridges:
        ipaddress.IPv4Network(b.subnet)
    rc, err = run_script(render(table, bridges, ports))
    if rc != 0:
        raise FailedPrecondition(f"nft refused the rules for table {table}: {err}")


def delete_table(table: str) -> None:
    """Remove our table (missing is fine)."""
    run_script(f"table inet {table}\ndelete table inet {table}\n")


def table_exists(table: str) -> bool:
    proc = subprocess.run([nft_path(), "list", "table", "inet", table], capture_output=True)
    return proc.returncode == 0


def list_tables(prefix: str) -> list[tuple[str, str]]:
    """(family, name) of tables whose name starts with `prefix`."""
    proc = subprocess.run([nft_path(), "list", "tables"], capture_output=True, text=True)
    out = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table" and parts[2].startswith(prefix):
            out.append((parts[1], parts[2]))
    return out
