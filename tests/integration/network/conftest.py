"""Fixtures for network tests: a NetworkService on its own journal, link prefix, nft table and subnets.

Every test gets a fresh prefix (``n<6 hex>``), so its bridges, veths and nft table never meet another
test's, and the fixture removes them (and the namespace files) even when the test fails. Subnets come
from 10.200.0.0/13 in /24s picked at random and checked against the host's routes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from engine.events.journal import Journal
from engine.network import links, netns, nft
from engine.services import all_projections
from engine.services.networks.service import NetworkService

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def free_subnets(n: int) -> list[str]:
    """n /24s in 10.200.0.0-10.207.255.0 not routed on this host now."""
    routes = links.host_routes()
    out: list[str] = []
    while len(out) < n:
        cand = ipaddress.IPv4Network(f"10.{random.randint(200, 207)}.{random.randint(0, 255)}.0/24")
        if not any(cand.overlaps(r) for r in routes) and str(cand) not in out:
            out.append(str(cand))
    return out


class Env:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.prefix = "n" + secrets.token_hex(3)
        self.exec_root = base / "run"
        self.db = base / "engine.db"
        self.subnets = free_subnets(4)
        self.bridge_cidr = str(ipaddress.IPv4Network(self.subnets[3])[1]) + "/24"
        self.journal: Journal | None = None
        self.svc: NetworkService | None = None
        self.procs: list[subprocess.Popen[bytes]] = []

    async def open(self, forwarders: list[str] | None = None, bridge_cidr: str | None = None) -> NetworkService:
        from engine.services.networks.recovery import recover

        self.journal = Journal(self.db, all_projections())
        await self.journal.open()
        self.svc = NetworkService(self.journal, prefix=self.prefix, exec_root=self.exec_root,
                                  bridge_cidr=self.bridge_cidr if bridge_cidr is None else bridge_cidr,
                                  default_pools=[{"base": self.subnets[2], "size": 26}],
                                  dns_forwarders=forwarders if forwarders is not None else [])
        await recover(self.svc)
        return self.svc

    async def close(self) -> None:
        if self.svc is not None:
            await self.svc.close()
            self.svc = None
        if self.journal is not None:
            await self.journal.close()
            self.journal = None

    def spawn(self, ns: str, *argv: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(["nsenter", f"--net={ns}", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def run(self, ns: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", f"--net={ns}", *argv], capture_output=True, text=True, timeout=timeout)

    async def arun(self, ns: str | None, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        """Run a command (in the namespace `ns`, or on the host) off the event loop, which serves DNS."""
        cmd = ["nsenter", f"--net={ns}", *argv] if ns else list(argv)

        def run() -> subprocess.CompletedProcess[str]:
            try:
                return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                return subprocess.CompletedProcess(cmd, 124, "", "timed out")

        return await asyncio.to_thread(run)

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        nft.delete_table(self.prefix)
        nft.delete_table("x" + self.prefix)  # a "foreign" table a recovery test makes
        for name in links.list_links(self.prefix):
            links.delete_link(name)
        d = self.exec_root / "netns"
        if d.is_dir():
            for entry in os.listdir(d):
                netns.remove(d / entry)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def netenv() -> Iterator[Env]:
    env = Env(Path(tempfile.mkdtemp(prefix="engine-net-")))
    try:
        yield env
    finally:
        env.cleanup()


@pytest.fixture
async def net(netenv: Env) -> AsyncIterator[Env]:
    await netenv.open()
    try:
        yield netenv
    finally:
        await netenv.close()
