"""The dockerd role's services: Docker's containers over the containerd-role services (namespace ``moby``).

Modules: ``record`` (the Docker container record, its events and projection), ``containers``
(``DockerContainerService``: create, lookups, rename, update), ``lifecycle`` (start, stop, kill, restart,
pause, wait, remove, prune, the exit monitor and restart policies), ``hostconfig`` (Docker's Config/HostConfig
checks, defaults and the image merge), ``spec`` (Docker's defaults → an OCI spec), ``mounts`` (``-v`` and
``--mount``), ``netattach`` (the container's sandbox, endpoints and published ports over
engine/services/networks), ``names`` (generated names), ``inspect`` (Docker's JSON shapes: ContainerInspect,
the list's summaries); ``healthmon`` (the health-check runner); and the stream half:
``exec``, ``logs``, ``rootfs``, ``stream_events``, ``restart``, ``health``.

Interface for the stream endpoints (stable): ``services.docker`` is a ``DockerContainerService`` with
``await resolve(name_or_id) -> DockerContainer`` (NotFound ``No such container: x``), ``await get(id)``,
``await list()``, ``await start(id, *, actor)``, ``await wait(id, condition) -> (exit_code, error)``;
a ``DockerContainer`` has ``.id``, ``.name`` ("/x"), ``.config`` and ``.host_config`` (dicts, Docker's
JSON), ``.log_path``, ``.image``, ``.image_id``, ``.state`` (``.status``, ``.running``, ``.pid``,
``.exit_code``), ``.mounts``, ``.restart_count``.

This package's ``__init__`` imports nothing, so a stream module can import ``rootfs`` or ``logs`` cheaply.
"""
