"""Events of the Docker stream endpoints that Docker reports and the tasks service cannot know.

Each is journaled in namespace ``moby`` with the container id as subject, by engine/api/docker (attach,
resize, top, archive, export): they record that a client looked at or changed a container through these
endpoints, as dockerd's ``attach``, ``detach``, ``resize``, ``top``, ``archive-path``, ``extract-to-dir``
and ``export`` events do. Nothing projects them: they are history only.
"""

from __future__ import annotations

from typing import ClassVar

from engine.events.types import Event


class _Stream(Event, frozen=True):
    SUBJECT: ClassVar[str] = "container_id"
    container_id: str


class ContainerAttached(_Stream, frozen=True):
    """A client attached to the container's stdio (Docker ``attach``)."""

    TYPE: ClassVar[str] = "docker_stream.attached"
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False


class ContainerDetached(_Stream, frozen=True):
    """An attached client typed the detach keys (Docker ``detach``)."""

    TYPE: ClassVar[str] = "docker_stream.detached"


class ContainerResized(_Stream, frozen=True):
    """The container's terminal was resized (Docker ``resize``, attributes height and width)."""

    TYPE: ClassVar[str] = "docker_stream.resized"
    height: int
    width: int


class ContainerTopListed(_Stream, frozen=True):
    """The container's processes were listed (Docker ``top``)."""

    TYPE: ClassVar[str] = "docker_stream.top_listed"


class ContainerPathRead(_Stream, frozen=True):
    """A path was statted or archived out of the container (Docker ``archive-path``)."""

    TYPE: ClassVar[str] = "docker_stream.path_accessed"
    path: str


class ContainerExtracted(_Stream, frozen=True):
    """A tar was extracted into the container (Docker ``extract-to-dir``)."""

    TYPE: ClassVar[str] = "docker_stream.extracted"
    path: str


class ContainerExported(_Stream, frozen=True):
    """The container's file system was exported as a tar (Docker ``export``)."""

    TYPE: ClassVar[str] = "docker_stream.exported"
