"""Requests/s and MB/s through a published port: engine's kernel path (nftables DNAT, also from
127.0.0.1) against the same server reached directly and through a user-space proxy.

Setup: a NetworkService on a temporary journal makes a network and a "container" (a namespace file
with a veth on the network's bridge) running busybox httpd, publishes its port 80 on an ephemeral host
port, and Apache's `ab` (Debian apache2-utils) loads it from the host:

* ``direct``      — the container's own address (no NAT): the ceiling.
* ``dnat-lo``     — 127.0.0.1:<published> (engine's path: nft DNAT in output + route_localnet).
* ``dnat-host``   — the bridge gateway address:<published> (DNAT in output, as another host address).
* ``userland``    — 127.0.0.1:<port> of an asyncio TCP proxy in this process that copies bytes to the
                    container: what a docker-proxy-style path costs (dockerd and docker-proxy are not
                    installed on this machine, so Debian's dockerd could not be measured; this stands in).

Run as root: ``.venv/bin/python bench/net.py [--requests N] [--concurrency C] [--json out.json]``.
Nothing leaves the machine: a 10.2xx.x.0/24 subnet on a bridge made here, and loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.events.journal import Journal  # noqa: E402
from engine.network import links, netns, nft  # noqa: E402
from engine.network.ports import PortSpec  # noqa: E402
from engine.services import all_projections  # noqa: E402
from engine.services.networks.recovery import recover  # noqa: E402
from engine.services.networks.service import EndpointRequest, NetworkService  # noqa: E402


def _subnet() -> str:
    routes = links.host_routes()
    while True:
        cand = ipaddress.IPv4Network(f"10.{random.randint(216, 223)}.{random.randint(0, 255)}.0/24")
        if not any(cand.overlaps(r) for r in routes):
            return str(cand)


async def _proxy(listen_port: int, target: tuple[str, int]) -> asyncio.AbstractServer:
    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(*target)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, uw), pipe(ur, cw))

    return await asyncio.start_server(handle, "127.0.0.1", listen_port)


def _ab(url: str, n: int, c: int) -> dict[str, float]:
    out = subprocess.run(["ab", "-q", "-n", str(n), "-c", str(c), url], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"ab failed for {url}: {out.stderr.strip() or out.stdout[-400:]}")
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out.stdout).group(1))  # type: ignore[union-attr]
    kbs = float(re.search(r"Transfer rate:\s+([\d.]+)", out.stdout).group(1))  # type: ignore[union-attr]
    failed = int(re.search(r"Failed requests:\s+(\d+)", out.stdout).group(1))  # type: ignore[union-attr]
    return {"requests_per_s": rps, "MB_per_s": round(kbs * 1024 / 1e6, 2), "failed": failed}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--big-requests", type=int, default=200)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if shutil.which("ab") is None:
        sys.exit("needs ab (Debian apache2-utils)")
    base = Path(tempfile.mkdtemp(prefix="engine-netbench-"))
    prefix = "b" + secrets.token_hex(3)
    journal = Journal(base / "engine.db", all_projections())
    await journal.open()
    svc = NetworkService(journal, prefix=prefix, exec_root=base / "run", bridge_cidr=str(
        ipaddress.IPv4Network(_subnet())[1]) + "/24", dns_forwarders=[])
    httpd = None
    proxy = None
    results: dict[str, object] = {"machine": os.uname().release, "cpus": os.cpu_count(),
                                  "dockerd": shutil.which("dockerd") or "not installed",
                                  "requests": args.requests, "concurrency": args.concurrency}
    try:
        await recover(svc)
        await svc.create("bench", subnet=_subnet(), actor="bench")
        path = await svc.create_sandbox("c" * 64)
        settings = await svc.attach("c" * 64, path, [EndpointRequest("bench")], [PortSpec(80)], name="web")
        ip = settings["bench"].ip
        gw = settings["bench"].gateway
        port = (await svc.ports())[0].host_port
        www = base / "www"
        www.mkdir()
        (www / "small.html").write_bytes(b"x" * 612)  # nginx's index.html size
        (www / "big.bin").write_bytes(os.urandom(8 << 20))
        httpd = subprocess.Popen(["nsenter", f"--net={path}", "/bin/busybox", "httpd", "-f", "-p", "80", "-h",
                                  str(www)])
        for _ in range(50):
            if subprocess.run(["/bin/busybox", "wget", "-q", "-O", "/dev/null", f"http://{ip}/small.html"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        proxy = await _proxy(0, (ip, 80))
        proxy_port = proxy.sockets[0].getsockname()[1]
        paths = {"direct": f"http://{ip}:80", "dnat-lo": f"http://127.0.0.1:{port}",
                 "dnat-host": f"http://{gw}:{port}", "userland": f"http://127.0.0.1:{proxy_port}"}
        for name, url in paths.items():
            small = await asyncio.to_thread(_ab, url + "/small.html", args.requests, args.concurrency)
            big = await asyncio.to_thread(_ab, url + "/big.bin", args.big_requests, 4)
            results[name] = {"small": small, "big_8MiB": big}
            print(f"{name:10s} {small['requests_per_s']:9.0f} req/s (612 B)   {big['MB_per_s']:8.1f} MB/s (8 MiB)",
                  flush=True)
    finally:
        if proxy is not None:
            proxy.close()
        if httpd is not None:
            httpd.kill()
            httpd.wait()
        await svc.close()
        await journal.close()
        nft.delete_table(prefix)
        for name in links.list_links(prefix):
            links.delete_link(name)
        netns.remove(base / "run" / "netns" / ("c" * 64))
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
