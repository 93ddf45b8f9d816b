"""Diff: the changes between two trees as an OCI layer tar (containerd's Diff.Diff, the inverse of unpack).

``diff_dirs(lower, upper, out)`` walks both trees at once (a double walk): an entry of `upper` goes into the
layer when `lower` has nothing there or something different (type, mode, owner, xattrs, link target,
device number, size, or for equal sizes with different mtimes, content); an entry of `lower` that is gone
from `upper` becomes a ``.wh.<name>`` whiteout. Every changed entry is preceded by its parent directories,
as in the layers Docker and containerd write. Hard links inside `upper` stay hard links. The tar is PAX
(xattrs as ``SCHILY.xattr.*``), numeric owners only, written through an optional compressor while both
digests are computed: the diff ID (uncompressed) and the blob digest (as written).

``diff_mounts`` mounts the two snapshots' mount specs read-only on temporary directories and diffs them.
The lower tree is only ever lstat'ed and read below directories it really has (a symlink in `lower` where
`upper` has a directory is never followed).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from engine.errors import InvalidArgument
from engine.images.snapshots import Mount, mount_all, unmount_all

WHITEOUT_PREFIX = ".wh."


@dataclass
class DiffResult:
    diff_id: str
    digest: str
    size: int  # uncompressed
    compressed_size: int
    compression: str


class _HashWriter(io.RawIOBase):
    def __init__(self, inner: BinaryIO) -> None:
        self.inner, self.h, self.n = inner, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.h.update(b)
        self.n += len(b)
        self.inner.write(b)
        return len(b)


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {k: os.getxattr(path, k, follow_symlinks=False) for k in names if not k.startswith("trusted.overlay.")}


def _same_content(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def _same(lp: str, ls: os.stat_result, up: str, us: os.stat_result) -> bool:
    if stat.S_IFMT(ls.st_mode) != stat.S_IFMT(us.st_mode) or stat.S_IMODE(ls.st_mode) != stat.S_IMODE(us.st_mode):
        return False
    if (ls.st_uid, ls.st_gid) != (us.st_uid, us.st_gid):
        return False
    if stat.S_ISLNK(us.st_mode):
        return os.readlink(lp) == os.readlink(up)
    if _xattrs(lp) != _xattrs(up):
        return False
    if stat.S_ISCHR(us.st_mode) or stat.S_ISBLK(us.st_mode):
        return ls.st_rdev == us.st_rdev
    if stat.S_ISREG(us.st_mode):
        if ls.st_size != us.st_size:
            return False
        return ls.st_mtime_ns == us.st_mtime_ns or _same_content(lp, up)
    return True  # directories and fifos: metadata is all there is


class _Writer:
    def __init__(self, tf: tarfile.TarFile, upper: str) -> None:
        self.tf, self.upper = tf, upper
        self.emitted: set[str] = {""}

    def _info(self, rel: str) -> tarfile.TarInfo:
        path = os.path.join(self.upper, rel)
        ti = self.tf.gettarinfo(path, arcname=rel)
        ti.uname = ti.gname = ""
        xattrs = _xattrs(path) if not ti.issym() else {}
        if xattrs:
            ti.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()}
        return ti

    def ensure_parents(self, rel: str) -> None:
        parent = os.path.dirname(rel)
        if parent in self.emitted:
            return
        self.ensure_parents(parent)
        self.tf.addfile(self._info(parent))
        self.emitted.add(parent)

    def add(self, rel: str) -> None:
        self.ensure_parents(rel)
        if rel in self.emitted:
            return
        ti = self._info(rel)
        if ti.isreg():
            with open(os.path.join(self.upper, rel), "rb") as f:
                self.tf.addfile(ti, f)
        else:
            self.tf.addfile(ti)
        self.emitted.add(rel)

    def whiteout(self, rel: str) -> None:
        self.ensure_parents(rel)
        ti = tarfile.TarInfo(os.path.join(os.path.dirname(rel), WHITEOUT_PREFIX + os.path.basename(rel)))
        ti.mode, ti.mtime = 0o644, 0
        self.tf.addfile(ti)


def _walk(w: _Writer, lower: str, upper: str, rel: str, lower_is_dir: bool) -> None:
    udir = os.path.join(upper, rel)
    names = sorted(os.listdir(udir))
    lnames = set(os.listdir(os.path.join(lower, rel))) if lower_is_dir else set()
    for name in sorted(lnames - set(names)):
        w.whiteout(os.path.join(rel, name))
    for name in names:
        r = os.path.join(rel, name)
        up, lp = os.path.join(upper, r), os.path.join(lower, r)
        us = os.lstat(up)
        ls = os.lstat(lp) if name in lnames else None
        if ls is None or not _same(lp, ls, up, us):
            w.add(r)
        if stat.S_ISDIR(us.st_mode):
            _walk(w, lower, upper, r, ls is not None and stat.S_ISDIR(ls.st_mode))


def diff_dirs(lower: str, upper: str, out: BinaryIO, *, compression: str = "gzip") -> DiffResult:
    """Write the layer that turns `lower` into `upper` to `out`; `lower` may be '' for a base layer."""
    raw = _HashWriter(out)
    if compression == "gzip":
        from isal import igzip

        comp: BinaryIO = igzip.IGzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0)  # type: ignore
    elif compression == "zstd":
        import zstandard

        comp = zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False)  # type: ignore
    elif compression == "none":
        comp = raw  # type: ignore[assignment]
    else:
        raise InvalidArgument(f"unknown layer compression {compression!r} (gzip, zstd or none)")
    plain = _HashWriter(comp)
    with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        w = _Writer(tf, upper)
        lower_ok = bool(lower) and stat.S_ISDIR(os.lstat(lower).st_mode)
        if lower_ok and not _same(lower, os.lstat(lower), upper, os.lstat(upper)):
            w.tf.addfile(w._info("."))
        _walk(w, lower if lower_ok else "", upper, "", lower_ok)
    if comp is not raw:
        comp.close()
    return DiffResult(diff_id="sha256:" + plain.h.hexdigest(), digest="sha256:" + raw.h.hexdigest(),
                      size=plain.n, compressed_size=raw.n, compression=compression)


def _readonly(mounts: Sequence[Mount]) -> list[Mount]:
    out = []
    for m in mounts:
        opts = [o for o in m.options if o != "rw"]
        out.append(Mount(m.type, m.source, (*opts, "ro")))
    return out


def diff_mounts(lower: Sequence[Mount], upper: Sequence[Mount], out: BinaryIO, *,
                compression: str = "gzip") -> DiffResult:
    """containerd's Diff.Diff: mount both (read-only, on private temp dirs) and diff; `lower` may be empty."""
    with tempfile.TemporaryDirectory(prefix="engine-diff-") as tmp:
        ldir, udir = os.path.join(tmp, "lower"), os.path.join(tmp, "upper")
        os.mkdir(ldir)
        os.mkdir(udir)
        try:
            if lower:
                mount_all(_readonly(lower), ldir)
            mount_all(_readonly(upper), udir)
            return diff_dirs(ldir if lower else "", udir, out, compression=compression)
        finally:
            unmount_all(udir)
            unmount_all(ldir)
