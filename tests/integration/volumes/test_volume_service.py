"""The volume service with real mounts: a plain volume is a directory; a tmpfs volume is mounted at its
first container's start and unmounted after the last stops; a referenced volume cannot be removed; copy-up
fills only an empty volume; recovery releases the mounts of containers that no longer run. Every change is
journaled and replays to the same tables."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from engine.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from engine.events.journal import Journal
from engine.events.verify import verify_path
from engine.services import all_projections
from engine.services.volumes import ANONYMOUS_LABEL, VolumeService, _mounted

ACTOR = "test"


@pytest.fixture
async def svc():  # type: ignore[no-untyped-def]
    root = Path(tempfile.mkdtemp(prefix="vol-"))
    journal = Journal(str(root / "engine.db"), all_projections())
    await journal.open()
    try:
        yield VolumeService(journal, root)
    finally:
        await journal.close()
        with open("/proc/self/mountinfo") as f:
            for mp in [line.split()[4] for line in f if str(root) in line.split()[4]]:
                subprocess.run(["umount", "-l", mp], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


async def test_named_and_anonymous(svc: VolumeService) -> None:
    v = await svc.create("data1", labels={"a": "b"}, actor=ACTOR)
    assert Path(v.mountpoint).is_dir() and v.mountpoint.endswith("/volumes/data1/_data")
    again = await svc.create("data1", actor=ACTOR)  # idempotent, as docker volume create
    assert again.created_ns == v.created_ns and again.labels == {"a": "b"}
    anon = await svc.create(actor=ACTOR)
    assert len(anon.name) == 64 and anon.anonymous and ANONYMOUS_LABEL in anon.labels
    assert [x.name for x in await svc.list()] == sorted(["data1", anon.name])
    removed, _ = await svc.prune(actor=ACTOR)
    assert removed == [anon.name]  # only anonymous ones without all=true
    removed, _ = await svc.prune(all_volumes=True, labels=["a=c"], actor=ACTOR)
    assert removed == []
    await svc.remove("data1", actor=ACTOR)
    assert not Path(v.mountpoint).exists()
    with pytest.raises(NotFound, match="get data1: no such volume"):
        await svc.get("data1")


@pytest.mark.parametrize(("name", "opts", "err", "match"), [
    ("x", {}, InvalidArgument, "includes invalid characters"),
    ("../etc", {}, InvalidArgument, "includes invalid characters"),
    ("ok1", {"bogus": "1"}, InvalidArgument, "invalid option"),
    ("ok2", {"device": "tmpfs"}, InvalidArgument, 'missing required option: "type"'),
    ("ok3", {"type": "none", "o": "bind", "device": "/nonexistent/x"}, InvalidArgument, "no such file"),
])
async def test_bad_input_changes_nothing(svc: VolumeService, name: str, opts: dict, err: type, match: str) -> None:
    before = svc.journal.last_seq
    with pytest.raises(err, match=match):
        await svc.create(name, options=opts, actor=ACTOR)
    assert svc.journal.last_seq == before and await svc.list() == []
    assert not (svc.root / name).exists()


async def test_unknown_driver_and_conflicting_options(svc: VolumeService) -> None:
    with pytest.raises(NotFound, match='plugin "nfsx" not found'):
        await svc.create("v1", driver="nfsx", actor=ACTOR)
    await svc.create("v2", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}, actor=ACTOR)
    with pytest.raises(AlreadyExists):
        await svc.create("v2", options={"type": "tmpfs", "device": "tmpfs", "o": "size=2m"}, actor=ACTOR)


async def test_tmpfs_volume_is_mounted_while_used_and_in_use_blocks_remove(svc: VolumeService) -> None:
    v = await svc.create("tv", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}, actor=ACTOR)
    assert not _mounted(v.mountpoint)
    path = await svc.mount("tv", "c1", destination="/data", actor=ACTOR)
    await svc.mount("tv", "c2", destination="/data", actor=ACTOR)
    assert path == v.mountpoint and _mounted(path)
    with pytest.raises(Conflict, match=r"remove tv: volume is in use - \[c1, c2\]"):
        await svc.remove("tv", actor=ACTOR)
    await svc.unmount("tv", "c1", actor=ACTOR)
    assert _mounted(path), "c2 still runs with it"
    await svc.unmount("tv", "c2", actor=ACTOR)
    assert not _mounted(path)
    await svc.dereference_all("c1", actor=ACTOR)
    await svc.dereference_all("c2", actor=ACTOR)
    await svc.remove("tv", actor=ACTOR)
    report = verify_path(str(svc.journal.path), all_projections())
    assert report.ok, report


async def test_copy_up_only_into_an_empty_volume(svc: VolumeService, tmp_path: Path) -> None:
    src = tmp_path / "img-data"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("from the image")
    await svc.create("cv", actor=ACTOR)
    assert await svc.populate("cv", src, container="c1", actor=ACTOR)
    assert (svc.path("cv") / "sub" / "f").read_text() == "from the image"
    assert not await svc.populate("cv", src, actor=ACTOR)


async def test_rm_v_removes_anonymous_volumes_only_and_recovery_releases_mounts(svc: VolumeService) -> None:
    anon = await svc.create(actor=ACTOR)
    await svc.create("keep", actor=ACTOR)
    await svc.reference(anon.name, "c1", actor=ACTOR)
    await svc.reference("keep", "c1", actor=ACTOR)
    assert await svc.dereference_all("c1", remove_anonymous=True, actor=ACTOR) == [anon.name]
    assert [v.name for v in await svc.list()] == ["keep"]
    t = await svc.create("tv2", options={"type": "tmpfs", "device": "tmpfs"}, actor=ACTOR)
    await svc.mount("tv2", "gone", actor=ACTOR)
    (svc.root / "stray").mkdir()
    await svc.recover(running=set(), actor=ACTOR)
    assert not _mounted(t.mountpoint) and not (svc.root / "stray").exists()
    assert (await svc.get("tv2")).mounted_by == []
