"""Tar in and out for image archives: safe extraction into a scratch directory, and a streaming writer.

``extract`` reads a tar (plain, or gzip/bzip2/xz-compressed, as ``docker load`` accepts) as a stream and
writes only regular files, directories and links whose targets stay inside the destination; any member
name that is absolute or climbs out with ``..`` is refused. A truncated or corrupt tar is InvalidArgument.

``tar_stream`` yields the bytes of a ustar/PAX tar from entries (name, size, opener), in 1 MiB chunks, so
the HTTP layer can send a multi-GB save without holding it in memory. Timestamps are fixed (the Unix
epoch, as Docker writes its save tars) so the same images give the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from engine.errors import InvalidArgument

CHUNK = 1 << 20
BLOCK = 512


def _safe_name(name: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise InvalidArgument(f"invalid archive entry {name!r}: outside the archive")
    parts = [x for x in p.parts if x not in ("", ".")]
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def extract(stream: BinaryIO, dest: Path) -> dict[str, str]:
    """Extract the tar read from `stream` into `dest` (which exists); the sha256 digest of every regular
    file written, by its path relative to `dest` (hashed while written, so no second read is needed)."""
    files: dict[str, str] = {}
    links: list[tuple[Path, str, bool]] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for m in tar:
                rel = _safe_name(m.name)
                if str(rel) == ".":
                    continue
                out = dest / rel
                if m.isdir():
                    out.mkdir(parents=True, exist_ok=True)
                elif m.isreg():
                    out.parent.mkdir(parents=True, exist_ok=True)
                    data = tar.extractfile(m)
                    assert data is not None
                    h = hashlib.sha256()
                    with open(out, "wb") as f:
                        while chunk := data.read(CHUNK):
                            h.update(chunk)
                            f.write(chunk)
                    files[str(rel)] = "sha256:" + h.hexdigest()
                elif m.issym() or m.islnk():
                    links.append((out, m.linkname, m.islnk()))
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise
        raise InvalidArgument(f"invalid tar archive: {err or 'unexpected EOF'}") from err
    for out, target, hard in links:  # after all files: a link may come before its target
        # lexical: the link's directory may exist only as a path prefix of other entries (no symlink is
        # ever created under dest, so normpath cannot be fooled)
        linked = dest / _safe_name(target) if hard else Path(os.path.normpath(out.parent / target))
        if not _inside(dest, linked) or not linked.is_file():
            raise InvalidArgument(f"invalid archive entry {out.relative_to(dest)}: link to {target!r} "
                                  "does not name a file in the archive")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists() or out.is_symlink():
            out.unlink()
        try:
            os.link(linked.resolve(), out)
        except OSError:
            shutil.copyfile(linked.resolve(), out)
    return files


@dataclass
class Entry:
    """One tar member: a directory (opener None, size 0) or a file read through `opener`."""

    name: str
    size: int = 0
    opener: Callable[[], BinaryIO] | None = None
    data: bytes | None = None

    @property
    def is_dir(self) -> bool:
        return self.opener is None and self.data is None


def file_entry(name: str, path: Path) -> Entry:
    return Entry(name, path.stat().st_size, lambda: open(path, "rb"))


def bytes_entry(name: str, data: bytes) -> Entry:
    return Entry(name, len(data), None, data)


def _header(e: Entry) -> bytes:
    info = tarfile.TarInfo(e.name + ("/" if e.is_dir and not e.name.endswith("/") else ""))
    info.mtime = 0
    if e.is_dir:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = e.size, 0o444
    return info.tobuf(format=tarfile.PAX_FORMAT)


def tar_stream(entries: Iterable[Entry]) -> Iterator[bytes]:
    """The tar of `entries`, in chunks; a file whose size changed while read is an error."""
    for e in entries:
        yield _header(e)
        if e.is_dir:
            continue
        n = 0
        if e.data is not None:
            yield e.data
            n = len(e.data)
        else:
            assert e.opener is not None
            with e.opener() as f:
                while n < e.size:
                    chunk = f.read(min(CHUNK, e.size - n))
                    if not chunk:
                        break
                    n += len(chunk)
                    yield chunk
        if n != e.size:
            raise InvalidArgument(f"archive entry {e.name}: {n} bytes read, {e.size} expected")
        pad = (-n) % BLOCK
        if pad:
            yield b"\0" * pad
    yield b"\0" * (BLOCK * 2)
