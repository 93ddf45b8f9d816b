"""``docker cp`` and ``docker export``: ``HEAD|GET|PUT /containers/{id}/archive`` and ``GET /containers/{id}/export``.

Paths are container paths resolved on the host under the container's root with every symlink followed
*inside* it (engine/services/dockerd/rootfs.py): a link to ``/etc`` or ``../../..`` names the
container's directories, never the host's. As dockerd, the last component of a path to read is not
followed (``docker cp c:/link`` copies the link; its target is reported in ``linkTarget``) unless the
path ends in ``/`` or ``/.``; the destination of an extraction is followed and must be a directory.

A running container is read and written through its init's ``/proc/<pid>/root``, so volumes and bind
mounts are seen as the container sees them; a stopped container works too: its snapshot is mounted on
a temporary directory for the request.

* Reading streams GNU tar's output (``--numeric-owner``, entries rebased on the path's base name, as
  dockerd's ``TarResourceRebase``); the stat goes in ``X-Docker-Container-Path-Stat`` (base64 JSON
  ``{name, size, mode (Go's FileMode bits), mtime, linkTarget}``).
* Extracting is our own loop over the tar members in a worker thread: each member's parent is resolved
  inside the root, the final component is never followed (an existing symlink is replaced, not written
  through), files are created ``O_EXCL|O_NOFOLLOW``, hard links must resolve inside the root, and
  ``..`` in member names is refused. Owners become 0:0 unless ``copyUIDGID``; ``noOverwriteDirNonDir``
  refuses to replace a directory by a non-directory or the reverse.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from engine.api.docker.attach import NAMESPACE, docker
from engine.api.docker.http import Request, Response, StreamResponse
from engine.api.docker.router import Router
from engine.errors import InvalidArgument, NotFound, PermissionDenied
from engine.services import Services
from engine.services.dockerd import rootfs
from engine.services.dockerd.stream_events import ContainerExported, ContainerExtracted, ContainerPathRead

MAX_UPLOAD = 8 << 30
# Go's os.FileMode type bits
_MODE_DIR, _MODE_SYMLINK, _MODE_DEVICE, _MODE_PIPE, _MODE_SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
_MODE_SETUID, _MODE_SETGID, _MODE_CHARDEV, _MODE_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


def register(r: Router, bind: Callable[[Any], Any]) -> None:
    r.add("GET", "/containers/{id}/archive", bind(get_archive))  # HEAD too (the router adds it)
    r.add("PUT", "/containers/{id}/archive", bind(put_archive))
    r.add("GET", "/containers/{id}/export", bind(get_export))


def go_mode(st: os.stat_result) -> int:
    m = st.st_mode
    out = stat.S_IMODE(m) & 0o777
    if stat.S_ISDIR(m):
        out |= _MODE_DIR
    elif stat.S_ISLNK(m):
        out |= _MODE_SYMLINK
    elif stat.S_ISFIFO(m):
        out |= _MODE_PIPE
    elif stat.S_ISSOCK(m):
        out |= _MODE_SOCKET
    elif stat.S_ISCHR(m):
        out |= _MODE_DEVICE | _MODE_CHARDEV
    elif stat.S_ISBLK(m):
        out |= _MODE_DEVICE
    if m & stat.S_ISUID:
        out |= _MODE_SETUID
    if m & stat.S_ISGID:
        out |= _MODE_SETGID
    if m & stat.S_ISVTX:
        out |= _MODE_STICKY
    return out


def _rfc3339(ns: int) -> str:
    sec, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return base + (("." + f"{frac:09d}".rstrip("0")) if frac else "") + "Z"


def _wants_dir(path: str) -> bool:
    return path.endswith("/") or path.endswith("/.") or path == "."


def stat_path(root: str, path: str) -> tuple[str, dict[str, Any]]:
    """(host path, Docker's PathStat) of a container path; the last component is not followed."""
    host = rootfs.resolve(root, path, follow_last=_wants_dir(path))
    try:
        st = os.lstat(host)
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(path) from None
    link = ""
    if stat.S_ISLNK(st.st_mode):
        link = rootfs.container_path(root, rootfs.resolve(root, path, follow_last=True))
    name = os.path.basename(path.rstrip("/")) or "/"  # Go's filepath.Base: "/d/." is ".", "/d/" is "d"
    return host, {"name": name, "size": st.st_size, "mode": go_mode(st), "mtime": _rfc3339(st.st_mtime_ns),
                  "linkTarget": link}


def _stat_header(st: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(st, separators=(",", ":")).encode()).decode()


def _not_found(path: str, name: str) -> NotFound:
    return NotFound(f"Could not find the file {path} in container {name}")


async def _tar_stream(argv: list[str], cleanup: contextlib.AsyncExitStack) -> AsyncIterator[bytes]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        while True:
            chunk = await proc.stdout.read(1 << 16)
            if not chunk:
                break
            yield chunk
        await proc.wait()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        await cleanup.aclose()


async def get_archive(services: Services, req: Request) -> Response | StreamResponse:
    name = req.params["id"]
    c = await docker(services).resolve(name)
    path = req.arg("path", "") or ""
    if not path:
        raise InvalidArgument("Path cannot be empty")
    if not path.startswith("/"):
        path = "/" + path
    stack = contextlib.AsyncExitStack()
    try:
        root = await stack.enter_async_context(rootfs.mounted(services, c.id, with_mounts=True))
        try:
            host, st = await asyncio.get_running_loop().run_in_executor(None, stat_path, root, path)
        except FileNotFoundError:
            raise _not_found(path, name) from None
        await services.journal.append([ContainerPathRead(container_id=c.id, path=path)], namespace=NAMESPACE,
                                      actor=req.actor)
        headers = {"X-Docker-Container-Path-Stat": _stat_header(st)}
        if req.method == "HEAD":
            await stack.aclose()
            return Response(200, b"", "application/json", headers)
        if st["name"] in ("/", ".") or host.rstrip("/") == root.rstrip("/"):
            parent, base, rebase = host, ".", "."  # a directory's contents: "./…" (docker cp c:/d/. x)
        else:
            parent, base = os.path.split(host.rstrip("/"))
            rebase = st["name"]
        argv = ["tar", "--numeric-owner", "-C", parent, "-cf", "-"]
        if base != rebase and base != ".":
            argv += ["--transform", f"s|^{_sed_escape(base)}|{_sed_escape(rebase)}|"]
        argv += ["--", base]
        gen = _tar_stream(argv, stack)
    except BaseException:
        await stack.aclose()
        raise
    return StreamResponse(gen, content_type="application/x-tar", headers=headers)


def _sed_escape(s: str) -> str:
    return "".join("\\" + ch if ch in "|\\.*[]^$&" else ch for ch in s)


async def get_export(services: Services, req: Request) -> StreamResponse:
    c = await docker(services).resolve(req.params["id"])
    stack = contextlib.AsyncExitStack()
    try:
        root = await stack.enter_async_context(rootfs.mounted(services, c.id))
        names = sorted(os.listdir(root))
        await services.journal.append([ContainerExported(container_id=c.id)], namespace=NAMESPACE, actor=req.actor)
        gen = _tar_stream(["tar", "--numeric-owner", "-C", root, "-cf", "-", "--", *names], stack)
    except BaseException:
        await stack.aclose()
        raise
    return StreamResponse(gen, content_type="application/x-tar")


# ---- extraction ------------------------------------------------------------------------------------------
def _member_parts(name: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"invalid tar member {name!r}: '..' is not allowed")
    if "\x00" in name:
        raise InvalidArgument(f"invalid tar member {name!r}")
    return parts


def _remove(path: str) -> None:
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def extract(root: str, dest: str, tar_path: str, *, no_overwrite_dir_non_dir: bool, copy_uid_gid: bool) -> None:
    """Extract the tar at `tar_path` into container directory `dest` under `root` (see the docstring)."""
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    with tarfile.open(tar_path, mode="r:*") as tf:
        for m in tf:
            parts = _member_parts(m.name)
            if not parts:
                continue
            cpath = dest.rstrip("/") + "/" + "/".join(parts)
            parent = rootfs.resolve(root, os.path.dirname(cpath), follow_last=True)
            os.makedirs(parent, exist_ok=True)
            target = os.path.join(parent, parts[-1])
            try:
                old = os.lstat(target)
            except FileNotFoundError:
                old = None
            if old is not None:
                old_dir = stat.S_ISDIR(old.st_mode)
                if no_overwrite_dir_non_dir and old_dir and not m.isdir():
                    raise InvalidArgument(f"cannot overwrite directory {cpath!r} with non-directory {m.name!r}")
                if no_overwrite_dir_non_dir and not old_dir and m.isdir():
                    raise InvalidArgument(f"cannot overwrite non-directory {cpath!r} with directory {m.name!r}")
                if not (old_dir and m.isdir()):
                    _remove(target)
            if m.isdir():
                if old is None or not stat.S_ISDIR(old.st_mode):
                    os.mkdir(target, 0o700)
                dirs.append((target, m))
            elif m.isreg():
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    data = tf.extractfile(m)
                    if data is not None:
                        shutil.copyfileobj(data, out, 1 << 20)
            elif m.issym():
                os.symlink(m.linkname, target)
            elif m.islnk():
                lparts = _member_parts(m.linkname)
                src = rootfs.resolve(root, dest.rstrip("/") + "/" + "/".join(lparts), follow_last=False)
                os.link(src, target, follow_symlinks=False)
            elif m.ischr() or m.isblk():
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                os.mknod(target, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor))
            elif m.isfifo():
                os.mkfifo(target, m.mode & 0o7777)
            else:
                continue
            _set_meta(target, m, copy_uid_gid, set_mode=not m.isdir())
    for target, m in reversed(dirs):  # after their contents, so a read-only mode does not block them
        _set_meta(target, m, copy_uid_gid, set_mode=True)


def _set_meta(path: str, m: tarfile.TarInfo, copy_uid_gid: bool, *, set_mode: bool) -> None:
    uid, gid = (m.uid, m.gid) if copy_uid_gid else (0, 0)
    os.chown(path, uid, gid, follow_symlinks=False)
    if m.issym():
        with contextlib.suppress(NotImplementedError, OSError):
            os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)
        return
    if set_mode:
        os.chmod(path, m.mode & 0o7777)
    os.utime(path, (m.mtime, m.mtime))


async def put_archive(services: Services, req: Request) -> Response:
    name = req.params["id"]
    c = await docker(services).resolve(name)
    path = req.arg("path", "") or ""
    if not path:
        raise InvalidArgument("Path cannot be empty")
    if not path.startswith("/"):
        path = "/" + path
    if (c.host_config or {}).get("ReadonlyRootfs"):
        raise PermissionDenied("container rootfs is marked read-only")
    no_overwrite = req.flag("noOverwriteDirNonDir")
    copy_ids = req.flag("copyUIDGID")
    loop = asyncio.get_running_loop()
    spool = tempfile.NamedTemporaryFile(prefix="engine-cp-", dir=services.config.root, delete=False)  # noqa: SIM115
    try:
        total = 0
        while True:
            chunk = await req.body.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_UPLOAD:
                raise InvalidArgument(f"archive larger than {MAX_UPLOAD} bytes")
            await loop.run_in_executor(None, spool.write, chunk)
        spool.close()
        async with rootfs.mounted(services, c.id, with_mounts=True) as root:
            dest = rootfs.resolve(root, path, follow_last=True)
            try:
                st = os.stat(dest)
            except (FileNotFoundError, NotADirectoryError):
                raise _not_found(path, name) from None
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidArgument("extraction point is not a directory")
            cdest = rootfs.container_path(root, dest)
            try:
                await loop.run_in_executor(None, lambda: extract(root, cdest, spool.name,
                                                                 no_overwrite_dir_non_dir=no_overwrite,
                                                                 copy_uid_gid=copy_ids))
            except tarfile.TarError as err:
                raise InvalidArgument(f"invalid tar archive: {err}") from err
        await services.journal.append([ContainerExtracted(container_id=c.id, path=path)], namespace=NAMESPACE,
                                      actor=req.actor)
    finally:
        spool.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spool.name)
    return Response(200, b"", "text/plain; charset=utf-8")
