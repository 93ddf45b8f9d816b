"""Every containerd gRPC service, and which of them engine implements so far.

containerd 1.6/1.7 serves these services on its gRPC socket; we register all of them, because
a Go client calling a service the server does not know gets a confusing transport error
(``missing content-type field``) instead of UNIMPLEMENTED. A servicer module implements a
service by subclassing the generated ``...Base`` and decorating the class with
`implements`; whatever it leaves abstract is filled by `complete` with methods that answer
UNIMPLEMENTED ``<service>/<method> is not implemented yet``. Introspection.Plugins reports
the same facts, so ``ctr plugins ls`` tells the truth about what works.

Design choice: a factory per service taking the ``Services`` bundle, so servicers are thin
adapters over the local implementations (containerd's service.go over local.go).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.api.containerd.gen.containerd.services.containers.v1.containers_grpc import ContainersBase
from engine.api.containerd.gen.containerd.services.content.v1.content_grpc import ContentBase
from engine.api.containerd.gen.containerd.services.diff.v1.diff_grpc import DiffBase
from engine.api.containerd.gen.containerd.services.events.v1.events_grpc import EventsBase
from engine.api.containerd.gen.containerd.services.images.v1.images_grpc import ImagesBase
from engine.api.containerd.gen.containerd.services.introspection.v1.introspection_grpc import (
    IntrospectionBase,
)
from engine.api.containerd.gen.containerd.services.leases.v1.leases_grpc import LeasesBase
from engine.api.containerd.gen.containerd.services.namespaces.v1.namespace_grpc import NamespacesBase
from engine.api.containerd.gen.containerd.services.sandbox.v1.sandbox_grpc import (
    ControllerBase,
    StoreBase,
)
from engine.api.containerd.gen.containerd.services.snapshots.v1.snapshots_grpc import SnapshotsBase
from engine.api.containerd.gen.containerd.services.streaming.v1.streaming_grpc import StreamingBase
from engine.api.containerd.gen.containerd.services.tasks.v1.tasks_grpc import TasksBase
from engine.api.containerd.gen.containerd.services.transfer.v1.transfer_grpc import TransferBase
from engine.api.containerd.gen.containerd.services.version.v1.version_grpc import VersionBase
from engine.api.containerd.status import unimplemented


@dataclass(frozen=True)
class ServiceInfo:
    base: type
    plugin_id: str  # containerd's io.containerd.grpc.v1 plugin id for this service
    since: str  # first containerd minor that serves it


# In containerd's plugin order (grpc plugins), 1.6 services then the ones 1.7 added.
SERVICES: tuple[ServiceInfo, ...] = (
    ServiceInfo(ContainersBase, "containers", "1.6"),
    ServiceInfo(ContentBase, "content", "1.6"),
    ServiceInfo(DiffBase, "diff", "1.6"),
    ServiceInfo(EventsBase, "events", "1.6"),
    ServiceInfo(ImagesBase, "images", "1.6"),
    ServiceInfo(IntrospectionBase, "introspection", "1.6"),
    ServiceInfo(LeasesBase, "leases", "1.6"),
    ServiceInfo(NamespacesBase, "namespaces", "1.6"),
    ServiceInfo(SnapshotsBase, "snapshots", "1.6"),
    ServiceInfo(TasksBase, "tasks", "1.6"),
    ServiceInfo(VersionBase, "version", "1.6"),
    ServiceInfo(StoreBase, "sandboxes", "1.7"),
    ServiceInfo(ControllerBase, "sandbox-controllers", "1.7"),
    ServiceInfo(StreamingBase, "streaming", "1.7"),
    ServiceInfo(TransferBase, "transfer", "1.7"),
)

Factory = Callable[[Any], object]  # (services) -> servicer instance
_IMPLEMENTATIONS: dict[type, Factory] = {}


def implements(base: type) -> Callable[[type], type]:
    """Class decorator: this servicer class (constructed with the Services bundle) serves `base`."""

    def register(cls: type) -> type:
        if base in _IMPLEMENTATIONS:
            raise ValueError(f"{base.__name__} is implemented twice")
        _IMPLEMENTATIONS[base] = complete(cls)
        return cls

    return register


def service_name(base: type) -> str:
    """Full gRPC service name of a generated Base class (``containerd.services.tasks.v1.Tasks``).

    The generated module path mirrors the proto package (gen/containerd/services/tasks/v1/).
    """
    pkg = base.__module__.split(".gen.", 1)[1].rsplit(".", 1)[0]
    return f"{pkg}.{base.__name__.removesuffix('Base')}"


def unimplemented_methods(cls: type) -> list[str]:
    """Names of the methods `cls` answers with UNIMPLEMENTED."""
    return sorted(name for name in dir(cls) if getattr(getattr(cls, name), "__unimplemented__", False))


def complete(cls: type) -> type:
    """A subclass of `cls` whose abstract gRPC methods answer UNIMPLEMENTED."""
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if not missing:
        return cls
    service = _service_of(cls)
    methods = {name: _stub(service, name) for name in missing}
    return type(cls.__name__, (cls,), {**methods, "__module__": cls.__module__})


def _service_of(cls: type) -> str:
    for klass in cls.__mro__:
        if any(klass is info.base for info in SERVICES):
            return service_name(klass)
    raise TypeError(f"{cls.__name__} does not derive from a containerd service base")


def _stub(service: str, method: str) -> Callable[..., Any]:
    async def stub(self: object, stream: object) -> None:
        raise unimplemented(service, method)

    stub.__name__ = method
    stub.__unimplemented__ = True  # type: ignore[attr-defined]
    return stub


def servicers(services: Any) -> list[object]:
    """One servicer instance per containerd service: ours where implemented, stubs elsewhere."""
    import engine.api.containerd.containers  # noqa: F401  (registration side effects)
    import engine.api.containerd.content  # noqa: F401
    import engine.api.containerd.diff  # noqa: F401
    import engine.api.containerd.events  # noqa: F401
    import engine.api.containerd.images  # noqa: F401
    import engine.api.containerd.introspection  # noqa: F401
    import engine.api.containerd.namespaces  # noqa: F401
    import engine.api.containerd.snapshots  # noqa: F401
    import engine.api.containerd.tasks  # noqa: F401
    import engine.api.containerd.version  # noqa: F401

    out: list[object] = []
    for info in SERVICES:
        factory = _IMPLEMENTATIONS.get(info.base)
        out.append(factory(services) if factory else complete(info.base)())
    return out


def implementation(base: type) -> type | None:
    """The completed servicer class for `base`, or None if nothing of it is implemented."""
    return _IMPLEMENTATIONS.get(base)  # type: ignore[return-value]
