"""Paths inside a container's root file system, seen from the host, without ever leaving it.

``resolve(root, path)`` is the host path of the container path ``path``: every component is looked at
with ``lstat`` and a symlink is followed *as the container would*: an absolute target restarts from
``root``, ``..`` never climbs above ``root`` (``/..`` is ``/``), at most 255 links. So a link
``/tmp/x -> /etc`` or ``-> ../../../../etc`` made inside the container names the container's /etc, never
the host's. This is the lexical scoping of Docker's ``FollowSymlinkInScope``; like it, it is a check at
one instant: a process inside a running container could swap a component afterwards, so callers that
write open the final parent with ``O_NOFOLLOW`` and create with ``O_EXCL``/``O_NOFOLLOW``.

``mounted(services, id)`` gives the host directory of a container's root: the running task's rootfs, or
the snapshot mounted on a temporary directory while a stopped container is read or written (docker cp,
export). ``layers(services, id)`` gives the overlay upper and lower dirs for ``docker diff``.

``lookup_user(root, "name[:group]")`` resolves Docker's ``--user`` forms against the container's
/etc/passwd and /etc/group (read through ``resolve``), as the runtime must see numeric ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import tempfile
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from engine.errors import InvalidArgument, NotFound
from engine.images.snapshots import mount_all, unmount_all

if TYPE_CHECKING:
    from engine.services import Services

MAX_LINKS = 255


def clean(path: str) -> list[str]:
    """The components of a container path, '.' and '' dropped (``..`` kept: resolve handles it)."""
    return [c for c in path.split("/") if c not in ("", ".")]


def resolve(root: str, path: str, *, follow_last: bool = True) -> str:
    """The host path under `root` of container path `path`, symlinks followed within `root`."""
    root = os.path.abspath(root)
    todo = clean(path)
    done: list[str] = []
    links = 0
    while todo:
        comp = todo.pop(0)
        if comp == "..":
            if done:
                done.pop()
            continue
        cand = os.path.join(root, *done, comp)
        if not todo and not follow_last:
            done.append(comp)
            break
        try:
            st = os.lstat(cand)
        except (FileNotFoundError, NotADirectoryError):
            done.append(comp)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise InvalidArgument(f"too many levels of symbolic links in {path!r}")
            target = os.readlink(cand)
            if target.startswith("/"):
                done = []
            todo = clean(target) + todo
            continue
        done.append(comp)
    return os.path.join(root, *done) if done else root


def container_path(root: str, host_path: str) -> str:
    """The container path of a host path under `root` (the inverse of resolve)."""
    rel = os.path.relpath(host_path, os.path.abspath(root))
    return "/" if rel == "." else "/" + rel


def _read(root: str, name: str) -> list[list[str]]:
    try:
        with open(resolve(root, name), encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        return []


def lookup_user(root: str, user: str) -> tuple[int, int, list[int]]:
    """(uid, gid, additional gids) for Docker's user forms: ``name``, ``uid``, ``name:group``, ``uid:gid``."""
    name, _, group = user.partition(":")
    passwd = _read(root, "/etc/passwd")
    groups = _read(root, "/etc/group")
    uid, gid, username = 0, 0, ""
    if name.isdigit():
        uid = int(name)
        for p in passwd:
            if len(p) >= 4 and p[2] == name:
                gid, username = int(p[3]) if p[3].isdigit() else 0, p[0]
                break
    elif name:
        for p in passwd:
            if len(p) >= 4 and p[0] == name:
                uid, gid, username = int(p[2]), int(p[3]) if p[3].isdigit() else 0, name
                break
        else:
            raise NotFound(f"unable to find user {name}: no matching entries in passwd file")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for g in groups:
                if len(g) >= 3 and g[0] == group:
                    gid = int(g[2])
                    break
            else:
                raise NotFound(f"unable to find group {group}: no matching entries in group file")
    extra = []
    if username and not group:
        for g in groups:
            if len(g) >= 4 and username in g[3].split(",") and g[2].isdigit() and int(g[2]) != gid:
                extra.append(int(g[2]))
    return uid, gid, extra


# ---- the container's root file system on the host -----------------------------------------------------
@contextlib.asynccontextmanager
async def mounted(services: Services, container_id: str, namespace: str = "moby", *,
                  with_mounts: bool = False) -> AsyncIterator[str]:
    """The host directory of the container's root: the running task's mounted rootfs, or else its
    snapshot mounted on a private temporary directory for the duration (a stopped container).

    `with_mounts`: for a running container, its init's ``/proc/<pid>/root`` instead, the root as the
    container sees it, with its volumes and bind mounts (docker cp reaches into those; export does not)."""
    assert services.tasks is not None and services.containers is not None and services.snapshots is not None
    live = ""
    with contextlib.suppress(NotFound):  # (never around a yield: it would swallow the caller's NotFound)
        t = await services.tasks.get(namespace, container_id)
        root = os.path.join(t.bundle, "rootfs") if t.bundle else ""
        if with_mounts and t.status in ("running", "paused") and t.pid > 0 and os.path.isdir(f"/proc/{t.pid}/root/"):
            live = f"/proc/{t.pid}/root"
        elif t.status in ("created", "running", "paused") and root and t.mounts and os.path.ismount(root):
            live = root  # (a stopped task's rootfs is about to be unmounted by its clean-up: not that one)
    if live:
        yield live
        return
    c = await services.containers.get(namespace, container_id)
    if not c.snapshot_key:
        raise NotFound(f"container {container_id} has no root file system")
    mounts = await services.snapshots.mounts(c.snapshotter or "overlayfs", c.snapshot_key, namespace=namespace)
    base = os.path.join(services.config.exec_root, "docker-rootfs")
    os.makedirs(base, mode=0o700, exist_ok=True)
    target = tempfile.mkdtemp(prefix=container_id[:12] + "-", dir=base)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, mount_all, mounts, target)
        yield target
    finally:
        await loop.run_in_executor(None, unmount_all, target)
        with contextlib.suppress(OSError):
            os.rmdir(target)


def clean_stale(exec_root: str) -> None:
    """At daemon start: unmount and remove the temporary roots a killed daemon left mounted."""
    base = os.path.join(exec_root, "docker-rootfs")
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(base):
            target = os.path.join(base, name)
            unmount_all(target)
            with contextlib.suppress(OSError):
                os.rmdir(target)


async def layers(services: Services, container_id: str, namespace: str = "moby") -> tuple[str, list[str]]:
    """(upper dir, lower dirs nearest first) of the container's overlay snapshot; ("", [dir]) for a
    snapshot that is a plain directory (the native snapshotter, where changes cannot be told apart)."""
    assert services.containers is not None and services.snapshots is not None
    c = await services.containers.get(namespace, container_id)
    mounts = await services.snapshots.mounts(c.snapshotter or "overlayfs", c.snapshot_key, namespace=namespace)
    for m in mounts:
        if m.type == "overlay":
            upper, lowers = "", []
            for opt in m.options:
                if opt.startswith("upperdir="):
                    upper = opt[len("upperdir="):]
                elif opt.startswith("lowerdir="):
                    lowers = opt[len("lowerdir="):].split(":")
            return upper, lowers
    return "", [m.source for m in mounts if m.type == "bind"]
