"""Unpack the three-layer test image through engine/images/unpack.py onto each snapshotter, mount the
result, and compare it file by file with what GNU tar extracts (content, mode, owner, xattrs, links)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from engine.images.unpack import apply_layer
from tests.integration.snapshots.helpers import ACTOR, NS, mounted, mounts_under, open_service

IGNORED_XATTRS = ("trusted.overlay.",)


def _describe(root: str) -> dict[str, tuple]:
    """Everything a file-by-file comparison looks at, keyed by relative path."""
    out: dict[str, tuple] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            xattrs = {}
            if not stat.S_ISLNK(st.st_mode):
                for k in os.listxattr(path, follow_symlinks=False):
                    if not k.startswith(IGNORED_XATTRS):
                        xattrs[k] = os.getxattr(path, k, follow_symlinks=False)
            extra: object = None
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                if st.st_nlink > 1:  # hard links: name the group by its first path
                    extra = (extra, inodes.setdefault(st.st_ino, rel))
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            mtime = None if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns // 1_000_000_000
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size
                        if stat.S_ISREG(st.st_mode) else 0, extra, tuple(sorted(xattrs.items())), mtime)
    return out


@pytest.mark.parametrize("backend", ["overlayfs", "native"])
async def test_unpacked_image_matches_gnu_tar(backend: str, test_image) -> None:  # type: ignore[no-untyped-def]
    root = Path(tempfile.mkdtemp(prefix="unpack-snap-"))
    try:
        async with open_service(root, backend) as svc:
            parent = ""
            for i, (layer, tar) in enumerate(zip(test_image.layers, test_image.tars, strict=True)):
                key = f"extract-{i}"
                mounts = await svc.prepare(backend, key, parent, namespace=NS, actor=ACTOR)
                with open(layer, "rb") as f:
                    res = apply_layer(f, mounts)
                assert res.diff_id == "sha256:" + hashlib.sha256(tar.read_bytes()).hexdigest()
                assert res.digest == "sha256:" + hashlib.sha256(layer.read_bytes()).hexdigest()
                assert res.compression == ["gzip", "zstd", "none"][i]
                name = f"layer-{i}"
                await svc.commit(backend, name, key, namespace=NS, actor=ACTOR)
                parent = name
            if backend == "overlayfs":
                be = svc.backends[backend]
                sid = await svc.journal.run_read(lambda c: c.execute(
                    "SELECT sid FROM snapshots WHERE key = 'layer-1'").fetchone()[0])
                upper = be.upper_dir(sid)
                st = os.lstat(os.path.join(upper, "data/old1"))
                assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, "whiteout is a 0:0 char device"
                assert os.getxattr(os.path.join(upper, "opq"), "trusted.overlay.opaque") == b"y"
            with mounted(await svc.view(backend, "check", parent, namespace=NS, actor=ACTOR)) as tree:
                got, want = _describe(tree), _describe(str(test_image.reference))
            assert sorted(got) == sorted(want)
            for rel in want:
                assert got[rel] == want[rel], rel
            assert "opq/a" not in got and "opq/new" in got and "gone" not in got and "data/old2" not in got
        assert mounts_under(str(root)) == []
    finally:
        shutil.rmtree(root, ignore_errors=True)
