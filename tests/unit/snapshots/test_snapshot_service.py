"""The Snapshots service over a real journal (no mounts): the events it writes, replay, recovery of
every half-done side effect, label field paths and Walk filters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.events.verify import verify_path
from engine.images.snapshots import Info, Kind
from engine.services.snapshots import (
    SnapshotPrepareRequested,
    SnapshotRemoveRequested,
    compile_filters,
    matches,
)
from tests.integration.snapshots.helpers import ACTOR, NS, open_service, projections


async def _types(svc) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.type for e in await svc.journal.read() if e.type.startswith("snapshot.")]


async def test_events_bracket_side_effects_and_replay_matches(tmp_path: Path) -> None:
    async with open_service(tmp_path, "overlayfs") as svc:
        await svc.prepare("overlayfs", "k", labels={"a": "1"}, namespace=NS, actor=ACTOR)
        await svc.commit("overlayfs", "c", "k", namespace=NS, actor=ACTOR)
        await svc.view("overlayfs", "v", "c", namespace=NS, actor=ACTOR)
        await svc.update("overlayfs", "c", {"b": "2"}, paths=["labels.b"], namespace=NS, actor=ACTOR)
        await svc.remove("overlayfs", "v", namespace=NS, actor=ACTOR)
        assert await _types(svc) == [
            "snapshot.prepare_requested", "snapshot.prepared", "snapshot.committed",
            "snapshot.prepare_requested", "snapshot.prepared", "snapshot.labels_updated",
            "snapshot.remove_requested", "snapshot.removed"]
        envs = await svc.journal.read()
        assert all(e.namespace == NS for e in envs if e.type.startswith("snapshot."))
    report = verify_path(str(tmp_path / "engine.db"), projections())
    assert report.ok, report.to_dict()


async def test_failed_create_is_recorded_and_leaves_nothing(tmp_path: Path) -> None:
    async with open_service(tmp_path, "overlayfs") as svc:
        be = svc.backends["overlayfs"]
        os.mkdir(os.path.join(be.dir, "1"))  # the backing id the next prepare will get is taken on disk
        with pytest.raises(FileExistsError):
            await svc.prepare("overlayfs", "k", namespace=NS, actor=ACTOR)
        assert (await _types(svc))[-1] == "snapshot.prepare_failed"
        assert await svc.walk("overlayfs", namespace=NS) == []
        await svc.prepare("overlayfs", "k", namespace=NS, actor=ACTOR)  # next id, works


async def test_recover_resolves_every_intent_and_mismatch(tmp_path: Path) -> None:
    async with open_service(tmp_path, "overlayfs") as svc:
        be = svc.backends["overlayfs"]
        # a prepare that crashed after its intent and mkdir
        await svc.journal.append([SnapshotPrepareRequested(snapshotter="overlayfs", key="half", sid="100",
                                                           kind="active")], namespace=NS, actor=ACTOR)
        be.create("100", Kind.ACTIVE, [])
        # a removal that crashed after its intent
        await svc.prepare("overlayfs", "dying", namespace=NS, actor=ACTOR)
        sid = await svc.journal.run_read(lambda c: c.execute(
            "SELECT sid FROM snapshots WHERE key='dying'").fetchone()[0])
        await svc.journal.append([SnapshotRemoveRequested(snapshotter="overlayfs", key="dying", sid=sid)],
                                 namespace=NS, actor=ACTOR)
        # a committed snapshot whose directory vanished, with a child that is now unusable
        await svc.prepare("overlayfs", "base-k", namespace=NS, actor=ACTOR)
        await svc.commit("overlayfs", "base", "base-k", namespace=NS, actor=ACTOR)
        await svc.prepare("overlayfs", "child", "base", namespace=NS, actor=ACTOR)
        await svc.prepare("overlayfs", "fine", namespace=NS, actor=ACTOR)
        base_sid = await svc.journal.run_read(lambda c: c.execute(
            "SELECT sid FROM snapshots WHERE key='base'").fetchone()[0])
        be.remove(base_sid)
        # a directory no row names (a crash before the intent was written)
        os.makedirs(os.path.join(be.dir, "999", "fs"))

        rep = await svc.recover(actor="engine")
        assert rep.prepares_undone == [f"{NS}/overlayfs/half"]
        assert rep.removals_finished == [f"{NS}/overlayfs/dying"]
        assert rep.missing_dropped == [f"{NS}/overlayfs/child", f"{NS}/overlayfs/base"]
        assert rep.orphan_dirs_removed == ["overlayfs/999"]
        assert [i.name for i in await svc.walk("overlayfs", namespace=NS)] == ["fine"]
        fine_sid = await svc.journal.run_read(lambda c: c.execute(
            "SELECT sid FROM snapshots WHERE key='fine'").fetchone()[0])
        assert be.ids_on_disk() == [fine_sid]
        recovered = [e for e in await svc.journal.read() if e.cause == "recover"]
        assert [e.type for e in recovered] == ["snapshot.prepare_failed", "snapshot.removed", "snapshot.removed",
                                               "snapshot.removed"]
        assert (await svc.recover()).orphan_dirs_removed == []  # idempotent


def test_filters() -> None:
    info = Info(kind=Kind.COMMITTED, name="sha256:abc", parent="p", labels={"containerd.io/gc.root": "t", "x": ""})
    ok = lambda *f: matches(info, compile_filters(f))  # noqa: E731
    assert ok() and ok("kind==committed") and ok('labels."containerd.io/gc.root"==t')
    assert ok("labels.x") and not ok("labels.y") and ok("name~=^sha256:", "name==nope")
    assert not ok("kind==committed,parent!=p") and ok("kind==view", "parent==p")
    for bad in ("size==1", "name=~x", "name~=("):
        with pytest.raises(InvalidArgument):
            compile_filters([bad])


async def test_concurrent_commands_are_decided_in_the_writer(tmp_path: Path) -> None:
    import asyncio

    from engine.errors import AlreadyExists, FailedPrecondition, NotFound

    async with open_service(tmp_path, "overlayfs") as svc:
        results = await asyncio.gather(*[svc.prepare("overlayfs", "same", namespace=NS, actor=ACTOR)
                                         for _ in range(8)], return_exceptions=True)
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, AlreadyExists) for r in results if isinstance(r, BaseException))
        await svc.commit("overlayfs", "p", "same", namespace=NS, actor=ACTOR)
        child, rm = await asyncio.gather(svc.prepare("overlayfs", "c", "p", namespace=NS, actor=ACTOR),
                                         svc.remove("overlayfs", "p", namespace=NS, actor=ACTOR),
                                         return_exceptions=True)
        # exactly one wins: either the child exists over p, or p is gone and the child was refused
        if isinstance(rm, BaseException):
            assert isinstance(rm, FailedPrecondition) and not isinstance(child, BaseException)
        else:
            assert isinstance(child, NotFound)
        ids = sorted(int(i) for i in svc.backends["overlayfs"].ids_on_disk())
        rows = await svc.journal.run_read(lambda c: sorted(int(r[0]) for r in c.execute("SELECT sid FROM snapshots")))
        assert ids == rows


async def test_bad_namespace_and_unknown_snapshotter(tmp_path: Path) -> None:
    from engine.errors import NotFound

    async with open_service(tmp_path, "overlayfs") as svc:
        with pytest.raises(InvalidArgument):
            await svc.prepare("overlayfs", "k", namespace="bad/ns", actor=ACTOR)
        with pytest.raises(NotFound):
            await svc.prepare("zfs", "k", namespace=NS, actor=ACTOR)
