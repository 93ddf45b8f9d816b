"""Whiteout rules in both modes, looked at through a real overlay mount for the overlay mode: an opaque
marker hides what lower layers had but keeps what its own layer wrote, before or after the marker, even
in directories the layer only made implicitly; a directory whited out and made again in one layer is
opaque."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from engine.images.snapshots import Mount
from engine.images.unpack import apply_to_dir
from tests.integration.snapshots.helpers import mounted


def _tar(*entries: tuple[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, name in entries:
            ti = tarfile.TarInfo(name)
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.size = len(name)
                tf.addfile(ti, io.BytesIO(name.encode()))
    return buf.getvalue()


LAYER = _tar(("file", "d/sub/x"), ("file", "d/.wh..wh..opq"), ("file", "d/y"),
             ("file", ".wh.e"), ("dir", "e"), ("file", "e/new"))


def _lower(path: Path) -> None:
    for rel in ("d/old", "d/sub/oldsub", "e/olde", "keep"):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(rel)


def _listing(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(dp, n), root) for dp, dn, fn in os.walk(root) for n in dn + fn)


EXPECTED = ["d", "d/sub", "d/sub/x", "d/y", "e", "e/new", "keep"]


def test_delete_mode(tmp_path: Path) -> None:
    _lower(tmp_path)
    apply_to_dir(io.BytesIO(LAYER), str(tmp_path), mode="delete")
    assert _listing(str(tmp_path)) == EXPECTED


def test_overlay_mode(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: mknod and an overlay mount")
    lower, upper, work = tmp_path / "lower", tmp_path / "upper", tmp_path / "work"
    for p in (lower, upper, work):
        p.mkdir()
    _lower(lower)
    apply_to_dir(io.BytesIO(LAYER), str(upper), mode="overlay", lowers=[str(lower)])
    assert os.getxattr(upper / "d", "trusted.overlay.opaque") == b"y"
    m = Mount("overlay", "overlay", (f"workdir={work}", f"upperdir={upper}", f"lowerdir={lower}"))
    with mounted([m]) as root:
        assert _listing(root) == EXPECTED
