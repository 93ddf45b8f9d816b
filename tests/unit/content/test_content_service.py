"""The journal-backed content service: namespaced records over shared blobs, events, labels, walk, delete."""

from __future__ import annotations

import pytest

from engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from engine.images.content import digests
from engine.services.content import ContentCommitted, ContentIngestStarted
from engine.services.namespaces import NamespaceService
from tests.unit.content.conftest import Env

DATA = b"0123456789" * 1000
DGST = digests.of_bytes(DATA)


async def put(env: Env, ns: str, data: bytes, ref: str = "", labels: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    w = await env.content.writer(ns, ref or f"ref-{digests.of_bytes(data)}", total=len(data),
                                 expected=digests.of_bytes(data), actor="test")
    await w.write(data)
    return await w.commit(len(data), digests.of_bytes(data), labels)


async def types(env: Env) -> list[str]:
    return [e.type for e in await env.journal.read()]


async def test_ingest_commit_records_events_and_row(env: Env) -> None:
    w = await env.content.writer("ns1", "r1", total=len(DATA), expected=DGST, actor="test")
    await w.write(DATA[:5000])
    st = await env.content.status("ns1", "r1")
    assert (st.ref, st.offset, st.total, st.expected) == ("r1", 5000, len(DATA), DGST)
    await w.write(DATA[5000:])
    info = await w.commit(labels={"a": "b"})
    assert (info.digest, info.size, info.labels) == (DGST, len(DATA), {"a": "b"})
    evs = await env.journal.read()
    assert [e.type for e in evs] == ["namespace.created", "content.ingest_started", "content.committed"]
    assert evs[1].event == ContentIngestStarted(ref="r1", expected=DGST, total=len(DATA))
    assert evs[2].event == ContentCommitted(digest=DGST, size=len(DATA), labels={"a": "b"}, ref="r1")
    assert all(e.namespace == "ns1" for e in evs)
    got = await env.content.info("ns1", DGST)
    assert (got.size, got.labels) == (len(DATA), {"a": "b"})
    assert await env.content.read("ns1", DGST) == DATA
    assert await env.content.list_statuses("ns1") == []
    assert [n.name for n in await NamespaceService(env.journal).list()] == ["ns1"]


async def test_content_is_namespaced_but_blobs_are_shared(env: Env) -> None:
    await put(env, "a", DATA)
    with pytest.raises(NotFound, match="content digest"):
        await env.content.info("b", DGST)
    with pytest.raises(NotFound):
        await env.content.reader_at("b", DGST)
    info = await put(env, "b", DATA)  # the blob exists on disk: b still gets its own record
    assert info.digest == DGST
    assert [b.digest for b in env.store.walk()] == [DGST]
    with pytest.raises(AlreadyExists, match=f"content {DGST}: already exists"):
        await put(env, "b", DATA, ref="other")
    with pytest.raises(AlreadyExists):  # opening a writer for held content says so at once
        await env.content.writer("b", "x", expected=DGST, actor="t")
    await env.content.delete("a", DGST, actor="t")
    assert env.store.exists(DGST)  # b still holds it
    await env.content.delete("b", DGST, actor="t")
    assert not env.store.exists(DGST)
    tail = (await types(env))[-4:]
    assert tail == ["content.deleted", "content.deleted", "content.blob_removal_requested", "content.blob_removed"]


async def test_second_writer_is_unavailable_and_resume_after_close(env: Env) -> None:
    w = await env.content.writer("ns", "r", actor="t")
    await w.write(DATA[:10])
    with pytest.raises(Unavailable, match="locked"):
        await env.content.writer("ns", "r", actor="t")
    with pytest.raises(Unavailable):
        await env.content.abort("ns", "r", actor="t")
    await w.close()
    w2 = await env.content.writer("ns", "r", actor="t")
    assert w2.offset == 10
    await w2.write(DATA[10:])
    assert (await w2.commit(expected=DGST)).digest == DGST
    assert (await types(env)).count("content.ingest_started") == 1


async def test_same_ref_in_two_namespaces_are_two_ingests(env: Env) -> None:
    a = await env.content.writer("a", "r", actor="t")
    b = await env.content.writer("b", "r", actor="t")
    await a.write(b"aaa")
    await b.write(b"bbbb")
    assert (await env.content.status("a", "r")).offset == 3
    assert (await env.content.status("b", "r")).offset == 4
    await a.close()
    await b.close()


async def test_abort(env: Env) -> None:
    w = await env.content.writer("ns", "r", actor="t")
    await w.write(DATA)
    await w.close()
    await env.content.abort("ns", "r", actor="t")
    with pytest.raises(NotFound):
        await env.content.status("ns", "r")
    with pytest.raises(NotFound):
        await env.content.abort("ns", "r", actor="t")
    assert env.store.list_statuses() == []
    assert (await types(env))[-1] == "content.ingest_aborted"


async def test_wrong_digest_or_size_stores_nothing(env: Env) -> None:
    w = await env.content.writer("ns", "r", actor="t")
    await w.write(DATA)
    wrong = digests.of_bytes(b"nope")
    with pytest.raises(FailedPrecondition, match=f"unexpected commit digest {DGST}, expected {wrong}"):
        await w.commit(expected=wrong)
    with pytest.raises(FailedPrecondition, match="unexpected commit size"):
        await w.commit(size=len(DATA) - 1)
    assert await env.content.list("ns") == []
    assert list(env.store.walk()) == []
    assert "content.committed" not in await types(env)
    await w.close()
    await env.content.abort("ns", "r", actor="t")


async def test_labels_update_with_field_masks(env: Env) -> None:
    await put(env, "ns", DATA, labels={"a": "1", "b": "2"})
    up = env.content.update
    assert (await up("ns", DGST, {"c": "3"}, paths=["labels.c"], actor="t")).labels == {"a": "1", "b": "2", "c": "3"}
    assert (await up("ns", DGST, {}, paths=["labels.a"], actor="t")).labels == {"b": "2", "c": "3"}
    assert (await up("ns", DGST, {"x": "y"}, paths=["labels"], actor="t")).labels == {"x": "y"}
    assert (await up("ns", DGST, {"z": "1"}, actor="t")).labels == {"z": "1"}
    with pytest.raises(InvalidArgument, match="cannot update 'size'"):
        await up("ns", DGST, {}, paths=["size"], actor="t")
    with pytest.raises(InvalidArgument):
        await up("ns", DGST, {"k": "v" * 5000}, actor="t")
    with pytest.raises(NotFound):
        await up("other", DGST, {}, actor="t")
    assert (await env.content.info("ns", DGST)).labels == {"z": "1"}
    assert (await types(env)).count("content.labels_updated") == 4


async def test_walk_with_containerd_filters(env: Env) -> None:
    a = await put(env, "ns", b"a" * 10, labels={"kind": "layer", "containerd.io/uncompressed": "x"})
    b = await put(env, "ns", b"b" * 20, labels={"kind": "config"})
    c = await put(env, "ns", b"c" * 30)
    ls = env.content.list
    assert {i.digest for i in await ls("ns")} == {a.digest, b.digest, c.digest}
    assert [i.digest for i in await ls("ns", ["labels.kind==layer"])] == [a.digest]
    assert {i.digest for i in await ls("ns", ["labels.kind"])} == {a.digest, b.digest}
    assert {i.digest for i in await ls("ns", ["labels.kind==layer", "labels.kind==config"])} == {a.digest, b.digest}
    assert [i.digest for i in await ls("ns", [f"digest=={c.digest}"])] == [c.digest]
    assert [i.digest for i in await ls("ns", ['labels."containerd.io/uncompressed"'])] == [a.digest]
    assert [i.digest for i in await ls("ns", ["size==20"])] == [b.digest]
    assert {i.digest for i in await ls("ns", ["labels.kind!=layer"])} == {b.digest, c.digest}
    with pytest.raises(InvalidArgument):
        await ls("ns", ["labels.kind=="])
    assert await ls("other") == []


async def test_list_statuses_filters(env: Env) -> None:
    for ref in ("layer-1", "layer-2", "manifest-1"):
        await (await env.content.writer("ns", ref, actor="t")).close()
    assert [s.ref for s in await env.content.list_statuses("ns")] == ["layer-1", "layer-2", "manifest-1"]
    assert [s.ref for s in await env.content.list_statuses("ns", ["ref~=layer"])] == ["layer-1", "layer-2"]


async def test_delete_missing_and_bad_input(env: Env) -> None:
    with pytest.raises(NotFound):
        await env.content.delete("ns", DGST, actor="t")
    with pytest.raises(InvalidArgument):
        await env.content.delete("ns", "sha256:nothex", actor="t")
    with pytest.raises(InvalidArgument):
        await env.content.writer("bad/ns", "r", actor="t")
    with pytest.raises(InvalidArgument):
        await env.content.writer("ns", "", actor="t")
    with pytest.raises(InvalidArgument):
        await env.content.writer("ns", "r", expected="sha256:00", actor="t")
    with pytest.raises(InvalidArgument):
        await env.content.writer("ns", "r", total=-5, actor="t")
    assert await env.journal.read() == []
    assert env.store.list_statuses() == [] and list(env.store.walk()) == []


async def test_namespace_with_content_cannot_be_deleted(env: Env) -> None:
    await put(env, "ns", DATA)
    with pytest.raises(FailedPrecondition, match="content"):
        await NamespaceService(env.journal).delete("ns", actor="t")


async def test_recover_resolves_ingests_without_directories_and_pending_removals(env: Env) -> None:
    # an ingest renamed into place but whose committed event never came (crash between the two)
    w = await env.content.writer("ns", "r1", expected=DGST, actor="t")
    await w.write(DATA)
    w._w.commit()  # the disk step alone
    # an ingest whose directory vanished without a blob
    w2 = await env.content.writer("ns", "r2", actor="t")
    await w2.close()
    env.store.abort("ns/r2")
    done = await env.content.recover(actor="recover")
    assert done == {"removals": 0, "committed": 1, "aborted": 1}
    assert (await env.content.info("ns", DGST)).size == len(DATA)
    assert await env.content.list_statuses("ns") == []


async def test_replay_rebuilds_the_same_tables(env: Env) -> None:
    await put(env, "a", DATA, labels={"x": "1"})
    await put(env, "b", b"other")
    await env.content.update("a", DGST, {"y": "2"}, paths=["labels.y"], actor="t")
    await env.leases.create("a", "l1", {"k": "v"}, actor="t")
    from engine.services.leases import Resource
    await env.leases.add_resource("a", "l1", Resource(DGST, "content"), actor="t")
    await (await env.content.writer("a", "open", actor="t")).close()
    await env.content.delete("b", digests.of_bytes(b"other"), actor="t")
    tables = ["content", "content_ingests", "content_removals", "leases", "lease_resources"]

    def dump(conn):  # type: ignore[no-untyped-def]
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in tables}

    before = await env.journal.run_read(dump)
    await env.journal.close()
    import sqlite3
    conn = sqlite3.connect(env.root / "engine.db")
    for t in tables:
        conn.execute(f"DELETE FROM {t}")
    conn.execute("DELETE FROM projection_positions WHERE name IN ('content', 'leases')")
    conn.commit()
    conn.close()
    from tests.unit.content.conftest import open_env
    env2 = await open_env(env.root)
    try:
        assert await env2.journal.run_read(dump) == before
    finally:
        await env2.journal.close()
        env.journal = env2.journal


async def test_shared_content_is_recorded_without_a_copy(env: Env) -> None:
    await put(env, "a", DATA)
    w = await env.content.writer("b", "r", total=len(DATA), expected=DGST, actor="t")
    info = await w.commit()  # no byte written: the blob is on disk already
    assert (info.digest, info.size) == (DGST, len(DATA))
    assert (await env.content.info("b", DGST)).size == len(DATA)
    assert env.store.list_statuses() == [] and await env.content.list_statuses("b") == []
    # without the blob on disk, committing nothing is a size/digest mismatch as usual
    w = await env.content.writer("b", "r2", expected=digests.of_bytes(b"absent"), actor="t")
    with pytest.raises(FailedPrecondition, match="unexpected commit digest"):
        await w.commit()
    await w.close()
    w = await env.content.writer("c", "r3", expected=DGST, actor="t")
    with pytest.raises(FailedPrecondition, match="unexpected commit size 0, expected 5"):
        await w.commit(size=5)  # a size that does not match the shared blob is not a shortcut
    await w.close()
