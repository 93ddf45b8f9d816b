"""The multi-layer test image, built with GNU tar from directory trees, and its reference extraction.

Layer 1 (gzip) has odd modes (setuid, setgid, sticky, 000), owners, user.* and trusted.* xattrs, a char
device, a fifo, hard links, absolute and relative symlinks. Layer 2 (zstd) whiteouts a file and a whole
directory, makes a directory opaque, replaces a file and adds hard links. Layer 3 (plain tar) re-creates a
whited-out name, whiteouts another, and changes a directory's mode. The reference is what
``tar --xattrs -xpf`` extracts, layer after layer, with whiteouts applied by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

TAR_X = ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner"]


def pytest_collection_modifyitems(items):  # type: ignore[no-untyped-def]
    for item in items:
        if "tests/integration/unpack" in str(item.fspath):
            item.add_marker(pytest.mark.root)


@dataclass
class Image:
    layers: list[Path]  # compressed as stored: gzip, zstd, plain
    tars: list[Path]  # uncompressed
    reference: Path


def _w(path: Path, data: bytes | str = b"", mode: int | None = None, owner: tuple[int, int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if owner:
        os.chown(path, *owner)
    if mode is not None:
        os.chmod(path, mode)


def _layer1(d: Path) -> None:
    _w(d / "etc/passwd", "root:x:0:0\n", 0o644)
    os.setxattr(d / "etc/passwd", "user.comment", b"the users")
    _w(d / "bin/sh", os.urandom(70_000), 0o755)
    os.link(d / "bin/sh", d / "bin/sh-hardlink")
    _w(d / "bin/su", "setuid", 0o4755)
    _w(d / "bin/wall", "setgid", 0o2711, owner=(0, 5))
    _w(d / "lib/libx.so", "v1", 0o644)
    os.setxattr(d / "lib/libx.so", "trusted.engine-test", b"\x00\x01binary")
    os.symlink("libx.so", d / "lib/libx.so.1")
    os.symlink("/usr/share", d / "share")
    _w(d / "home/user/secret", "mine", 0o000, owner=(1234, 5678))
    os.chown(d / "home/user", 1234, 5678)
    os.chmod(d / "home/user", 0o700)
    (d / "tmp").mkdir()
    os.chmod(d / "tmp", 0o1777)
    (d / "dev").mkdir()
    os.mknod(d / "dev/null", 0o666 | 0o020000, os.makedev(1, 3))
    os.mkfifo(d / "dev/fifo", 0o620)
    for name in ("keep", "old1", "old2"):
        _w(d / "data" / name, name)
    _w(d / "opq/a", "a")
    _w(d / "opq/sub/b", "b")
    _w(d / "gone/deep/file", "x")


def _layer2(d: Path) -> None:
    for sub in ("data", "opq", "lib", "tmp"):
        (d / sub).mkdir(parents=True)
    _w(d / "data/.wh.old1")
    _w(d / ".wh.gone")
    _w(d / "opq/.wh..wh..opq")
    _w(d / "opq/new", "new")
    _w(d / "lib/libx.so", "v2-longer", 0o640)
    _w(d / "data/h1", "linked", 0o600, owner=(7, 8))
    os.link(d / "data/h1", d / "data/h2")
    os.chmod(d / "tmp", 0o1777)
    for sub in ("data", "opq", "lib"):
        os.chmod(d / sub, 0o755)


def _layer3(d: Path) -> None:
    (d / "data").mkdir()
    _w(d / "data/old1", "back again")
    _w(d / "data/.wh.old2")
    (d / "etc").mkdir(mode=0o700)
    os.chmod(d / "etc", 0o700)
    _w(d / "etc/new.conf", "conf", 0o600)
    os.setxattr(d / "etc/new.conf", "user.x", b"y")
    os.chmod(d / "data", 0o755)


def _apply_reference(ref: Path, tar: Path) -> None:
    names = subprocess.run(["tar", "-tf", str(tar)], check=True, capture_output=True, text=True).stdout.split()
    for name in names:
        rel = Path(os.path.normpath(name))
        if rel.name == ".wh..wh..opq":
            target = ref / rel.parent
            if target.is_dir():
                for child in target.iterdir():
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        elif rel.name.startswith(".wh."):
            target = ref / rel.parent / rel.name[len(".wh."):]
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
    subprocess.run([*TAR_X, "-xpf", str(tar), "-C", str(ref)], check=True)
    for name in names:  # drop the marker files tar extracted, keeping their directories' mtimes
        rel = Path(os.path.normpath(name))
        if rel.name.startswith(".wh."):
            parent = ref / rel.parent
            st = os.stat(parent)
            (ref / rel).unlink()
            os.utime(parent, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture(scope="session")
def test_image():  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("needs root: device nodes, owners and trusted.* xattrs")
    work = Path(tempfile.mkdtemp(prefix="unpack-image-"))
    try:
        tars, layers = [], []
        ref = work / "reference"
        ref.mkdir()
        for i, build in enumerate((_layer1, _layer2, _layer3), start=1):
            src = work / f"src{i}"
            src.mkdir()
            build(src)
            tar = work / f"layer{i}.tar"
            subprocess.run([*TAR_X, "--format=posix", "-C", str(src), "-cpf", str(tar), "."], check=True)
            tars.append(tar)
            if i == 1:
                subprocess.run(["gzip", "-k", "-6", str(tar)], check=True)
                layers.append(work / f"layer{i}.tar.gz")
            elif i == 2:
                out = work / f"layer{i}.tar.zst"
                out.write_bytes(zstandard.ZstdCompressor(level=3).compress(tar.read_bytes()))
                layers.append(out)
            else:
                layers.append(tar)
            _apply_reference(ref, tar)
        yield Image(layers, tars, ref)
    finally:
        shutil.rmtree(work, ignore_errors=True)
