"""Diff (containerd's Diff.Diff) round trip: the layer diffed from two snapshots, applied onto the lower
one, gives the upper one file by file; deletions travel as whiteouts."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest

from engine.images.diff import diff_mounts
from engine.images.unpack import apply_layer
from tests.integration.snapshots.helpers import ACTOR, NS, mounted, mounts_under, open_service
from tests.integration.unpack.test_unpack_image import _describe


@pytest.mark.parametrize("backend", ["overlayfs", "native"])
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
async def test_diff_then_apply_round_trips(backend: str, compression: str, test_image) -> None:  # type: ignore
    root = Path(tempfile.mkdtemp(prefix="diff-snap-"))
    try:
        async with open_service(root, backend) as svc:
            parent = ""
            for i, layer in enumerate(test_image.layers):
                mounts = await svc.prepare(backend, f"k{i}", parent, namespace=NS, actor=ACTOR)
                with open(layer, "rb") as f:
                    apply_layer(f, mounts)
                await svc.commit(backend, f"l{i}", f"k{i}", namespace=NS, actor=ACTOR)
                parent = f"l{i}"
            lower = await svc.view(backend, "v0", "l0", namespace=NS, actor=ACTOR)
            upper = await svc.view(backend, "v2", "l2", namespace=NS, actor=ACTOR)
            out = io.BytesIO()
            res = diff_mounts(lower, upper, out, compression=compression)
            blob = out.getvalue()
            assert res.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
            # the diff's whiteouts name what layers 1 and 2 deleted
            mounts = await svc.prepare(backend, "replay", "l0", namespace=NS, actor=ACTOR)
            applied = apply_layer(io.BytesIO(blob), mounts)
            assert applied.diff_id == res.diff_id and applied.compression == compression
            with mounted(mounts) as tree:
                got = _describe(tree)
            with mounted(upper) as tree:
                want = _describe(tree)
            assert sorted(got) == sorted(want)
            for rel in want:
                assert got[rel] == want[rel], rel
            # a base layer diffed against nothing is the whole tree, with no whiteouts
            base = io.BytesIO()
            diff_mounts([], lower, base, compression="none")
            base.seek(0)
            names = tarfile.open(fileobj=base).getnames()
            assert "etc/passwd" in names and not any("/.wh." in n or n.startswith(".wh.") for n in names)
        assert mounts_under(str(root)) == []
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_diff_names_deletions_as_whiteouts(tmp_path: Path) -> None:
    from engine.images.diff import diff_dirs

    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for d in (lower, upper):
        (d / "dir").mkdir(parents=True)
        (d / "same").write_text("s")
    (lower / "dir/gone").write_text("g")
    (lower / "alsogone").mkdir()
    (upper / "dir/new").write_text("n")
    shutil.copystat(lower / "dir", upper / "dir")
    out = io.BytesIO()
    diff_dirs(str(lower), str(upper), out, compression="none")
    out.seek(0)
    names = tarfile.open(fileobj=out).getnames()
    assert names == [".wh.alsogone", "dir", "dir/.wh.gone", "dir/new"]


@pytest.mark.parametrize("backend", ["overlayfs", "native"])
async def test_diff_of_a_snapshot_over_its_parent(backend: str, test_image) -> None:  # type: ignore
    """Adjacent snapshots: overlayfs reads the upper dir (opaque dirs stay opaque markers), native walks
    both trees (per-file whiteouts); either way the layer re-creates the upper snapshot."""
    root = Path(tempfile.mkdtemp(prefix="diff-adj-"))
    try:
        async with open_service(root, backend) as svc:
            parent = ""
            for i, layer in enumerate(test_image.layers[:2]):
                mounts = await svc.prepare(backend, f"k{i}", parent, namespace=NS, actor=ACTOR)
                with open(layer, "rb") as f:
                    apply_layer(f, mounts)
                await svc.commit(backend, f"l{i}", f"k{i}", namespace=NS, actor=ACTOR)
                parent = f"l{i}"
            lower = await svc.view(backend, "v0", "l0", namespace=NS, actor=ACTOR)
            active = await svc.prepare(backend, "work", "l1", namespace=NS, actor=ACTOR)
            with mounted(active) as tree:  # a container's changes on top of l1
                Path(tree, "etc/passwd").unlink()
                Path(tree, "new-file").write_text("made in the container")
            lower1 = await svc.view(backend, "v1", "l1", namespace=NS, actor=ACTOR)
            for low, up in ((lower, await svc.view(backend, "v1b", "l1", namespace=NS, actor=ACTOR)),
                            (lower1, active)):
                out = io.BytesIO()
                res = diff_mounts(low, up, out, compression="none")
                out.seek(0)
                names = tarfile.open(fileobj=out).getnames()
                if up is not active:
                    assert ("opq/.wh..wh..opq" in names) == (backend == "overlayfs")
                    assert ("opq/.wh.a" in names) == (backend == "native")
                else:
                    assert "etc/.wh.passwd" in names and "new-file" in names
                key = f"replay-{len(names)}"
                target = await svc.prepare(backend, key, "l0" if up is not active else "l1", namespace=NS,
                                           actor=ACTOR)
                assert apply_layer(io.BytesIO(out.getvalue()), target).diff_id == res.diff_id
                with mounted(target) as tree:
                    got = _describe(tree)
                with mounted(up) as tree:
                    want = _describe(tree)
                assert got == want
        assert mounts_under(str(root)) == []
    finally:
        shutil.rmtree(root, ignore_errors=True)
