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
    from engine.services.containers import ContainerService
    from engine.services.content import ContentService
    from engine.services.dockerd.containers import DockerContainerService
    from engine.services.gc import GarbageCollector
    from engine.services.images import ImageService
    from engine.services.leases import LeaseService
    from engine.services.namespaces import NamespaceService
    from engine.services.networks.service import NetworkService
    from engine.services.pull import PullService
    from engine.services.snapshots import SnapshotService
    from engine.services.tasks import TaskService
    from engine.services.volumes import VolumeService


def all_projections() -> Projections:
    """Every projection the journal maintains, in a fixed order."""
    from engine.services import containers, gc, images, namespaces, networks, snapshots, task_events, volumes

    projections: list[Projection] = [namespaces.PROJECTION, snapshots.PROJECTION, *gc.PROJECTIONS,
                                     containers.PROJECTION, task_events.PROJECTION, images.PROJECTION,
                                     volumes.PROJECTION, networks.PROJECTION]
    projections.append(__import__("engine.services.image_archive", fromlist=["PROJECTION"]).PROJECTION)
    projections.append(__import__("engine.services.dockerd.record", fromlist=["PROJECTION"]).PROJECTION)
    projections.append(__import__("engine.services.pull", fromlist=["PROJECTION"]).PROJECTION)
    return Projections(projections)


@dataclass
class Services:
    journal: Journal
    namespaces: NamespaceService
    daemon_uuid: str
    config: Config
    started_ns: int = 0
    content: ContentService | None = None
    leases: LeaseService | None = None
    gc: GarbageCollector | None = None
    snapshots: SnapshotService | None = None
    containers: ContainerService | None = None
    tasks: TaskService | None = None
    pull: PullService | None = None  # registry pull and push (engine/services/pull.py, push.py)
    images: ImageService | None = None
    volumes: VolumeService | None = None
    networks: NetworkService | None = None  # engine/services/networks
    docker: DockerContainerService | None = None
    extra: dict[str, object] = field(default_factory=dict)
