"""One conformance suite for every snapshotter backend (after containerd's core/snapshots/testsuite).

Every test mounts what the snapshotter returns, for real, and looks at the files through the layers."""

from __future__ import annotations

import os
import stat

import pytest

from engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from engine.images.snapshots import Kind
from engine.services.snapshots import SnapshotService
from tests.integration.snapshots.helpers import ACTOR, NS, mounted


def _write(root: str, rel: str, data: str) -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)


def _read(root: str, rel: str) -> str:
    with open(os.path.join(root, rel)) as f:
        return f.read()


async def _layer(svc: SnapshotService, name: str, parent: str, files: dict[str, str | None]) -> None:
    """Prepare over parent, write (or delete, value None) files through the mount, commit as name."""
    key = f"{name}-active"
    mounts = await svc.prepare(svc.name, key, parent, namespace=NS, actor=ACTOR)
    with mounted(mounts) as root:
        for rel, data in files.items():
            if data is None:
                p = os.path.join(root, rel)
                if os.path.isdir(p):
                    import shutil

                    shutil.rmtree(p)
                else:
                    os.unlink(p)
            else:
                _write(root, rel, data)
    await svc.commit(svc.name, name, key, namespace=NS, actor=ACTOR)


async def test_prepare_write_commit_stat(svc: SnapshotService) -> None:
    mounts = await svc.prepare(svc.name, "k1", labels={"a": "b"}, namespace=NS, actor=ACTOR)
    info = await svc.stat(svc.name, "k1", namespace=NS)
    assert (info.kind, info.name, info.parent, info.labels) == (Kind.ACTIVE, "k1", "", {"a": "b"})
    with mounted(mounts) as root:
        _write(root, "hello", "world")
    await svc.commit(svc.name, "c1", "k1", labels={"x": "y"}, namespace=NS, actor=ACTOR)
    with pytest.raises(NotFound):
        await svc.stat(svc.name, "k1", namespace=NS)
    info = await svc.stat(svc.name, "c1", namespace=NS)
    assert (info.kind, info.name, info.labels) == (Kind.COMMITTED, "c1", {"x": "y"})
    with pytest.raises(FailedPrecondition):
        await svc.mounts(svc.name, "c1", namespace=NS)
    mounts = await svc.view(svc.name, "v1", "c1", namespace=NS, actor=ACTOR)
    with mounted(mounts) as root:
        assert _read(root, "hello") == "world"
        with pytest.raises(OSError):
            _write(root, "other", "x")  # views are read-only
    assert (await svc.stat(svc.name, "v1", namespace=NS)).kind is Kind.VIEW


async def test_chain_of_three_layers_with_deletions(svc: SnapshotService) -> None:
    await _layer(svc, "l1", "", {"a": "1", "d/x": "x1", "d/y": "y1", "gone": "g"})
    await _layer(svc, "l2", "l1", {"a": "2", "gone": None, "d/y": None, "e/z": "z2"})
    await _layer(svc, "l3", "l2", {"d/x": "x3", "d": None})  # removes the whole dir over two layers
    await _layer(svc, "l4", "l3", {"d/new": "n4"})  # a dir re-created after deletion shows only new files
    mounts = await svc.prepare(svc.name, "top", "l4", namespace=NS, actor=ACTOR)
    with mounted(mounts) as root:
        assert _read(root, "a") == "2"
        assert not os.path.exists(os.path.join(root, "gone"))
        assert sorted(os.listdir(os.path.join(root, "d"))) == ["new"]
        assert _read(root, "e/z") == "z2"
        _write(root, "top-file", "t")
    # lower layers are unchanged: a view of l2 still shows d/x from l1
    with mounted(await svc.view(svc.name, "v2", "l2", namespace=NS, actor=ACTOR)) as root:
        assert sorted(os.listdir(os.path.join(root, "d"))) == ["x"]
        assert not os.path.exists(os.path.join(root, "top-file"))
    with mounted(await svc.view(svc.name, "v1", "l1", namespace=NS, actor=ACTOR)) as root:
        assert _read(root, "gone") == "g" and _read(root, "a") == "1"
    # mounts for an existing key give the same tree again
    with mounted(await svc.mounts(svc.name, "top", namespace=NS)) as root:
        assert _read(root, "top-file") == "t"
    infos = {i.name: i for i in await svc.walk(svc.name, namespace=NS)}
    assert infos["l3"].parent == "l2" and infos["l1"].parent == "" and infos["top"].kind is Kind.ACTIVE


async def test_whiteout_of_lower_file_is_a_char_device_on_overlay(svc: SnapshotService) -> None:
    await _layer(svc, "base", "", {"f": "1", "keep": "k"})
    await _layer(svc, "del", "base", {"f": None})
    if svc.name == "overlayfs":
        upper = svc.backends["overlayfs"].upper_dir(await _sid(svc, "del"))
        st = os.lstat(os.path.join(upper, "f"))
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    with mounted(await svc.view(svc.name, "v", "del", namespace=NS, actor=ACTOR)) as root:
        assert os.listdir(root) == ["keep"]


async def _sid(svc: SnapshotService, key: str) -> str:
    return await svc.journal.run_read(lambda c: c.execute(
        "SELECT sid FROM snapshots WHERE key = ? AND namespace = ?", (key, NS)).fetchone()[0])


async def test_errors_follow_containerd(svc: SnapshotService) -> None:
    await svc.prepare(svc.name, "a", namespace=NS, actor=ACTOR)
    with pytest.raises(AlreadyExists):
        await svc.prepare(svc.name, "a", namespace=NS, actor=ACTOR)
    with pytest.raises(NotFound):
        await svc.prepare(svc.name, "b", "no-such-parent", namespace=NS, actor=ACTOR)
    with pytest.raises(InvalidArgument):
        await svc.prepare(svc.name, "b", "a", namespace=NS, actor=ACTOR)  # parent is not committed
    await svc.view(svc.name, "v", namespace=NS, actor=ACTOR)
    with pytest.raises(FailedPrecondition):
        await svc.commit(svc.name, "cv", "v", namespace=NS, actor=ACTOR)  # a view cannot be committed
    await svc.commit(svc.name, "c", "a", namespace=NS, actor=ACTOR)
    await svc.prepare(svc.name, "a2", namespace=NS, actor=ACTOR)
    with pytest.raises(AlreadyExists):
        await svc.commit(svc.name, "c", "a2", namespace=NS, actor=ACTOR)
    with pytest.raises(NotFound):
        await svc.commit(svc.name, "x", "nope", namespace=NS, actor=ACTOR)
    with pytest.raises(NotFound):
        await svc.remove(svc.name, "nope", namespace=NS, actor=ACTOR)
    with pytest.raises(InvalidArgument):
        await svc.prepare(svc.name, "", namespace=NS, actor=ACTOR)


async def test_remove_order_children_first(svc: SnapshotService) -> None:
    await _layer(svc, "p", "", {"f": "1"})
    await _layer(svc, "c", "p", {"g": "2"})
    await svc.view(svc.name, "v", "c", namespace=NS, actor=ACTOR)
    be = svc.backends[svc.name]
    sid_p = await _sid(svc, "p")
    with pytest.raises(FailedPrecondition):
        await svc.remove(svc.name, "p", namespace=NS, actor=ACTOR)
    with pytest.raises(FailedPrecondition):
        await svc.remove(svc.name, "c", namespace=NS, actor=ACTOR)
    sid_v = await _sid(svc, "v")
    await svc.remove(svc.name, "v", namespace=NS, actor=ACTOR)
    assert not be.exists(sid_v)
    await svc.remove(svc.name, "c", namespace=NS, actor=ACTOR)
    await svc.remove(svc.name, "p", namespace=NS, actor=ACTOR)
    assert not be.exists(sid_p) and be.ids_on_disk() == []
    assert await svc.walk(svc.name, namespace=NS) == []
    # a removed key can be used again and gets a fresh backing id
    await svc.prepare(svc.name, "p", namespace=NS, actor=ACTOR)
    assert int(await _sid(svc, "p")) > int(sid_p)


async def test_namespaces_are_separate(svc: SnapshotService) -> None:
    await _layer(svc, "base", "", {"f": "1"})
    await svc.prepare(svc.name, "base", namespace="other", actor=ACTOR)  # same name, other namespace
    with pytest.raises(NotFound):
        await svc.prepare(svc.name, "k", "base-active", namespace="other", actor=ACTOR)
    with pytest.raises(InvalidArgument):
        await svc.prepare(svc.name, "k", "base", namespace="other", actor=ACTOR)  # other's base is active
    assert [i.name for i in await svc.walk(svc.name, namespace="other")] == ["base"]
    assert [i.kind for i in await svc.walk(svc.name, namespace=NS)] == [Kind.COMMITTED]


async def test_usage_active_from_upper_and_fixed_at_commit(svc: SnapshotService) -> None:
    await _layer(svc, "base", "", {"big": "x" * 100_000})
    mounts = await svc.prepare(svc.name, "k", "base", namespace=NS, actor=ACTOR)
    before = await svc.usage(svc.name, "k", namespace=NS)
    with mounted(mounts) as root:
        with open(os.path.join(root, "new"), "wb") as f:
            f.write(os.urandom(1 << 20))
        os.mkdir(os.path.join(root, "dir"))
    after = await svc.usage(svc.name, "k", namespace=NS)
    assert after.size - before.size >= 1 << 20
    assert after.inodes - before.inodes == 2
    if svc.name == "overlayfs":
        assert after.size < (1 << 20) + 64 * 1024  # the lower's 100 kB is not counted in the upper
    await svc.commit(svc.name, "c", "k", namespace=NS, actor=ACTOR)
    assert await svc.usage(svc.name, "c", namespace=NS) == after
    base = await svc.usage(svc.name, "base", namespace=NS)
    assert base.size >= 100_000 and base.inodes == 2


async def test_update_labels_with_field_paths_and_walk_filters(svc: SnapshotService) -> None:
    await svc.prepare(svc.name, "a", labels={"l1": "v1", "l2": "v2"}, namespace=NS, actor=ACTOR)
    await svc.prepare(svc.name, "b", labels={"containerd.io/gc.root": "x"}, namespace=NS, actor=ACTOR)
    info = await svc.update(svc.name, "a", {"l1": "new", "l3": "v3"}, paths=["labels.l1"], namespace=NS,
                            actor=ACTOR)
    assert info.labels == {"l1": "new", "l2": "v2"}
    info = await svc.update(svc.name, "a", {"l2": ""}, paths=["labels.l2"], namespace=NS, actor=ACTOR)
    assert info.labels == {"l1": "new"}
    info = await svc.update(svc.name, "a", {"only": "1"}, namespace=NS, actor=ACTOR)
    assert (await svc.stat(svc.name, "a", namespace=NS)).labels == {"only": "1"} == info.labels
    with pytest.raises(InvalidArgument):
        await svc.update(svc.name, "a", {}, paths=["parent"], namespace=NS, actor=ACTOR)
    names = lambda infos: [i.name for i in infos]  # noqa: E731
    assert names(await svc.walk(svc.name, 'labels."containerd.io/gc.root"', namespace=NS)) == ["b"]
    assert names(await svc.walk(svc.name, "labels.only==1", namespace=NS)) == ["a"]
    assert names(await svc.walk(svc.name, "name==a", "name==b", namespace=NS)) == ["a", "b"]
    assert names(await svc.walk(svc.name, "kind==active,name~=^b", namespace=NS)) == ["b"]
    assert names(await svc.walk(svc.name, "name!=a", namespace=NS)) == ["b"]
    with pytest.raises(InvalidArgument):
        await svc.walk(svc.name, "bogus==1", namespace=NS)


async def test_overlay_mount_specs(svc: SnapshotService) -> None:
    await _layer(svc, "l1", "", {"a": "1"})
    await _layer(svc, "l2", "l1", {"b": "2"})
    m_single = await svc.view(svc.name, "v1", "l1", namespace=NS, actor=ACTOR)
    m_multi = await svc.view(svc.name, "v2", "l2", namespace=NS, actor=ACTOR)
    m_active = await svc.prepare(svc.name, "a", "l2", namespace=NS, actor=ACTOR)
    if svc.name == "overlayfs":
        assert m_single[0].type == "bind" and "ro" in m_single[0].options
        assert m_multi[0].type == "overlay" and not any(o.startswith("upperdir") for o in m_multi[0].options)
        lower = next(o for o in m_active[0].options if o.startswith("lowerdir="))
        sid1, sid2 = await _sid(svc, "l1"), await _sid(svc, "l2")
        assert lower.endswith(f"/{sid2}/fs:" + lower.split(":")[1]) and lower.split(":")[1].endswith(f"/{sid1}/fs")
    else:
        assert all(m[0].type == "bind" for m in (m_single, m_multi, m_active))
    with mounted(m_multi) as root:
        assert sorted(os.listdir(root)) == ["a", "b"]
