"""Leases (containerd's semantics) and garbage collection with gc labels, roots, leases and ingests."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from engine.errors import AlreadyExists, InvalidArgument, NotFound, Unimplemented
from engine.images.content import digests
from engine.services.gc import GcCollected, label_refs
from engine.services.leases import LABEL_EXPIRE, Resource, parse_expire
from tests.unit.content.conftest import Env


def d(data: bytes) -> str:
    return digests.of_bytes(data)


async def put(env: Env, ns: str, data: bytes, labels: dict[str, str] | None = None, lease: str = "") -> str:
    w = await env.content.writer(ns, f"ref-{d(data)}", expected=d(data), lease=lease, actor="t")
    await w.write(data)
    await w.commit(labels=labels)
    return d(data)


async def held(env: Env, ns: str) -> set[str]:
    return {i.digest for i in await env.content.list(ns)}


def rfc3339(offset_s: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_lease_crud_and_filters(env: Env) -> None:
    ls = env.leases
    await ls.create("ns", "l1", {"team": "a"}, actor="t")
    await ls.create("ns", "l2", actor="t")
    with pytest.raises(AlreadyExists, match="lease 'l1': already exists"):
        await ls.create("ns", "l1", actor="t")
    with pytest.raises(InvalidArgument):
        await ls.create("ns", "bad/id", actor="t")
    assert [le.id for le in await ls.list("ns")] == ["l1", "l2"]
    assert [le.id for le in await ls.list("ns", ["labels.team==a"])] == ["l1"]
    assert [le.id for le in await ls.list("ns", ["id==l2"])] == ["l2"]
    assert await ls.list("other") == []
    dg = d(b"x")
    await ls.add_resource("ns", "l1", Resource(dg, "content"), actor="t")
    await ls.add_resource("ns", "l1", Resource(dg, "content"), actor="t")  # idempotent
    await ls.add_resource("ns", "l1", Resource("key", "snapshots/overlayfs"), actor="t")
    await ls.add_resource("ns", "l1", Resource("some-ref", "ingests"), actor="t")
    with pytest.raises(Unimplemented, match="unsupported resource type"):
        await ls.add_resource("ns", "l1", Resource("x", "images"), actor="t")
    with pytest.raises(InvalidArgument):
        await ls.add_resource("ns", "l1", Resource("not-a-digest", "content"), actor="t")
    with pytest.raises(NotFound):
        await ls.add_resource("ns", "nope", Resource(dg, "content"), actor="t")
    got = await ls.list_resources("ns", "l1")
    assert {(r.type, r.id) for r in got} == {("content", dg), ("snapshots/overlayfs", "key"), ("ingests", "some-ref")}
    await ls.delete_resource("ns", "l1", Resource(dg, "content"), actor="t")
    assert len(await ls.list_resources("ns", "l1")) == 2
    await ls.delete("ns", "l1", actor="t")
    with pytest.raises(NotFound):
        await ls.list_resources("ns", "l1")
    with pytest.raises(NotFound):
        await ls.delete("ns", "l1", actor="t")
    types = [e.type for e in await env.journal.read()]
    assert types.count("lease.resource_added") == 3 and types.count("lease.resource_removed") == 1
    assert types.count("lease.created") == 2 and types.count("lease.deleted") == 1
    rows = await env.journal.run_read(lambda c: c.execute("SELECT count(*) FROM lease_resources").fetchone()[0])
    assert rows == 0


async def test_unreferenced_content_is_collected_with_events_before_files_go(env: Env) -> None:
    keep_root = await put(env, "ns", b"root", {"containerd.io/gc.root": "1"})
    gone = await put(env, "ns", b"garbage")
    report = await env.gc.collect()
    assert report.content == [("ns", gone)] and report.blobs == [gone]
    assert await held(env, "ns") == {keep_root}
    assert not env.store.exists(gone) and env.store.exists(keep_root)
    evs = await env.journal.read()
    tail = [(e.type, e.cause) for e in evs[-4:]]
    assert tail == [("content.deleted", "gc"), ("content.blob_removal_requested", "gc"),
                    ("content.blob_removed", "gc"), ("gc.collected", "gc")]
    assert evs[-1].event == GcCollected(content=1, blobs=1, duration_ns=report.duration_ns)
    n = len(evs)
    again = await env.gc.collect()  # nothing left: no event
    assert again.content == [] and len(await env.journal.read()) == n


async def test_gc_ref_labels_are_followed_transitively(env: Env) -> None:
    layer = await put(env, "ns", b"layer")
    config = await put(env, "ns", b"config")
    manifest = await put(env, "ns", b"manifest", {"containerd.io/gc.ref.content.l.0": layer,
                                                   "containerd.io/gc.ref.content.config": config})
    index = await put(env, "ns", b"index", {"containerd.io/gc.ref.content.m.0": manifest,
                                             "containerd.io/gc.root": "x"})
    other_ns_layer = await put(env, "other", b"layer")  # same blob, other namespace, unreferenced there
    await env.gc.collect()
    assert await held(env, "ns") == {layer, config, manifest, index}
    assert await held(env, "other") == set()
    assert env.store.exists(other_ns_layer)  # ns still holds the blob
    await env.content.update("ns", index, {}, paths=["labels.containerd.io/gc.root"], actor="t")
    await env.gc.collect()
    assert await held(env, "ns") == set() and list(env.store.walk()) == []


async def test_leased_content_is_kept_until_the_lease_goes(env: Env) -> None:
    await env.leases.create("ns", "pull", actor="t")
    dg = await put(env, "ns", b"in flight", lease="pull")
    child = await put(env, "ns", b"child")
    await env.content.update("ns", dg, {"containerd.io/gc.ref.content": child}, actor="t")
    await env.gc.collect()
    assert await held(env, "ns") == {dg, child}
    assert {(r.type, r.id) for r in await env.leases.list_resources("ns", "pull")} == {("content", dg)}
    await env.leases.delete("ns", "pull", sync=True, actor="t")  # sync: collects before returning
    assert await held(env, "ns") == set() and list(env.store.walk()) == []


async def test_flat_lease_protects_only_its_resources(env: Env) -> None:
    await env.leases.create("ns", "flat", {"containerd.io/gc.flat": "1"}, actor="t")
    child = await put(env, "ns", b"child")
    parent = await put(env, "ns", b"parent", {"containerd.io/gc.ref.content": child}, lease="flat")
    await env.gc.collect()
    assert await held(env, "ns") == {parent}


async def test_expired_lease_is_deleted_and_protects_nothing(env: Env) -> None:
    await env.leases.create("ns", "old", {LABEL_EXPIRE: rfc3339(-5)}, actor="t")
    await env.leases.create("ns", "new", {LABEL_EXPIRE: rfc3339(3600)}, actor="t")
    a = await put(env, "ns", b"a", lease="old")
    b = await put(env, "ns", b"b", lease="new")
    report = await env.gc.collect()
    assert report.leases == [("ns", "old")]
    assert [le.id for le in await env.leases.list("ns")] == ["new"]
    assert await held(env, "ns") == {b} and not env.store.exists(a)


def test_expiry_parsing() -> None:
    assert parse_expire("2020-01-01T00:00:00Z") == 1577836800 * 10**9
    assert parse_expire("2020-01-01T00:00:00.123456789Z") == 1577836800 * 10**9 + 123456000
    assert parse_expire("2020-01-01T01:00:00+01:00") == 1577836800 * 10**9
    assert parse_expire("yesterday") is None and parse_expire("2020-01-01T00:00:00") is None


def test_label_refs() -> None:
    dg = d(b"x")
    refs = set(label_refs("ns", {"containerd.io/gc.ref.content": dg, "containerd.io/gc.ref.content.l.1": dg,
                                  "containerd.io/gc.ref.contentX": dg, "containerd.io/gc.ref.content.bad": "nope",
                                  "containerd.io/gc.ref.snapshot.overlayfs": "k1",
                                  "containerd.io/gc.ref.snapshot.native/2": "k2", "other": dg}))
    assert refs == {("content", "ns", dg), ("snapshots/overlayfs", "ns", "k1"), ("snapshots/native", "ns", "k2")}


async def test_ingests_are_never_collected_without_expiry_and_leased_ones_never(env: Env) -> None:
    await env.leases.create("ns", "l", actor="t")
    w = await env.content.writer("ns", "leased", lease="l", actor="t")
    await w.write(b"abc")
    await w.close()
    w = await env.content.writer("ns", "idle", actor="t")
    await w.write(b"abc")
    await w.close()
    busy = await env.content.writer("ns", "busy", actor="t")  # locked by a writer
    await env.gc.collect()
    assert [s.ref for s in await env.content.list_statuses("ns")] == ["busy", "idle", "leased"]
    report = await env.gc.collect(ingest_expiry_ns=0)
    assert report.ingests == [("ns", "idle")]
    assert [s.ref for s in await env.content.list_statuses("ns")] == ["busy", "leased"]
    await busy.write(b"still fine")
    await busy.close()


async def test_blob_on_disk_with_no_record_is_removed(env: Env) -> None:
    w = env.store.writer("stray")
    w.write(b"orphan")
    w.commit()
    report = await env.gc.collect()
    assert report.blobs == [d(b"orphan")] and list(env.store.walk()) == []


async def test_gc_hook_source_keeps_image_targets(env: Env) -> None:
    target = await put(env, "ns", b"manifest")

    class Images:
        def roots(self, tx, now_ns):  # type: ignore[no-untyped-def]
            yield ("content", "ns", target), True

        def refs(self, tx, node):  # type: ignore[no-untyped-def]
            return ()

    env.gc.add_source(Images())
    await put(env, "ns", b"junk")
    await env.gc.collect()
    assert await held(env, "ns") == {target}
    assert ("content", "ns", target) in await env.gc.marked()


async def test_a_lease_added_during_collection_is_respected(env: Env) -> None:
    dg = await put(env, "ns", b"racy")
    await env.leases.create("ns", "late", actor="t")
    # the plan is read first; the deletion is decided again inside the write transaction
    plan = await env.journal.run_read(lambda c: env.gc._unmarked_content(c.cursor(), time.time_ns()))
    assert plan == {"ns": [dg]}
    await env.leases.add_resource("ns", "late", Resource(dg, "content"), actor="t")
    report = await env.gc.collect()
    assert report.content == [] and await held(env, "ns") == {dg}


async def test_snapshot_labels_and_parents_reference_content(env: Env) -> None:
    """A gc.root snapshot keeps content named by its labels and by its parent's labels (snapshots table of
    migration 0003, written directly here: the snapshotter service is not under test)."""
    import json
    import sqlite3

    layer = await put(env, "ns", b"layer blob")
    other = await put(env, "ns", b"unreferenced")
    conn = sqlite3.connect(env.root / "engine.db")
    try:
        rows = [("parent", "", json.dumps({"containerd.io/gc.ref.content": layer})),
                ("child", "parent", '{"containerd.io/gc.root": "1"}')]
        for i, (key, parent, labels) in enumerate(rows):
            conn.execute("INSERT INTO snapshots(namespace, snapshotter, key, sid, kind, parent, labels, state, "
                         "created_ns, updated_ns) VALUES ('ns', 'overlayfs', ?, ?, 'committed', ?, ?, 'ready', 0, 0)",
                         (key, str(i), parent, labels))
        conn.commit()
    finally:
        conn.close()
    live = await env.gc.marked()
    assert {("snapshots/overlayfs", "ns", "child"), ("snapshots/overlayfs", "ns", "parent"),
            ("content", "ns", layer)} <= live
    report = await env.gc.collect()
    assert report.content == [("ns", other)]
    assert await held(env, "ns") == {layer}


async def test_open_content_services_recovers_a_pending_removal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from engine.events.journal import Journal
    from engine.services import all_projections
    from engine.services.content import ContentBlobRemovalRequested
    from engine.services.gc import open_content_services

    journal = Journal(tmp_path / "engine.db", all_projections())
    await journal.open()
    try:
        svcs = await open_content_services(journal, tmp_path, actor="t")
        w = svcs.content.store.writer("stray")
        w.write(b"half removed")
        w.commit()
        # the intent committed, then the process died before unlinking
        await journal.append([ContentBlobRemovalRequested(digest=d(b"half removed"))], namespace="", actor="t")
        svcs = await open_content_services(journal, tmp_path, actor="t")
        assert not svcs.content.store.exists(d(b"half removed"))
        assert [(e.type, e.cause) for e in (await journal.read())[-1:]] == [("content.blob_removed", "recover")]
        pending = await journal.run_read(lambda c: c.execute("SELECT count(*) FROM content_removals").fetchone()[0])
        assert pending == 0
    finally:
        await journal.close()


async def test_journal_verify_replays_content_lease_and_gc_history(env: Env) -> None:
    from engine.events.verify import verify_path
    from engine.services import all_projections

    await env.leases.create("ns", "l", {"containerd.io/gc.expire": rfc3339(-1)}, actor="t")
    keep = await put(env, "ns", b"keep", {"containerd.io/gc.root": ""})
    await put(env, "ns", b"drop", lease="l")
    await put(env, "other", b"keep")
    await env.content.update("ns", keep, {"x": "y"}, paths=["labels.x"], actor="t")
    w = await env.content.writer("ns", "stale", actor="t")
    await w.write(b"abc")
    await w.close()
    await env.gc.collect(ingest_expiry_ns=0)
    report = verify_path(str(env.root / "engine.db"), all_projections())
    assert report.chain_errors == []
    for table in ("content", "content_ingests", "content_removals", "leases", "lease_resources"):
        t = report.tables[table]
        assert (t.missing, t.extra) == ([], []), table
    # left: ns keeps its gc.root content; the expired lease, its content and the unreferenced copy in "other" went
    assert report.tables["content"].rows == 1 and report.tables["leases"].rows == 0


async def test_lease_ids_as_ctr_makes_them(env: Env) -> None:
    """ctr's random lease ids (`<nanos>-<base64url>`) can hold `--`, `-_` or end in `_`: containerd takes any
    non-empty id, so must we; ids that could not be stored or printed sanely are refused."""
    for id_ in ("321579006--6n5", "831758684-_1Me", "12-abc_", "a"):
        await env.leases.create("default", id_, actor="t")
    for bad in ("", "a/b", "x\x00y", "l\n", "x" * 257):
        with pytest.raises(InvalidArgument):
            await env.leases.create("default", bad, actor="t")
