"""Unpack: apply a layer tar onto a snapshot (containerd's Diff.Apply).

The layer is read once, as a stream: the raw bytes are hashed (the compressed digest, the blob's digest in
a manifest), decompressed according to their magic bytes (gzip ``1f 8b``, zstd ``28 b5 2f fd``, otherwise
a plain tar), hashed again (the diff ID, what an image config's ``rootfs.diff_ids`` lists) and walked
with engine/images/tarstream.py (``tarfile``'s stream mode copied every byte four times). Files are
written by ``unpack_tree.Tree``, which never leaves the root.

gzip goes through python-isal: ``isal.igzip_threaded`` (ISA-L's inflate, about 3x the standard
library's zlib, in a second thread, so inflating overlaps with parsing and writing files). bench/unpack.py
on this 2-core machine, compressible 106 MB layer: 486 / 316 / 145 MB/s end to end for threaded isal /
single-threaded isal / stdlib when the other core is free (685 / 570 / 424 MB/s for random data); under
heavy load from other processes the thread hand-off costs more than it gains (53 vs 94 MB/s
single-threaded), so ``gzip_impl="isal-single"`` and ``"stdlib"`` stay selectable. zstd uses
``zstandard``.

Where it writes: for an overlay mount (what the overlayfs snapshotter returns for an active snapshot) the
upper dir, with the lower dirs consulted for overlay whiteouts; for a bind mount its source directory,
with whiteouts as deletions. Nothing is mounted.

An image's whole chain of layers is engine/images/unpacker.py's (``unpack_layers``).

Metadata per entry: owner (lchown), then mode (chown clears set-id bits), then xattrs (PAX
``SCHILY.xattr.*``; chown clears ``security.capability``), then mtime; directories get their mtime at
the end, after their contents.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from engine.errors import InvalidArgument
from engine.images.snapshots.base import Mount
from engine.images.tarstream import Entry, TarReader
from engine.images.unpack_tree import OPAQUE, OPAQUE_XATTR, WHITEOUT_PREFIX, Tree, split_name, symlink_escapes

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 20


@dataclass
class ApplyResult:
    diff_id: str  # sha256 of the uncompressed tar
    digest: str  # sha256 of the bytes as read (== diff_id for an uncompressed layer)
    compression: str  # "gzip", "zstd" or "none"
    compressed_size: int
    size: int  # uncompressed bytes
    entries: int
    decompress_seconds: float  # time spent waiting for decompressed bytes (read + inflate)
    apply_seconds: float  # the rest: parsing and writing files


class _Hashing(io.RawIOBase):
    """A reader that hashes and counts what passes through it, and times the reads."""

    def __init__(self, inner: BinaryIO, hashing: bool = True) -> None:
        self.inner = inner
        self.hashing = hashing
        self.h = hashlib.sha256()
        self.n = 0
        self.seconds = 0.0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        t = time.perf_counter()
        data = self.inner.read(size)
        self.seconds += time.perf_counter() - t
        if self.hashing:
            self.h.update(data)
        self.n += len(data)
        return data

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class _Peek(io.RawIOBase):
    """Gives back the bytes read to sniff the compression, then the rest of the stream."""

    def __init__(self, inner: BinaryIO, head: bytes) -> None:
        self.inner, self.head = inner, head

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.head:
            if size < 0:
                out, self.head = self.head + self.inner.read(), b""
                return out
            out, self.head = self.head[:size], self.head[size:]
            return out
        return self.inner.read(size)

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


def open_decompressed(raw: BinaryIO, *, gzip_impl: str = "isal") -> tuple[BinaryIO, str]:
    """The decompressed stream of `raw` and the compression found by its magic bytes."""
    head = b""
    while len(head) < 4:
        more = raw.read(4 - len(head))
        if not more:
            break
        head += more
    src = _Peek(raw, head)
    if head.startswith(GZIP_MAGIC):
        if gzip_impl == "isal":
            from isal import igzip_threaded

            return igzip_threaded.open(src, "rb", threads=1), "gzip"  # type: ignore[return-value]
        if gzip_impl == "isal-single":
            from isal import igzip

            return igzip.IGzipFile(fileobj=src, mode="rb"), "gzip"  # type: ignore[return-value]
        import gzip

        return gzip.GzipFile(fileobj=src, mode="rb"), "gzip"  # type: ignore[return-value]
    if head.startswith(ZSTD_MAGIC):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True), "zstd"  # type: ignore
    return src, "none"  # type: ignore[return-value]


def target_of(mounts: Sequence[Mount]) -> tuple[str, str, list[str]]:
    """(root to write, whiteout mode, lower dirs) for the mounts of an active snapshot."""
    if len(mounts) != 1:
        raise InvalidArgument(f"cannot apply a layer onto {len(mounts)} mounts: expected one")
    m = mounts[0]
    if m.type == "bind" or "bind" in m.options or "rbind" in m.options:
        if "ro" in m.options:
            raise InvalidArgument("cannot apply a layer onto a read-only mount")
        return m.source, "delete", []
    if m.type == "overlay":
        opts = dict(o.split("=", 1) for o in m.options if "=" in o)
        if "upperdir" not in opts:
            raise InvalidArgument("cannot apply a layer onto a read-only overlay (no upperdir)")
        return opts["upperdir"], "overlay", [d for d in opts.get("lowerdir", "").split(":") if d]
    raise InvalidArgument(f"cannot apply a layer onto a {m.type!r} mount")


def apply_layer(stream: BinaryIO, mounts: Sequence[Mount], *, gzip_impl: str = "isal") -> ApplyResult:
    """Apply the layer read from `stream` onto the active snapshot presented by `mounts`."""
    root, mode, lowers = target_of(mounts)
    return apply_to_dir(stream, root, mode=mode, lowers=lowers, gzip_impl=gzip_impl)


def apply_to_dir(stream: BinaryIO, root: str, *, mode: str = "delete", lowers: Sequence[str] = (),
                 gzip_impl: str = "isal") -> ApplyResult:
    """Apply the layer onto directory `root` (``overlay``: an upper dir over `lowers`; ``delete``: a tree)."""
    return _apply(stream, root, mode=mode, lowers=lowers, gzip_impl=gzip_impl)[0]


class _Aborted(Exception):
    """A staged unpack told to stop (its image's unpack failed elsewhere)."""


def _apply(stream: BinaryIO, root: str, *, mode: str, lowers: Sequence[str] = (), gzip_impl: str = "isal",
           hash_raw: bool = True, abort: threading.Event | None = None
           ) -> tuple[ApplyResult, set[tuple[str, ...]], bool]:
    """apply_to_dir, also giving the directories the layer only implied and whether it set its root."""
    raw = _Hashing(stream, hash_raw)
    dec, compression = open_decompressed(raw, gzip_impl=gzip_impl)  # type: ignore[arg-type]
    plain = _Hashing(dec)
    start = time.perf_counter()
    entries = 0
    try:
        with Tree(root, mode=mode, lowers=lowers) as tree:
            dirs: list[tuple[list[str], int]] = []
            reader = TarReader(plain)  # type: ignore[arg-type]
            for member in reader:
                if abort is not None and abort.is_set():
                    raise _Aborted
                entries += 1
                _apply_member(tree, reader, member, dirs)
            for parts, mtime_ns in reversed(dirs):
                fd = tree.fd if not parts else tree.parent([*parts, "x"])[0]
                os.utime(f"/proc/self/fd/{fd}", ns=(mtime_ns, mtime_ns))
            implied, root_set = tree.implied, tree.root_set
        plain.drain()
        raw.drain()
    except (InvalidArgument, _Aborted):
        raise
    except Exception as err:
        if _is_decode_error(err):
            raise InvalidArgument(f"layer stream is truncated or corrupt ({compression}): {err}") from err
        raise
    finally:
        if dec is not raw:
            dec.close()
    total = time.perf_counter() - start
    res = ApplyResult(diff_id="sha256:" + plain.h.hexdigest(),
                      digest="sha256:" + raw.h.hexdigest() if hash_raw else "",
                      compression=compression, compressed_size=raw.n, size=plain.n, entries=entries,
                      decompress_seconds=plain.seconds, apply_seconds=max(0.0, total - plain.seconds))
    return res, implied, root_set


def _is_decode_error(err: BaseException) -> bool:
    """A compressed stream or tar that ends early or does not decode (not an I/O error of ours)."""
    if isinstance(err, (EOFError, zlib.error)):
        return True
    if isinstance(err, OSError):
        return err.errno is None  # gzip.BadGzipFile and friends carry no errno
    mod = type(err).__module__ or ""
    return mod.startswith(("isal", "zstandard"))


def _apply_member(tree: Tree, reader: TarReader, m: Entry, dirs: list[tuple[list[str], int]]) -> None:
    parts = split_name(m.name)
    mtime_ns = m.mtime_ns
    if not parts:  # the root itself ("./")
        if not m.isdir():
            raise InvalidArgument(f"layer entry {m.name!r}: the root must be a directory")
        os.chown(f"/proc/self/fd/{tree.fd}", m.uid, m.gid)
        os.chmod(f"/proc/self/fd/{tree.fd}", m.mode & 0o7777)
        tree.root_set = True
        dirs.append(([], mtime_ns))
        return
    base = parts[-1]
    if base == OPAQUE:
        tree.opaque(parts)
        return
    if base.startswith(WHITEOUT_PREFIX):
        tree.whiteout(parts)
        return
    dirfd, _ = tree.parent(parts)
    tree.written.add(tuple(parts))
    was = tree.clear(dirfd, base, keep_dir=m.isdir(), parts=tuple(parts))
    if m.isdir():
        tree.implied.discard(tuple(parts))
        if was != "dir":
            os.mkdir(base, 0o700, dir_fd=dirfd)
        if was == "whiteout":  # deleted earlier in this layer, then made again: hide the lower layers' one
            Tree.setxattrs(dirfd, base, {OPAQUE_XATTR: b"y"})
        dirs.append((parts, mtime_ns))
    elif m.isreg():
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dirfd)
        try:
            for chunk in reader.data():
                _write_all(fd, chunk)
            os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            for k, v in m.xattrs.items():
                os.setxattr(fd, k, v)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)
        return
    elif m.issym():
        if symlink_escapes(parts, m.linkname):
            raise InvalidArgument(f"layer entry {m.name!r}: symlink target {m.linkname!r} escapes the root")
        os.symlink(m.linkname, base, dir_fd=dirfd)
        os.chown(base, m.uid, m.gid, dir_fd=dirfd, follow_symlinks=False)
        os.utime(base, ns=(mtime_ns, mtime_ns), dir_fd=dirfd, follow_symlinks=False)
        return
    elif m.islnk():
        tparts = split_name(m.linkname)
        if not tparts:
            raise InvalidArgument(f"layer entry {m.name!r}: hard link to the root")
        tfd, _ = tree.parent(tparts)
        try:
            st = os.stat(tparts[-1], dir_fd=tfd, follow_symlinks=False)
        except FileNotFoundError:
            raise InvalidArgument(f"layer entry {m.name!r}: hard link target {m.linkname!r} is not in the layer"
                                  ) from None
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"layer entry {m.name!r}: hard link to a directory")
        os.link(tparts[-1], base, src_dir_fd=tfd, dst_dir_fd=dirfd, follow_symlinks=False)
        return
    elif m.ischr() or m.isblk():
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=dirfd)
    elif m.isfifo():
        os.mkfifo(base, 0o600, dir_fd=dirfd)
    else:
        raise InvalidArgument(f"layer entry {m.name!r}: unsupported tar entry type {m.type.decode('latin-1')!r}")
    # directories, devices and fifos: owner, mode, xattrs; mtime now (dirs: at the end)
    os.chown(base, m.uid, m.gid, dir_fd=dirfd, follow_symlinks=False)
    Tree.chmod(dirfd, base, m.mode & 0o7777)
    Tree.setxattrs(dirfd, base, m.xattrs)
    if not m.isdir():
        os.utime(base, ns=(mtime_ns, mtime_ns), dir_fd=dirfd, follow_symlinks=False)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]
