"""The Docker container service: create, lookups, rename, update, prune (lifecycle.py: start … remove).

``DockerContainerService(services)`` is ``services.docker``. Interface kept stable for the stream
endpoints (attach, logs, exec, …):

* ``await resolve(name_or_id) -> DockerContainer`` (full id, exact name, unique id prefix; NotFound
  ``No such container: x``), ``await get(id)``, ``await list()``;
* record fields: ``.id``, ``.name`` ("/x"), ``.config``/``.host_config`` (Docker's JSON, dicts),
  ``.log_path``, ``.state.running`` / ``.state.status`` / ``.state.pid``, ``.image``, ``.image_id``;
* ``await start(id, *, actor)``, ``await wait(id, condition) -> (exit_code, error)``.

Create: the image is resolved in namespace ``moby`` (``No such image: <familiar ref>`` makes the CLI pull)
and unpacked; Docker's Config/HostConfig are checked (hostconfig.py) before anything is journaled. Then
``docker_container.create_requested`` reserves the name (409 with Docker's message when taken, decided in
the writer's transaction), and the side effects follow: the container's directory with /etc/hostname,
/etc/hosts and /etc/resolv.conf, bind sources (``-v`` creates a missing one, as Docker does), volumes,
the rootfs snapshot (key = id, parent = the image's top chain id) and the containerd container record
(runtime ``io.containerd.runc.v2``, the spec as JSON, snapshotter overlayfs), then
``docker_container.created``. Any failure undoes them in reverse order and journals
``docker_container.create_failed``: a refused create leaves no row, snapshot or directory. A create cut
by a crash is finished the same way by ``recover`` at the next start (``ENGINE_FAULT_DOCKER=create:materialised``
makes the daemon SIGKILL itself there, for the tests).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import Conflict, EngineError, InvalidArgument, NotFound
from engine.images.reference import parse as parse_ref
from engine.services import image_unpack
from engine.services.containers import OCI_SPEC_TYPE_URL, AnyBlob, Container, Runtime
from engine.services.dockerd import hostconfig, names, netattach
from engine.services.dockerd import mounts as mountmod
from engine.services.dockerd import record as rec
from engine.services.dockerd import spec as specmod
from engine.services.dockerd.lifecycle import Lifecycle, runtime_options
from engine.services.dockerd.record import NAMESPACE, DockerContainer

if TYPE_CHECKING:
    from engine.services import Services

FAULT_ENV = "ENGINE_FAULT_DOCKER"  # "create:materialised": SIGKILL the daemon before docker_container.created
_FAULT = os.environ.get(FAULT_ENV, "")
RUNTIME = "io.containerd.runc.v2"
SNAPSHOTTER = "overlayfs"
HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\n"
         "ff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def conflict_message(name: str, cid: str) -> str:
    return (f'Conflict. The container name "{name}" is already in use by container "{cid}". You have to remove '
            "(or rename) that container to be able to reuse that name.")


class DockerContainerService(Lifecycle):
    """Docker's containers over the containers, snapshots and tasks services (module docstring)."""

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.journal = services.journal
        self.root = Path(services.config.root) / "containers"

    # ---- reads --------------------------------------------------------------------------------------
    async def get(self, cid: str) -> DockerContainer:
        c = await self.journal.run_read(lambda conn: rec.read(conn, cid))
        if c is None:
            raise NotFound(f"No such container: {cid}")
        return c  # type: ignore[return-value]

    async def list(self) -> builtins.list[DockerContainer]:
        return await self.journal.run_read(rec.read_all)  # type: ignore[return-value]

    async def resolve(self, ref: str) -> DockerContainer:
        def q(conn: sqlite3.Connection) -> tuple[builtins.list[str], DockerContainer | None]:
            ids = rec.lookup(conn, ref)
            return ids, (rec.read(conn, ids[0]) if len(ids) == 1 else None)

        found: tuple[builtins.list[str], DockerContainer | None] = await self.journal.run_read(q)  # type: ignore[assignment]
        ids, c = found
        if len(ids) > 1:
            raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        if c is None:
            raise NotFound(f"No such container: {ref}")
        return c

    # ---- images -------------------------------------------------------------------------------------
    async def find_image(self, ref: str) -> image_unpack.Resolved:
        """An image by reference, by ID (``sha256:…``) or by a unique ID prefix, in namespace moby."""
        assert self.services.images is not None
        name = ""
        with contextlib.suppress(EngineError):
            parsed = parse_ref(ref)
            name = str(parsed)
        if name:
            with contextlib.suppress(NotFound):
                return await image_unpack.resolve(self.services, NAMESPACE, name)
        hexpart = ref[len("sha256:"):] if ref.startswith("sha256:") else ref
        if hexpart and len(hexpart) <= 64 and all(ch in "0123456789abcdef" for ch in hexpart):
            for img in await self.services.images.list(NAMESPACE):
                with contextlib.suppress(EngineError):
                    r = await image_unpack.resolve(self.services, NAMESPACE, img.name)
                    if r.config_digest[len("sha256:"):].startswith(hexpart):
                        return r
        shown = ref
        with contextlib.suppress(EngineError):
            shown = parse_ref(ref).familiar()
        raise NotFound(f"No such image: {shown}")

    # ---- create -------------------------------------------------------------------------------------
    async def create(self, body: Any, *, name: str = "", actor: str) -> tuple[DockerContainer, builtins.list[str]]:
        """Docker's POST /containers/create; returns the record and warnings."""
        if not isinstance(body, dict):
            raise InvalidArgument("config cannot be empty in order to create a container")
        hostconfig.check_types(body, hostconfig.CONFIG_TYPES, "ContainerConfigWrapper")
        hc_in = body.get("HostConfig") or {}
        if not isinstance(hc_in, dict):
            raise InvalidArgument("json: cannot unmarshal into Go struct field ContainerConfigWrapper.HostConfig "
                                  "of type container.HostConfig")
        hostconfig.check_types(hc_in, hostconfig.HOST_CONFIG_TYPES, "HostConfig")
        cfg_in = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        image_ref = cfg_in.get("Image") or ""
        if not image_ref:
            raise InvalidArgument("no image specified")
        full_name = names.validate(name) if name else ""
        hostconfig.validate_config(cfg_in)
        hostconfig.validate_host_config(hc_in)
        cfgd = self.services.config
        hc = hostconfig.normalise_host_config(hc_in, log_driver=cfgd.log_driver, log_opts=dict(cfgd.log_opts),
                                              shm_default=_size(cfgd.default_shm_size), runtime=cfgd.default_runtime)
        if hc.get("Init") is None and cfgd.init:
            hc["Init"] = True
        specmod.capabilities(hc)  # unknown capabilities are a 400 now, not at start
        runtime_options(cfgd, hc.get("Runtime") or "")  # and an unknown runtime
        points = mountmod.parse_binds(hc.get("Binds") or []) + mountmod.parse_mounts(hc.get("Mounts") or [])
        mountmod.check_duplicates(points, hc.get("Tmpfs"))
        points += await self._volumes_from(hc.get("VolumesFrom") or [], points)
        await self._check_network(hc)
        networking = body.get("NetworkingConfig") or {}
        if not isinstance(networking, dict):
            raise InvalidArgument("json: cannot unmarshal into Go struct field ContainerConfigWrapper.NetworkingConfig "
                                  "of type network.NetworkingConfig")
        resolved = await self.find_image(image_ref)
        image_cfg = (json.loads(resolved.config_raw) or {}).get("config") or {}
        cfg = hostconfig.merge_image(cfg_in, image_cfg if isinstance(image_cfg, dict) else {})
        cfg["Image"] = image_ref
        path, args = hostconfig.command(cfg)
        cid = secrets.token_hex(32)
        directory = self.root / cid
        net = hc.get("NetworkMode")
        c = DockerContainer(
            id=cid, name=full_name, image=image_ref, image_id=resolved.config_digest, image_ref=resolved.name,
            config=cfg, host_config=hc, path=path, args=args, directory=str(directory),
            log_path=str(directory / f"{cid}-json.log") if hc["LogConfig"]["Type"] != "none" else "",
            hostname_path=str(directory / "hostname"), hosts_path=str(directory / "hosts"),
            resolv_path=str(directory / "resolv.conf"), snapshotter=SNAPSHOTTER,
            volumes=[p.name for p in points if p.type == "volume" and p.name], networking=networking)
        if net == "host" and not cfg.get("Hostname"):
            cfg["Hostname"] = os.uname().nodename

        def decide(tx: sqlite3.Cursor) -> builtins.list[Any]:
            n = c.name
            if n:
                holder = rec.by_name(tx, n)
                if holder is not None:
                    raise Conflict(conflict_message(n, holder))
            else:
                n = names.generate(lambda x: rec.by_name(tx, x) is not None)
            c.name = n
            return [rec.DockerContainerCreateRequested(id=cid, container=c)]

        await self.journal.append(decide, namespace=NAMESPACE, actor=actor)
        undo: builtins.list[Any] = []
        try:
            await self._materialise(c, resolved, points, undo, actor=actor)
        except BaseException as err:
            await asyncio.shield(self._undo_create(c, undo, err, actor=actor))
            raise
        if _FAULT == "create:materialised":  # crash tests: everything made, the outcome not journaled
            os.kill(os.getpid(), signal.SIGKILL)
        await self.journal.append([rec.DockerContainerCreated(id=cid, name=c.name, image=image_ref,
                                                              labels=dict(cfg.get("Labels") or {}),
                                                              mounts=c.mounts, volumes=c.volumes)],
                                  namespace=NAMESPACE, actor=actor)
        warnings = []
        if (hc.get("MemorySwap") or 0) > 0 and not os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"):
            warnings.append("Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
                            "Memory limited without swap.")
        return await self.get(cid), warnings

    async def _volumes_from(self, specs: builtins.list[str],
                            have: builtins.list[mountmod.MountPoint]) -> builtins.list[mountmod.MountPoint]:
        """``--volumes-from CONTAINER[:ro|rw]``: that container's volumes and binds (not its tmpfs), with its
        modes unless ro/rw is given, where this container mounts nothing at the same destination."""
        out: builtins.list[mountmod.MountPoint] = []
        for spec in specs:
            ref, _, mode = spec.partition(":")
            if mode not in ("", "ro", "rw") or not ref:
                raise InvalidArgument(f"invalid mode for volumes-from: {spec}")
            other = await self.resolve(ref)
            for m in other.mounts:
                p = mountmod.MountPoint(**m)
                if p.type == "tmpfs" or any(q.destination == p.destination for q in [*have, *out]):
                    continue
                if mode:
                    p.rw = mode == "rw"
                p.create_source = False
                out.append(p)
        return out

    async def _check_network(self, hc: dict[str, Any]) -> None:
        mode = hc.get("NetworkMode") or "bridge"
        if mode.startswith("container:"):
            other = await self.resolve(mode[len("container:"):])
            hc["NetworkMode"] = "container:" + other.id
            return
        await netattach.check(self.services, hc)

    async def _materialise(self, c: DockerContainer, resolved: image_unpack.Resolved,
                           points: builtins.list[mountmod.MountPoint], undo: builtins.list[Any], *, actor: str) -> None:
        s = self.services
        assert s.snapshots is not None and s.containers is not None
        await asyncio.to_thread(self._write_files, c)
        undo.append(("dir", c.directory))
        for p in points:
            if p.type == "bind" and p.create_source and not os.path.exists(p.source):
                await asyncio.to_thread(os.makedirs, p.source, 0o755, True)
        for p in points:
            if p.type == "volume":
                assert s.volumes is not None
                if not p.name:
                    p.name = (await s.volumes.create(actor=actor)).name
                    c.volumes.append(p.name)
                else:
                    with contextlib.suppress(NotFound):
                        await s.volumes.get(p.name)
                        await s.volumes.reference(p.name, c.id, actor=actor)
                        undo.append(("volume", p.name))
                        continue
                    await s.volumes.create(p.name, actor=actor)
                await s.volumes.reference(p.name, c.id, actor=actor)
                undo.append(("volume", p.name))
        for dest in (c.config.get("Volumes") or {}):  # the image's VOLUMEs: anonymous volumes
            if any(os.path.normpath(dest) == p.destination for p in points) or dest in (c.host_config.get("Tmpfs") or {}):
                continue
            if s.volumes is None:
                break
            v = await s.volumes.create(actor=actor)
            await s.volumes.reference(v.name, c.id, actor=actor)
            undo.append(("volume", v.name))
            c.volumes.append(v.name)
            points.append(mountmod.MountPoint("volume", "", os.path.normpath(dest), True, "", "", name=v.name))
        await s.snapshots.prepare(SNAPSHOTTER, c.id, resolved.chain_id, namespace=NAMESPACE, actor=actor)
        undo.append(("snapshot", c.id))
        c.mounts = [dict(p.__dict__) for p in points]
        spec = specmod.build(c, specmod.Context(cgroup_parent=s.config.cgroup_parent,
                                                mounts=[p.oci() for p in points if p.type != "volume"]))
        await s.containers.create(NAMESPACE, Container(
            id=c.id, labels={k: v for k, v in (c.config.get("Labels") or {}).items()}, image=resolved.name,
            runtime=Runtime(name=RUNTIME), spec=AnyBlob(OCI_SPEC_TYPE_URL, json.dumps(spec).encode()),
            snapshotter=SNAPSHOTTER, snapshot_key=c.id), actor=actor)
        undo.append(("container", c.id))

    def _write_files(self, c: DockerContainer) -> None:
        d = Path(c.directory)
        d.mkdir(parents=True, mode=0o710)
        hc, cfg = c.host_config, c.config
        hostname = cfg.get("Hostname") or c.id[:12]
        host_net = hc.get("NetworkMode") == "host"
        (d / "hostname").write_text(hostname + "\n")
        if host_net:
            try:
                hosts = Path("/etc/hosts").read_text()
            except OSError:
                hosts = HOSTS
        else:
            hosts = HOSTS
        for extra in hc.get("ExtraHosts") or []:
            host, _, ip = extra.partition(":")
            if not ip:
                host, _, ip = extra.partition("=")
            hosts += f"{ip}\t{host}\n"
        (d / "hosts").write_text(hosts)
        (d / "resolv.conf").write_text(resolv_conf(hc, self.services.config, host_net))
        if c.log_path:
            fd = os.open(c.log_path, os.O_CREAT | os.O_WRONLY, 0o640)
            os.close(fd)

    async def _undo_create(self, c: DockerContainer, undo: builtins.list[Any], err: BaseException, *, actor: str) -> None:
        s = self.services
        for kind, what in reversed(undo):
            try:
                if kind == "container":
                    assert s.containers is not None
                    await s.containers.delete(NAMESPACE, what, actor=actor)
                elif kind == "snapshot":
                    assert s.snapshots is not None
                    await s.snapshots.remove(SNAPSHOTTER, what, namespace=NAMESPACE, actor=actor)
                elif kind == "volume":
                    assert s.volumes is not None
                    await s.volumes.dereference_all(c.id, actor=actor, remove_anonymous=True)
                elif kind == "dir":
                    await asyncio.to_thread(shutil.rmtree, what, True)
            except Exception:  # keep undoing what can be undone
                pass
        await self.journal.append([rec.DockerContainerCreateFailed(id=c.id, error=str(err)[:1024] or repr(err))],
                                  namespace=NAMESPACE, actor=actor)

    # ---- rename, update ----------------------------------------------------------------------------
    async def rename(self, ref: str, new_name: str, *, actor: str) -> None:
        c = await self.resolve(ref)
        if not new_name:
            raise InvalidArgument("Neither old nor new names may be empty")
        full = names.validate(new_name)
        if full == c.name:
            raise InvalidArgument("Renaming a container with the same name as its current name")

        def check(tx: sqlite3.Cursor) -> None:
            holder = rec.by_name(tx, full)
            if holder is not None:
                raise Conflict(conflict_message(full, holder))

        await self.journal.append([rec.DockerContainerRenamed(id=c.id, name=full, old_name=c.name)],
                                  namespace=NAMESPACE, actor=actor, check=check)

    async def update(self, ref: str, body: Any, *, actor: str) -> builtins.list[str]:
        """``docker update``: resources (applied to the running task) and the restart policy."""
        if not isinstance(body, dict):
            raise InvalidArgument("invalid update config: expected a JSON object")
        hostconfig.check_types(body, hostconfig.HOST_CONFIG_TYPES, "UpdateConfig")
        c = await self.resolve(ref)
        async with self.lock(c.id):
            c = await self.get(c.id)
            if c.state.status in (rec.REMOVING, rec.DEAD):
                raise Conflict(f"Cannot update container {c.id}: container is marked for removal and cannot be "
                               "\"update\"")
            hc = dict(c.host_config)
            for k, v in body.items():
                if k in hostconfig.HOST_CONFIG_TYPES and k != "RestartPolicy" and v is not None:
                    hc[k] = v
            if body.get("Memory") and not body.get("MemorySwap") and \
                    0 < (c.host_config.get("MemorySwap") or 0) < body["Memory"]:
                raise InvalidArgument("Memory limit should be smaller than already set memoryswap limit, update "
                                          "the memoryswap at the same time")
            if body.get("RestartPolicy") is not None:
                hc["RestartPolicy"] = body["RestartPolicy"]
            if hc.get("AutoRemove") and body.get("RestartPolicy") and (body["RestartPolicy"].get("Name") or "no") != "no":
                raise InvalidArgument("Restart policy cannot be updated because AutoRemove is enabled for the "
                                      "container")
            hostconfig.validate_host_config({k: v for k, v in hc.items() if k != "AutoRemove"})
            if body.get("RestartPolicy") is not None:
                hc["RestartPolicy"] = {"Name": body["RestartPolicy"].get("Name") or "no",
                                       "MaximumRetryCount": body["RestartPolicy"].get("MaximumRetryCount") or 0}
            if c.state.running and self.services.tasks is not None:
                res = specmod.resources(hc)
                if res:
                    try:
                        await self.services.tasks.update(NAMESPACE, c.id, res, actor=actor)
                    except EngineError as err:
                        raise InvalidArgument(f"Cannot update container {c.id}: {err}") from err
            await self.journal.append([rec.DockerContainerUpdated(id=c.id, host_config=hc)],
                                      namespace=NAMESPACE, actor=actor)
        return []

    # ---- recovery -----------------------------------------------------------------------------------
    def run_background(self) -> None:
        """At daemon start: the exit monitor, then (in the background) ``recover``."""
        self.start_monitor()
        self._spawn(self.recover())

    async def recover(self, *, actor: str = "daemon") -> None:
        """Finish creates cut by a crash (undo them), then the lifecycle's own recovery."""
        for c in await self.journal.run_read(rec.read_creating):  # type: ignore[attr-defined]
            undo = [("dir", c.directory), ("volume", ""), ("snapshot", c.id)]
            with contextlib.suppress(EngineError):
                assert self.services.containers is not None
                await self.services.containers.get(NAMESPACE, c.id)
                undo.append(("container", c.id))
            await self._undo_create(c, undo, RuntimeError("the daemon stopped during the create"), actor=actor)
        await self.recover_lifecycle(actor=actor)


def _size(v: str) -> int:
    try:
        return hostconfig.log_max_size(v)
    except InvalidArgument:
        return hostconfig.DEFAULT_SHM


def resolv_conf(hc: dict[str, Any], cfg: Any, host_net: bool) -> str:
    """The container's /etc/resolv.conf: the host's, loopback name servers left out (they cannot answer in
    another network namespace), Dns/DnsSearch/DnsOptions (the container's, else the daemon's) instead."""
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        lines = []
    servers, search, options, other = [], [], [], []
    for line in lines:
        parts = line.split()
        if not parts or parts[0].startswith(("#", ";")):
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            servers.append(parts[1])
        elif parts[0] in ("search", "domain"):
            search = parts[1:]
        elif parts[0] == "options":
            options = parts[1:]
        else:
            other.append(line)
    if not host_net:
        servers = [s for s in servers if not s.startswith("127.") and s != "::1"]
    servers = list(hc.get("Dns") or cfg.dns or servers) or ["8.8.8.8", "8.8.4.4"]
    search = list(hc.get("DnsSearch") or cfg.dns_search or search)
    options = list(hc.get("DnsOptions") or cfg.dns_opts or options)
    out = [f"nameserver {s}" for s in servers]
    if search:
        out.append("search " + " ".join(search))
    if options:
        out.append("options " + " ".join(options))
    return "\n".join(out + other) + "\n"
