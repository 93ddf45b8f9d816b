"""An in-process containerd gRPC server over a real journal in a temp dir, and a client channel."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpclib.client import Channel

from engine.api.containerd.server import serve_containerd
from engine.events.journal import Journal
from engine.services import Services, all_projections
from engine.services.namespaces import NamespaceService


@dataclass
class Api:
    services: Services
    channel: Channel
    socket: str

    @property
    def journal(self) -> Journal:
        return self.services.journal


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    journal = Journal(tmp_path / "engine.db", all_projections())
    await journal.open()
    services = Services(
        journal=journal,
        namespaces=NamespaceService(journal),
        daemon_uuid=str(uuid.uuid4()),
        config=None,  # type: ignore[arg-type]
    )
    sock = str(tmp_path / "containerd.sock")
    server = await serve_containerd(services, sock)
    channel = Channel(path=sock)
    try:
        yield Api(services, channel, sock)
    finally:
        channel.close()
        server.close()
        await server.wait_closed()
        await journal.close()
