"""`engine cp`: copy files between a container and the local filesystem through tar streams, with
docker cp's path rules.

* ``CONTAINER:SRC DEST`` — ``GET /containers/{id}/archive?path=SRC`` returns a tar whose top entry is
  SRC's base name. Into an existing directory DEST it lands as DEST/<base>; otherwise it becomes DEST
  (its top entry renamed). ``SRC/.`` copies a directory's content. DEST ``-`` writes the tar to stdout.
* ``SRC CONTAINER:DEST`` — ``HEAD`` on DEST first (its stat header says whether it is a directory): into
  a directory the tar's top entry is SRC's base name; to a path that does not exist (or an existing
  file) the top entry is renamed to DEST's base name and extracted in its parent. SRC ``-`` sends a tar
  read from stdin to the directory DEST.

Extraction refuses absolute names and ``..`` that would leave DEST (Python 3.11.2 has no tarfile
filters yet), and keeps modes and symlinks as docker does.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import tarfile
import tempfile
from typing import Any

from engine.cli.client import Client, ClientError, q
from engine.cli.format import human_size


class CpError(Exception):
    pass


def split_path(arg: str) -> tuple[str | None, str]:
    """``ctr:/path`` → ("ctr", "/path"); a local path (absolute, ./, or no colon) → (None, path)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    ctr, _, path = arg.partition(":")
    return ctr, path


def _stat(headers: Any) -> dict[str, Any] | None:
    raw = headers.get("X-Docker-Container-Path-Stat")
    if not raw:
        return None
    try:
        return json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4)))
    except ValueError:
        return None


def _safe_members(tar: tarfile.TarFile, dest: str, rename: tuple[str, str] | None) -> list[tarfile.TarInfo]:
    members = []
    root = os.path.realpath(dest)
    for m in tar.getmembers():
        name = m.name.lstrip("./") if m.name.startswith("./") else m.name
        if rename:
            old, new = rename
            if name == old or name.startswith(old + "/"):
                name = new + name[len(old):]
        if os.path.isabs(name) or ".." in name.split("/"):
            raise CpError(f"refusing to extract {m.name!r}: outside the destination")
        if m.islnk():
            link = m.linkname
            if rename and (link == rename[0] or link.startswith(rename[0] + "/")):
                m.linkname = rename[1] + link[len(rename[0]):]
        m.name = name
        target = os.path.realpath(os.path.join(root, name))
        if target != root and not target.startswith(root + os.sep):
            raise CpError(f"refusing to extract {name!r}: outside the destination")
        members.append(m)
    return members


def copy_from(c: Client, ctr: str, src: str, dest: str) -> int:
    """Container → local; returns the bytes copied."""
    resp = c.request("GET", f"/containers/{q(ctr)}/archive", {"path": src}, stream=True)
    stat = _stat(resp.headers) or {}
    if dest == "-":
        n = 0
        for chunk in c.body(resp):
            sys.stdout.buffer.write(chunk)
            n += len(chunk)
        sys.stdout.flush()
        return n
    with tempfile.TemporaryFile() as spool:
        n = 0
        for chunk in c.body(resp):
            spool.write(chunk)
            n += len(chunk)
        spool.seek(0)
        base = stat.get("name") or os.path.basename(src.rstrip("/")) or "."
        src_is_dir = bool((stat.get("mode") or 0) & (1 << 31))
        contents_only = src.endswith("/.")
        if os.path.isdir(dest) and not contents_only:
            target_dir, rename = dest, None
        elif os.path.isdir(dest) and contents_only:
            target_dir, rename = dest, (base, ".")
        else:
            if dest.endswith("/") and not os.path.exists(dest):
                raise CpError(f"destination directory {dest!r} does not exist")
            if src_is_dir and os.path.exists(dest):
                raise CpError(f"cannot copy a directory to a file: {dest}")
            target_dir = os.path.dirname(os.path.abspath(dest))
            rename = (base, os.path.basename(os.path.abspath(dest)))
            if not os.path.isdir(target_dir):
                raise CpError(f"no such directory: {target_dir}")
        with tarfile.open(fileobj=spool, mode="r:*") as tar:
            members = _safe_members(tar, target_dir, rename)
            if rename and rename[1] == ".":
                members = [m for m in members if m.name not in (".", "")]
            tar.extractall(target_dir, members=members, numeric_owner=True)
    return n


def _tar_of(src: str, arcname: str) -> tempfile.SpooledTemporaryFile:  # type: ignore[type-arg]
    buf = tempfile.SpooledTemporaryFile(max_size=8 << 20)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(src, arcname=arcname, recursive=True)
    buf.seek(0)
    return buf


def copy_to(c: Client, src: str, ctr: str, dest: str) -> int:
    """Local → container; returns the bytes sent."""
    if src == "-":
        data = sys.stdin.buffer.read()
        c.request("PUT", f"/containers/{q(ctr)}/archive", {"path": dest, "noOverwriteDirNonDir": "true"},
                  data=data).read()
        return len(data)
    if not os.path.lexists(src):
        raise CpError(f"stat {src}: no such file or directory")
    dest_is_dir = False
    exists = True
    try:
        resp = c.request("HEAD", f"/containers/{q(ctr)}/archive", {"path": dest})
        resp.read()
        dest_is_dir = bool(((_stat(resp.headers) or {}).get("mode") or 0) & (1 << 31))
    except ClientError as err:
        if err.status != 404:
            raise
        exists = False
    if not exists and dest.endswith("/"):
        raise CpError(f"destination directory {dest!r} does not exist")
    contents_only = src.endswith("/.") and os.path.isdir(src)
    if dest_is_dir:
        target, arc = dest, ("." if contents_only else os.path.basename(os.path.abspath(src)))
    else:
        if os.path.isdir(src) and exists:
            raise CpError(f"cannot copy a directory to a file: {dest}")
        target, arc = os.path.dirname(dest.rstrip("/")) or "/", os.path.basename(dest.rstrip("/"))
    body = _tar_of(src, arc)
    size = body.seek(0, io.SEEK_END)
    body.seek(0)
    c.request("PUT", f"/containers/{q(ctr)}/archive", {"path": target, "noOverwriteDirNonDir": "true"},
              data=body.read()).read()
    return size


def cp(c: Client, src: str, dest: str) -> str:
    """Run a copy; returns docker's closing line (``Successfully copied 2.05kB to ctr:/tmp``) or ""."""
    sctr, spath = split_path(src)
    dctr, dpath = split_path(dest)
    if sctr and dctr:
        raise CpError("copying between containers is not supported")
    if not sctr and not dctr:
        raise CpError("must specify at least one container source")
    if sctr:
        n = copy_from(c, sctr, spath, dpath)
        return "" if dpath == "-" else f"Successfully copied {human_size(n)} to {dpath}"
    n = copy_to(c, spath, dctr or "", dpath)
    return f"Successfully copied {human_size(n)} to {dest}"


__all__ = ["CpError", "cp"]
