"""Diff: the changes between two trees as an OCI layer tar (containerd's Diff.Diff, the inverse of unpack).

``diff_dirs(lower, upper, out)`` walks both trees at once (a double walk): an entry of `upper` goes into the
layer when `lower` has nothing there or something different (type, mode, owner, xattrs, link target,
device number, size, or for equal sizes with different mtimes, content); an entry of `lower` that is gone
from `upper` becomes a ``.wh.<name>`` whiteout. Every changed entry is preceded by its parent directories,
as in the layers Docker and containerd write. Hard links inside `upper` stay hard links. The tar is PAX
(xattrs as ``SCHILY.xattr.*``), numeric owners only, written through an optional compressor while both
digests are computed: the diff ID (uncompressed) and the blob digest (as written).

``diff_mounts`` mounts the two snapshots' mount specs read-only on temporary directories and diffs them,
except when the upper one is an overlay whose top directory is exactly the difference (a snapshot over
the lower one): then that upper dir is read directly (``diff_overlay_upper``), as containerd's overlay
differ does, without walking the lower tree.
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
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"


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


def _writers(out: BinaryIO, compression: str) -> tuple[_HashWriter, BinaryIO, _HashWriter]:
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
    return raw, comp, _HashWriter(comp)


def _finish(raw: _HashWriter, comp: BinaryIO, plain: _HashWriter, compression: str) -> DiffResult:
    if comp is not raw:
        comp.close()
    return DiffResult(diff_id="sha256:" + plain.h.hexdigest(), digest="sha256:" + raw.h.hexdigest(),
                      size=plain.n, compressed_size=raw.n, compression=compression)


def diff_dirs(lower: str, upper: str, out: BinaryIO, *, compression: str = "gzip") -> DiffResult:
    """Write the layer that turns `lower` into `upper` to `out`; `lower` may be '' for a base layer."""
    raw, comp, plain = _writers(out, compression)
    with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        w = _Writer(tf, upper)
        lower_ok = bool(lower) and stat.S_ISDIR(os.lstat(lower).st_mode)
        if lower_ok and not _same(lower, os.lstat(lower), upper, os.lstat(upper)):
            w.tf.addfile(w._info("."))
        _walk(w, lower if lower_ok else "", upper, "", lower_ok)
    return _finish(raw, comp, plain, compression)


def diff_overlay_upper(upper: str, out: BinaryIO, *, compression: str = "gzip") -> DiffResult:
    """The layer an overlayfs upper dir holds, read straight from it (no lower tree is walked): 0:0
    character devices become ``.wh.`` whiteouts, ``trusted.overlay.opaque=y`` directories get
    ``.wh..wh..opq``; everything else in the upper dir is a change."""
    raw, comp, plain = _writers(out, compression)
    with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        w = _Writer(tf, upper)

        def opaque(path: str) -> bool:
            try:
                return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
            except OSError:
                return False

        def walk(rel: str) -> None:
            if opaque(os.path.join(upper, rel)):
                w.ensure_parents(os.path.join(rel, OPAQUE))
                op = tarfile.TarInfo(os.path.join(rel, OPAQUE) if rel else OPAQUE)
                op.mode, op.mtime = 0o644, 0
                w.tf.addfile(op)
            for name in sorted(os.listdir(os.path.join(upper, rel))):
                r = os.path.join(rel, name)
                st = os.lstat(os.path.join(upper, r))
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    w.whiteout(r)
                    continue
                w.add(r)
                if stat.S_ISDIR(st.st_mode):
                    walk(r)

        walk("")
    return _finish(raw, comp, plain, compression)


def _layer_dirs(mounts: Sequence[Mount]) -> list[str] | None:
    """The directories a snapshot's mounts stack, top first (None when they are not one bind/overlay)."""
    if len(mounts) != 1:
        return None
    m = mounts[0]
    if m.type == "bind" or "rbind" in m.options or "bind" in m.options:
        return [m.source]
    if m.type == "overlay":
        opts = dict(o.split("=", 1) for o in m.options if "=" in o)
        dirs = [opts["upperdir"]] if "upperdir" in opts else []
        return dirs + [d for d in opts.get("lowerdir", "").split(":") if d]
    return None


def _readonly(mounts: Sequence[Mount]) -> list[Mount]:
    out = []
    for m in mounts:
        opts = [o for o in m.options if o != "rw"]
        out.append(Mount(m.type, m.source, (*opts, "ro")))
    return out


def diff_mounts(lower: Sequence[Mount], upper: Sequence[Mount], out: BinaryIO, *,
                compression: str = "gzip") -> DiffResult:
    """containerd's Diff.Diff: the layer that turns `lower`'s tree into `upper`'s; `lower` may be empty.

    When `upper` is an overlay stacking exactly `lower`'s directories plus one on top (an active snapshot
    or a view over its parent), that top directory is read as an overlay upper dir; otherwise both are
    mounted read-only on private temp dirs and walked together."""
    udirs, ldirs = _layer_dirs(upper), _layer_dirs(lower) if lower else []
    if udirs and ldirs is not None and len(udirs) > 1 and udirs[1:] == ldirs and upper[0].type == "overlay":
        return diff_overlay_upper(udirs[0], out, compression=compression)
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
