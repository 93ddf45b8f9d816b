"""Docker volumes with the local driver: named and anonymous, plain directories or mounts from options.

A volume's data is ``<root>/volumes/<name>/_data``. With driver options (``type``, ``device``, ``o``, as
Docker's local driver: ``type=tmpfs device=tmpfs o=size=64m``, ``type=none o=bind device=/srv/x``) that
directory is a mount point, mounted at the first container's start and unmounted after the last one
stopped. Containers reference the volumes they use from their creation to their removal
(``volume.referenced``/``volume.dereferenced``), so a volume in use cannot be removed, and a running
container's use is recorded with the mount (``volume.mounted``/``volume.unmounted``).

Events (journal namespace ``moby``, as all Docker objects): ``volume.created``, ``volume.removed``,
``volume.referenced``, ``volume.dereferenced``, ``volume.mounted``, ``volume.unmounted``,
``volume.populated`` (an image's content copied into a new, empty volume: Docker's copy-up).

Design choices:

* Names follow Docker's rule for local volumes; an anonymous volume gets 64 random hex characters and
  the label ``com.docker.volume.anonymous`` (Docker ≥ 23), and prune removes only anonymous volumes
  unless asked for all, as Docker does.
* Creating a volume that exists with the same driver returns it (``docker volume create x`` is
  idempotent); options are checked before anything is journaled, and the directory is made after the
  ``volume.created`` event (recovery makes any that are missing; it is only a directory).
* A remove journals ``volume.removed`` (refused inside the transaction while referenced), then deletes
  the directory; a crash in between leaves a directory that no row knows, which recovery removes.
* Mounts with options are idempotent against the kernel's mount table: recovery unmounts the mounts of
  volumes that no running container uses and journals it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, cast

import msgspec

from engine.errors import AlreadyExists, Conflict, EngineError, InvalidArgument, NotFound
from engine.events.journal import Journal
from engine.events.projection import Projection
from engine.events.types import Envelope, Event
from engine.filters import docker_labels_match as labels_match
from engine.services.namespaces import validate_labels

NAMESPACE = "moby"
DRIVER = "local"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
LOCAL_OPTIONS = frozenset({"type", "device", "o", "size"})
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class VolumeCreated(Event, frozen=True):
    TYPE: ClassVar[str] = "volume.created"
    SUBJECT: ClassVar[str] = "name"
    name: str
    driver: str = DRIVER
    options: dict[str, str] = {}
    labels: dict[str, str] = {}
    anonymous: bool = False


class VolumeRemoved(Event, frozen=True):
    TYPE: ClassVar[str] = "volume.removed"
    SUBJECT: ClassVar[str] = "name"
    name: str


class VolumeReferenced(Event, frozen=True):
    TYPE: ClassVar[str] = "volume.referenced"
    SUBJECT: ClassVar[str] = "name"
    name: str
    container: str


class VolumeDereferenced(Event, frozen=True):
    TYPE: ClassVar[str] = "volume.dereferenced"
    SUBJECT: ClassVar[str] = "name"
    name: str
    container: str


class VolumeMounted(Event, frozen=True):
    """A container started with the volume; `mounted_now` when this start made the kernel mount."""

    TYPE: ClassVar[str] = "volume.mounted"
    SUBJECT: ClassVar[str] = "name"
    name: str
    container: str
    destination: str = ""
    read_write: bool = True
    mounted_now: bool = False


class VolumeUnmounted(Event, frozen=True):
    TYPE: ClassVar[str] = "volume.unmounted"
    SUBJECT: ClassVar[str] = "name"
    name: str
    container: str = ""  # "" for recovery's cleanup of a mount no running container used
    unmounted_now: bool = False


class VolumePopulated(Event, frozen=True):
    TYPE: ClassVar[str] = "volume.populated"
    SUBJECT: ClassVar[str] = "name"
    name: str
    source: str  # what was copied in (the image path inside the container's rootfs)
    container: str = ""


_codec = (msgspec.json.Encoder(), msgspec.json.Decoder(dict[str, str]))


def apply(env: Envelope, tx: sqlite3.Cursor) -> None:
    ev = env.event
    if isinstance(ev, VolumeCreated):
        tx.execute("INSERT INTO volumes(name, driver, options, labels, anonymous, created_ns) VALUES (?, ?, ?, ?, ?, ?)",
                   (ev.name, ev.driver, _codec[0].encode(ev.options).decode(),
                    _codec[0].encode(ev.labels).decode(), int(ev.anonymous), env.time_ns))
    elif isinstance(ev, VolumeRemoved):
        tx.execute("DELETE FROM volumes WHERE name = ?", (ev.name,))
        tx.execute("DELETE FROM volume_refs WHERE name = ?", (ev.name,))
    elif isinstance(ev, VolumeReferenced):
        tx.execute("INSERT OR IGNORE INTO volume_refs(name, container, mounted) VALUES (?, ?, 0)",
                   (ev.name, ev.container))
    elif isinstance(ev, VolumeDereferenced):
        tx.execute("DELETE FROM volume_refs WHERE name = ? AND container = ?", (ev.name, ev.container))
    elif isinstance(ev, VolumeMounted):
        tx.execute("UPDATE volume_refs SET mounted = 1 WHERE name = ? AND container = ?", (ev.name, ev.container))
    elif isinstance(ev, VolumeUnmounted) and ev.container:
        tx.execute("UPDATE volume_refs SET mounted = 0 WHERE name = ? AND container = ?",
                   (ev.name, ev.container))


PROJECTION = Projection(
    name="volumes",
    tables=("volumes", "volume_refs"),
    events=(VolumeCreated, VolumeRemoved, VolumeReferenced, VolumeDereferenced, VolumeMounted, VolumeUnmounted,
            VolumePopulated),
    apply=apply,
)


@dataclass
class Volume:
    name: str
    driver: str
    options: dict[str, str]
    labels: dict[str, str]
    anonymous: bool
    created_ns: int
    mountpoint: str
    refs: list[str]  # containers referencing it
    mounted_by: list[str]  # running containers using it


def validate_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path')
    return name


def validate_options(name: str, options: dict[str, str]) -> dict[str, str]:
    for key in options:
        if key not in LOCAL_OPTIONS:
            raise InvalidArgument(f"create {name}: invalid option: {key!r}")
    if "size" in options:
        raise InvalidArgument(f"create {name}: quota size requested but no quota support")
    if options and not options.get("type"):
        raise InvalidArgument(f"create {name}: missing required option: \"type\"")
    if options.get("type") not in (None, "none") and not options.get("device"):
        raise InvalidArgument(f"create {name}: missing required option: \"device\"")
    if options.get("type") == "none" and "bind" in options.get("o", "").split(","):
        dev = options.get("device", "")
        if not dev.startswith("/") or not os.path.isdir(dev):
            raise InvalidArgument(f"create {name}: failed to mount local volume: mount {dev}: no such file or directory")
    return dict(options)


def _read(conn: sqlite3.Connection | sqlite3.Cursor, root: Path, name: str) -> Volume | None:
    row = conn.execute("SELECT name, driver, options, labels, anonymous, created_ns FROM volumes WHERE name = ?",
                       (name,)).fetchone()
    if row is None:
        return None
    refs = conn.execute("SELECT container, mounted FROM volume_refs WHERE name = ? ORDER BY container",
                        (name,)).fetchall()
    return Volume(row[0], row[1], _codec[1].decode(row[2]), _codec[1].decode(row[3]), bool(row[4]), row[5],
                  str(root / row[0] / "_data"), [c for c, _ in refs], [c for c, m in refs if m])


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


class VolumeService:
    """Docker's volumes (local driver); see the module docstring."""

    def __init__(self, journal: Journal, root: str | os.PathLike[str]) -> None:
        self.journal = journal
        self.root = Path(root) / "volumes"
        self.root.mkdir(mode=0o701, parents=True, exist_ok=True)
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def path(self, name: str) -> Path:
        return self.root / name / "_data"

    async def create(self, name: str = "", *, driver: str = DRIVER, options: dict[str, str] | None = None,
                     labels: dict[str, str] | None = None, actor: str) -> Volume:
        anonymous = not name
        if anonymous:
            name = secrets.token_hex(32)
            labels = {**(labels or {}), ANONYMOUS_LABEL: ""}
        validate_name(name)
        if driver not in (DRIVER, ""):
            raise NotFound(f'create {name}: error looking up volume plugin {driver}: plugin "{driver}" not found')
        options = validate_options(name, options or {})
        labels = validate_labels(labels or {})
        existing: list[Volume] = []

        def decide(tx: sqlite3.Cursor) -> list[Event]:
            cur = _read(tx, self.root, name)
            if cur is not None:
                if cur.options != options and options:
                    raise AlreadyExists(f"create {name}: volume already exists with different options")
                existing.append(cur)
                raise _Exists(name)
            return [VolumeCreated(name=name, driver=DRIVER, options=options, labels=labels, anonymous=anonymous)]

        async with self._lock(name):
            try:
                await self.journal.append(decide, namespace=NAMESPACE, actor=actor)
            except _Exists:
                return existing[0]
            await asyncio.to_thread(self._make_dir, name)
        return await self.get(name)

    def _make_dir(self, name: str) -> None:
        (self.root / name).mkdir(mode=0o701, exist_ok=True)
        self.path(name).mkdir(mode=0o755, exist_ok=True)

    async def get(self, name: str) -> Volume:
        v = await self.journal.run_read(lambda c: _read(c, self.root, name))
        if v is None:
            raise NotFound(f"get {name}: no such volume")
        return v  # type: ignore[return-value]

    async def list(self) -> builtins.list[Volume]:
        def q(conn: sqlite3.Connection) -> builtins.list[Volume]:
            names = [r[0] for r in conn.execute("SELECT name FROM volumes ORDER BY name")]
            return [v for n in names if (v := _read(conn, self.root, n)) is not None]

        return await self.journal.run_read(q)  # type: ignore[return-value]

    async def remove(self, name: str, *, force: bool = False, actor: str) -> None:
        def check(tx: sqlite3.Cursor) -> None:
            v = _read(tx, self.root, name)
            if v is None:
                raise NotFound(f"get {name}: no such volume")
            if v.refs:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(v.refs)}]")

        async with self._lock(name):
            try:
                await self.journal.append([VolumeRemoved(name=name)], namespace=NAMESPACE, actor=actor, check=check)
            except NotFound:
                if force:
                    return
                raise
            await asyncio.to_thread(self._remove_dir, name)
        self._locks.pop(name, None)

    def _remove_dir(self, name: str) -> None:
        data = str(self.path(name))
        if os.path.exists(data) and _mounted(data):
            subprocess.run(["umount", "-l", data], capture_output=True)
        shutil.rmtree(self.root / name, ignore_errors=True)

    async def prune(self, *, all_volumes: bool = False, labels: builtins.list[str] | None = None,
                    actor: str) -> tuple[builtins.list[str], int]:
        """Remove unreferenced volumes (only anonymous ones unless `all_volumes`); (names, bytes freed)."""
        removed, freed = [], 0
        for v in await self.list():
            if v.refs or (not all_volumes and not v.anonymous):
                continue
            if labels and not labels_match(v.labels, labels):
                continue
            size = await asyncio.to_thread(dir_size, v.mountpoint)
            with contextlib.suppress(NotFound, Conflict):
                await self.remove(v.name, actor=actor)
                removed.append(v.name)
                freed += size
        return removed, freed

    # ---- the container side -----------------------------------------------------------------

    async def reference(self, name: str, container: str, *, actor: str) -> Volume:
        def check(tx: sqlite3.Cursor) -> None:
            if _read(tx, self.root, name) is None:
                raise NotFound(f"get {name}: no such volume")

        await self.journal.append([VolumeReferenced(name=name, container=container)], namespace=NAMESPACE,
                                  actor=actor, check=check)
        return await self.get(name)

    async def dereference_all(self, container: str, *, actor: str, remove_anonymous: bool = False) -> builtins.list[str]:
        """Drop every reference of `container`; with `remove_anonymous` (``docker rm -v``) remove its anonymous
        volumes that nothing else references. Returns the names removed."""
        names = cast(builtins.list[str], await self.journal.run_read(lambda c: [r[0] for r in c.execute(
            "SELECT name FROM volume_refs WHERE container = ? ORDER BY name", (container,))]))
        if not names:
            return []
        await self.journal.append([VolumeDereferenced(name=n, container=container) for n in names],
                                  namespace=NAMESPACE, actor=actor)
        removed = []
        if remove_anonymous:
            for n in names:
                with contextlib.suppress(NotFound, Conflict):
                    v = await self.get(n)
                    if v.anonymous:
                        await self.remove(n, actor=actor)
                        removed.append(n)
        return removed

    async def mount(self, name: str, container: str, *, destination: str = "", read_write: bool = True,
                    actor: str) -> str:
        """The host path to bind into `container` (mounting the volume's device first if it has options)."""
        async with self._lock(name):
            v = await self.get(name)
            if container not in v.refs:
                await self.reference(name, container, actor=actor)
            now = False
            if v.options:
                await asyncio.to_thread(self._make_dir, name)
                if not await asyncio.to_thread(_mounted, v.mountpoint):
                    await asyncio.to_thread(self._mount_device, v)
                    now = True
            await self.journal.append([VolumeMounted(name=name, container=container, destination=destination,
                                                     read_write=read_write, mounted_now=now)],
                                      namespace=NAMESPACE, actor=actor)
            return v.mountpoint

    def _mount_device(self, v: Volume) -> None:
        o = v.options
        argv = ["mount", "-t", o["type"]] if o.get("type") not in (None, "none") else ["mount"]
        if o.get("o"):
            argv += ["-o", o["o"]]
        argv += [o.get("device", "none"), v.mountpoint]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise InvalidArgument(f"error while mounting volume '{v.mountpoint}': failed to mount local volume: "
                                  f"{proc.stderr.strip() or proc.returncode}")

    async def unmount(self, name: str, container: str, *, actor: str) -> None:
        async with self._lock(name):
            try:
                v = await self.get(name)
            except NotFound:
                return
            if container not in v.mounted_by:
                return
            now = False
            others = [c for c in v.mounted_by if c != container]
            if v.options and not others and await asyncio.to_thread(_mounted, v.mountpoint):
                await asyncio.to_thread(subprocess.run, ["umount", v.mountpoint], capture_output=True)
                now = True
            await self.journal.append([VolumeUnmounted(name=name, container=container, unmounted_now=now)],
                                      namespace=NAMESPACE, actor=actor)

    async def populate(self, name: str, source: Path, *, container: str = "", actor: str) -> bool:
        """Docker's copy-up: copy `source` (a directory of the container's image) into the volume when the
        volume is empty; returns whether anything was copied."""
        v = await self.get(name)
        data = Path(v.mountpoint)
        if not source.is_dir() or any(data.iterdir()):
            return False
        await asyncio.to_thread(copy_tree, source, data)
        await self.journal.append([VolumePopulated(name=name, source=str(source), container=container)],
                                  namespace=NAMESPACE, actor=actor)
        return True

    async def recover(self, running: set[str], *, actor: str) -> None:
        """After a restart: make missing directories, remove directories no row knows, and release the mounts
        of containers that are not running any more."""
        volumes = {v.name: v for v in await self.list()}
        for name, v in volumes.items():
            await asyncio.to_thread(self._make_dir, name)
            for c in v.mounted_by:
                if c not in running:
                    await self.unmount(name, c, actor=actor)
        for entry in await asyncio.to_thread(lambda: list(self.root.iterdir())):
            if entry.name not in volumes and entry.is_dir():
                await asyncio.to_thread(self._remove_dir, entry.name)


class _Exists(EngineError):
    """The volume exists already (create returns it; nothing is journaled)."""


def dir_size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a directory's content with modes, owners, times and xattrs (``cp -a`` semantics)."""
    subprocess.run(["cp", "-a", "--", f"{src}/.", str(dst)], check=True, capture_output=True)
