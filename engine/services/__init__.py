"""engine/services: one module per domain; each owns its commands, its events and its apply().

``Services`` is what the transports (engine/api/docker, engine/api/containerd) are given: the local
implementations, called in-process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.events.projection import Projection, Projections

if TYPE_CHECKING:
    from engine.config import Config
    from engine.events.journal import Journal
    from engine.services.namespaces import NamespaceService


def all_projections() -> Projections:
    """Every projection the journal maintains, in a fixed order."""
    from engine.services import namespaces

    projections: list[Projection] = [namespaces.PROJECTION]
    from engine.services import snapshots; projections.append(snapshots.PROJECTION)  # noqa: E702, I001
    projections += __import__("engine.services.gc", fromlist=["PROJECTIONS"]).PROJECTIONS  # leases, content, gc
    return Projections(projections)


@dataclass
class Services:
    journal: Journal
    namespaces: NamespaceService
    daemon_uuid: str
    config: Config
    started_ns: int = 0
    extra: dict[str, object] = field(default_factory=dict)
