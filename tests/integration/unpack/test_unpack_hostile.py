"""Hostile layers: each attack is refused with InvalidArgument and not a byte lands outside the snapshot.

Every layer is made with Python's tarfile (GNU tar would not write these). The snapshot root sits in a
sandbox next to a sibling directory ``outside`` with a file in it; after each refused unpack the whole
sandbox except the root is compared with how it was."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.images.unpack import apply_to_dir


def _tar(*entries: tuple[str, str, str | bytes]) -> bytes:
    """entries: (type, name, data-or-linkname) with type one of file, dir, sym, hard."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = 0o755 if kind == "dir" else 0o644
            if kind == "file":
                raw = data.encode() if isinstance(data, str) else data
                ti.size = len(raw)
                tf.addfile(ti, io.BytesIO(raw))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}[kind]
            ti.linkname = str(data)
            tf.addfile(ti)
    return buf.getvalue()


def _snapshot(path: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            data = Path(p).read_bytes() if os.path.isfile(p) and not os.path.islink(p) else b""
            out[p] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_nlink, data)
    return out


@pytest.fixture
def sandbox() -> Iterator[Path]:
    box = Path(tempfile.mkdtemp(prefix="unpack-hostile-"))
    try:
        (box / "root").mkdir()
        (box / "outside").mkdir()
        (box / "outside/secret").write_text("do not touch")
        yield box
    finally:
        shutil.rmtree(box, ignore_errors=True)


def _refused(box: Path, layer: bytes, match: str, mode: str = "delete", lowers: list[str] | None = None) -> None:
    before = {k: v for k, v in _snapshot(box).items() if not k.startswith(str(box / "root"))}
    with pytest.raises(InvalidArgument, match=match):
        apply_to_dir(io.BytesIO(layer), str(box / "root"), mode=mode, lowers=lowers or [])
    after = {k: v for k, v in _snapshot(box).items() if not k.startswith(str(box / "root"))}
    assert after == before, "the unpack wrote outside its root"


ATTACKS = {
    "dotdot": ([("file", "../outside/evil", "x")], "'..' is not allowed"),
    "dotdot-nested": ([("dir", "a", ""), ("file", "a/../../outside/evil", "x")], "'..' is not allowed"),
    "absolute": ([("file", "/tmp/evil-absolute", "x")], "absolute paths"),
    "symlink-escape": ([("sym", "a/up", "../../outside")], "escapes the root"),
    "symlink-swap-absolute": ([("sym", "a", "{outside}"), ("file", "a/secret", "pwned")], "symlink"),
    "symlink-swap-etc": ([("sym", "a", "/etc"), ("file", "a/passwd", "pwned")], "symlink"),
    "dir-then-symlink-swap": ([("dir", "a", ""), ("sym", "a", "{outside}"), ("file", "a/x", "pwned")],
                              "symlink"),
    "hardlink-dotdot": ([("hard", "h", "../outside/secret")], "'..' is not allowed"),
    "hardlink-absolute": ([("hard", "h", "{outside}/secret")], "absolute paths"),
    "hardlink-through-symlink": ([("sym", "a", "{outside}"), ("hard", "h", "a/secret")], "symlink"),
    "whiteout-dotdot": ([("file", "d/.wh..", "")], "names no valid entry"),
    "not-a-tar": (None, "not a tar archive"),
}


@pytest.mark.parametrize("mode", ["delete", "overlay"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_is_refused(sandbox: Path, attack: str, mode: str) -> None:
    entries, match = ATTACKS[attack]
    if entries is None:
        layer = b"this is not a tar archive at all" * 40
    else:
        outside = str(sandbox / "outside")
        layer = _tar(*[(k, n, d.replace("{outside}", outside) if isinstance(d, str) else d)
                       for k, n, d in entries])
    _refused(sandbox, layer, match, mode=mode)
    assert not os.path.exists("/tmp/evil-absolute")
    assert Path("/etc/passwd").read_text() != "pwned"


def test_symlink_in_a_lower_layer_is_not_followed(sandbox: Path) -> None:
    """Layer 1 (already committed, a lower dir) has ``a -> outside``; layer 2 writes ``a/secret``."""
    lower = sandbox / "lower"
    lower.mkdir()
    os.symlink(str(sandbox / "outside"), lower / "a")
    layer = _tar(("file", "a/secret", "pwned"))
    _refused(sandbox, layer, "symlink in a lower layer", mode="overlay", lowers=[str(lower)])


def test_hard_link_inside_is_fine_and_relative_symlinks_inside_are_kept(sandbox: Path) -> None:
    layer = _tar(("dir", "d", ""), ("file", "d/f", "data"), ("hard", "d/g", "d/f"), ("sym", "d/s", "../d/f"),
                 ("sym", "abs", "/etc/passwd"))
    apply_to_dir(io.BytesIO(layer), str(sandbox / "root"))
    root = sandbox / "root"
    assert os.stat(root / "d/f").st_ino == os.stat(root / "d/g").st_ino
    assert os.readlink(root / "d/s") == "../d/f" and os.readlink(root / "abs") == "/etc/passwd"


def test_truncated_gzip_is_invalid(sandbox: Path) -> None:
    import gzip

    data = gzip.compress(_tar(("file", "f", os.urandom(200_000).hex())))
    _refused(sandbox, data[: len(data) // 2], "truncated or corrupt|malformed")


def test_symlink_from_an_earlier_layer_in_a_native_tree_is_not_followed(sandbox: Path) -> None:
    """Native: the tree already holds ``a -> outside`` from an earlier layer; this layer writes ``a/secret``."""
    os.symlink(str(sandbox / "outside"), sandbox / "root" / "a")
    _refused(sandbox, _tar(("file", "a/secret", "pwned")), "is a symlink", mode="delete")
    _refused(sandbox, _tar(("hard", "h", "a/secret")), "is a symlink", mode="delete")
