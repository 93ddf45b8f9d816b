"""The staged (parallel) unpack onto overlayfs gives each layer's snapshot the same upper dir as applying
the layers one by one onto their parents, including the directories a layer only implies; a layer the
lower layers make hostile is refused as before; a failure leaves no staged tree, no extract snapshot and
no later layer behind."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.images.unpack import apply_layer
from engine.images.unpacker import Layer, chain_id, unpack_layers
from tests.integration.snapshots.helpers import ACTOR, NS, mounts_under, open_service

SN = "overlayfs"


def _tar(*entries: tuple) -> bytes:
    """entries: ("dir", name, mode, uid, gid) | ("file", name, data) | ("sym", name, target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, name, *rest in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if kind == "dir":
                ti.type, ti.mode, ti.uid, ti.gid = tarfile.DIRTYPE, rest[0], rest[1], rest[2]
                tf.addfile(ti)
            elif kind == "file":
                data = rest[0]
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))
            else:
                ti.type, ti.linkname = tarfile.SYMTYPE, rest[0]
                tf.addfile(ti)
    return buf.getvalue()


def _layers(*tars: bytes) -> list[Layer]:
    return [Layer("sha256:" + hashlib.sha256(t).hexdigest(), (lambda t=t: io.BytesIO(t))) for t in tars]


def _tree(root: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            p = Path(dirpath, n)
            st = os.lstat(p)
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {k: os.getxattr(p, k) for k in os.listxattr(p)}
            data = p.read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(p) if stat.S_ISLNK(st.st_mode) else b""
            mtime = st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else None  # implied dirs get "now"
            out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, st.st_rdev, xattrs, data, mtime)
    return out


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="unpack-staged-"))
    try:
        yield path
    finally:
        assert mounts_under(str(path)) == []
        shutil.rmtree(path, ignore_errors=True)


async def _uppers(svc, layers: list[Layer]) -> list[dict[str, tuple]]:  # type: ignore[no-untyped-def]
    """Each layer's committed snapshot's own upper dir, as a comparable tree."""
    out, parent = [], ""
    for layer in layers:
        parent = chain_id(parent, layer.diff_id)
        sid = await svc.journal.run_read(lambda c, k=parent: c.execute(
            "SELECT sid FROM snapshots WHERE key = ?", (k,)).fetchone()[0])
        out.append(_tree(Path(svc.backends[SN].upper_dir(sid))))
    return out


async def _one_by_one(svc, layers: list[Layer]) -> None:  # type: ignore[no-untyped-def]
    parent = ""
    for i, layer in enumerate(layers):
        chain = chain_id(parent, layer.diff_id)
        key = f"by-hand-{i}"
        mounts = await svc.prepare(SN, key, parent, namespace=NS, actor=ACTOR)
        with layer.open() as f:
            await asyncio.to_thread(apply_layer, f, mounts)
        await svc.commit(SN, chain, key, namespace=NS, actor=ACTOR)
        parent = chain


LOWER = _tar(("dir", "etc", 0o700, 5, 6), ("file", "etc/passwd", b"root"), ("dir", "opt", 0o755, 0, 0),
             ("sym", "opt/link", "/usr"), ("file", "srv", b"a file"), ("dir", "var", 0o750, 7, 8),
             ("dir", "var/lib", 0o711, 9, 9), ("file", "var/lib/x", b"x"))


@pytest.mark.parametrize(("upper", "want"), [
    # etc and etc/app implied: etc takes 0700 5:6 from the lower layer, etc/app is new (0755 root)
    (_tar(("file", "etc/app/conf", b"conf")), {"etc": (0o700, 5, 6), "etc/app": (0o755, 0, 0)}),
    # an explicit entry after the implied one wins
    (_tar(("file", "etc/app/conf", b"conf"), ("dir", "etc", 0o750, 1, 1)), {"etc": (0o750, 1, 1)}),
    # an opaque marker inside implied dirs
    (_tar(("file", "var/lib/y/.wh..wh..opq", b""), ("file", "var/lib/z", b"z")),
     {"var": (0o750, 7, 8), "var/lib": (0o711, 9, 9)}),
    # a directory whited out and made again in the same layer
    (_tar(("file", "var/.wh.lib", b""), ("file", "var/lib/new", b"n")), {"var": (0o750, 7, 8)}),
    # the layer sets its root itself
    (_tar(("dir", "./", 0o700, 3, 3), ("file", "new/deep/file", b"d")), {"new": (0o755, 0, 0)}),
], ids=["implied", "explicit-after", "opaque-implied", "whiteout-remade", "root-entry"])
async def test_staged_equals_one_by_one(root: Path, upper: bytes, want: dict[str, tuple[int, int, int]]) -> None:
    layers = _layers(LOWER, upper, _tar(("file", "etc/app/more", b"m")))
    (root / "a").mkdir()
    (root / "b").mkdir()
    async with open_service(root / "a", SN) as a, open_service(root / "b", SN) as b:
        events: list[tuple[int, str]] = []
        await unpack_layers(a, SN, layers, namespace=NS, actor=ACTOR, parallel=3,
                            progress=lambda i, e: events.append((i, e)))
        await _one_by_one(b, layers)
        staged, by_hand = await _uppers(a, layers), await _uppers(b, layers)
        assert staged == by_hand
        for path, (mode, uid, gid) in want.items():
            assert staged[1][path][:3] == (stat.S_IFDIR | mode, uid, gid), path
        assert [i for i, e in events if e == "done"] == [0, 1, 2]
        assert os.listdir(a.staging_dir(SN)) == []


@pytest.mark.parametrize(("upper", "match"), [
    (_tar(("file", "opt/link/x", b"x")), "symlink in a lower layer"),
    (_tar(("file", "srv/x", b"x")), "not a directory in a lower layer"),
])
async def test_a_layer_the_lower_layers_make_hostile_is_refused_and_leaves_nothing(root: Path, upper: bytes,
                                                                                    match: str) -> None:
    layers = _layers(LOWER, upper, _tar(("file", "later", b"l")))
    async with open_service(root, SN) as svc:
        with pytest.raises(InvalidArgument, match=match):
            await unpack_layers(svc, SN, layers, namespace=NS, actor=ACTOR, parallel=3)
        infos = await svc.walk(SN, namespace=NS)
        assert [i.name for i in infos] == [layers[0].diff_id]  # the lower layer only: no extract-, no later one
        assert os.listdir(svc.staging_dir(SN)) == []
        assert len(svc.backends[SN].ids_on_disk()) == 1
        # the same refusal as applying it onto the lower layer directly
        mounts = await svc.prepare(SN, "direct", layers[0].diff_id, namespace=NS, actor=ACTOR)
        with pytest.raises(InvalidArgument, match=match):
            apply_layer(layers[1].open(), mounts)


async def test_failure_stops_the_others_and_cleans_up(root: Path) -> None:
    big = [_tar(*[("file", f"d{i}/f{j}", os.urandom(64 << 10)) for j in range(64)]) for i in range(4)]
    layers = _layers(*big)
    layers[1] = Layer("sha256:" + "0" * 64, layers[1].open)
    async with open_service(root, SN) as svc:
        with pytest.raises(InvalidArgument, match="expected diff id"):
            await unpack_layers(svc, SN, layers, namespace=NS, actor=ACTOR, parallel=4)
        assert [i.name for i in await svc.walk(SN, namespace=NS)] == [layers[0].diff_id]
        await asyncio.sleep(0.2)  # no extraction still writing afterwards
        assert os.listdir(svc.staging_dir(SN)) == []


async def test_layers_ready_out_of_order_and_a_failed_download(root: Path) -> None:
    tars = [_tar(("file", f"f{i}", bytes([i]) * 1000), ("dir", f"d{i}", 0o755, 0, 0)) for i in range(4)]
    loop = asyncio.get_running_loop()
    futs: list[asyncio.Future[object]] = [loop.create_future() for _ in tars]
    layers = [Layer(x.diff_id, x.open, f) for x, f in zip(_layers(*tars), futs, strict=True)]
    events: list[tuple[int, str]] = []

    async def release(order: list[int], fail: Callable[[int], bool] = lambda i: False) -> None:
        for i in order:
            await asyncio.sleep(0.02)
            if fail(i):
                futs[i].set_exception(ConnectionResetError("registry went away"))
            else:
                futs[i].set_result(True)

    async with open_service(root, SN) as svc:
        await asyncio.gather(unpack_layers(svc, SN, layers, namespace=NS, actor=ACTOR, parallel=2,
                                           progress=lambda i, e: events.append((i, e))), release([3, 2, 1, 0]))
        extracting = [i for i, e in events if e == "extracting"]
        assert extracting[:2] == [3, 2] and [i for i, e in events if e == "done"] == [0, 1, 2, 3]
        assert len(await svc.walk(SN, namespace=NS)) == 4

    futs = [loop.create_future() for _ in tars]
    layers = [Layer(x.diff_id, x.open, f) for x, f in zip(_layers(*tars), futs, strict=True)]
    (root / "again").mkdir()
    async with open_service(root / "again", SN) as svc:
        got, _ = await asyncio.gather(unpack_layers(svc, SN, layers, namespace=NS, actor=ACTOR, parallel=2),
                                      release([0, 1, 2, 3], fail=lambda i: i == 2), return_exceptions=True)
        assert isinstance(got, ConnectionResetError)  # the download's own error
        chains = [chain_id("", layers[0].diff_id)]
        chains.append(chain_id(chains[0], layers[1].diff_id))
        names = sorted(i.name for i in await svc.walk(SN, namespace=NS))
        assert names in (chains[:1], sorted(chains))  # layer 1 may or may not have been committed; nothing after
        assert os.listdir(svc.staging_dir(SN)) == []
