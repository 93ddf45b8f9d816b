"""The journal's rules (DESIGN §2): append + project in one transaction, group commit, hash chain, refusal
rolls back alone, subscribers go from backlog to live with no gap and no duplicate, lagging readers catch up."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from engine.events.journal import GENESIS, Journal, row_hash
from engine.events.projection import Projection, Projections
from engine.services import all_projections
from engine.services.namespaces import NamespaceCreated, NamespaceService


@pytest.fixture
async def journal(tmp_path: Path):
    j = Journal(tmp_path / "engine.db", all_projections())
    await j.open()
    try:
        yield j
    finally:
        await j.close()


async def test_append_assigns_seq_hash_chain_and_projects(journal: Journal) -> None:
    ns = NamespaceService(journal)
    await ns.create("a", {"k": "v"}, actor="uid=0")
    await ns.create("b", actor="uid=1")
    rows = await journal.read()
    assert [r.seq for r in rows] == [1, 2]
    assert rows[0].prev_hash == GENESIS and rows[1].prev_hash == rows[0].hash
    assert [r.actor for r in rows] == ["uid=0", "uid=1"]
    assert rows[0].event == NamespaceCreated(name="a", labels={"k": "v"})
    assert [n.name for n in await ns.list()] == ["a", "b"]


async def test_refused_request_rolls_back_alone_inside_a_group_commit(journal: Journal) -> None:
    ns = NamespaceService(journal)
    await ns.create("dup", actor="t")
    results = await asyncio.gather(
        *[ns.create(f"ok{i}", actor="t") for i in range(50)], ns.create("dup", actor="t"),
        *[ns.create(f"more{i}", actor="t") for i in range(50)], return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], AlreadyExists)
    rows = await journal.read(limit=10_000)
    assert [r.seq for r in rows] == list(range(1, 102))  # no hole where the refused one was
    for prev, cur in zip(rows, rows[1:], strict=False):
        assert cur.prev_hash == prev.hash
    assert journal.stats.largest_batch > 1  # they really were committed together


async def test_decide_sees_the_state_inside_the_transaction(journal: Journal) -> None:
    ns = NamespaceService(journal)
    await ns.create("n", {"a": "1"}, actor="t")
    await asyncio.gather(*[ns.update("n", {f"k{i}": "v"}, paths=[f"labels.k{i}"], actor="t") for i in range(20)])
    got = await ns.get("n")
    assert got.labels == {"a": "1", **{f"k{i}": "v" for i in range(20)}}  # no lost update


async def test_namespace_errors_and_nothing_written(journal: Journal) -> None:
    ns = NamespaceService(journal)
    for bad in ("", "-x", "a..b", "a" * 77, "white space", "ünïcode"):
        with pytest.raises(InvalidArgument):
            await ns.create(bad, actor="t")
    with pytest.raises(InvalidArgument):
        await ns.create("ok", {"k": "v" * 5000}, actor="t")
    with pytest.raises(NotFound):
        await ns.delete("missing", actor="t")
    with pytest.raises(NotFound):
        await ns.update("missing", {}, actor="t")
    assert await journal.read() == []
    await ns.create("there", {"a": "1"}, actor="t")
    with pytest.raises(InvalidArgument, match="cannot update 'name'"):
        await ns.update("there", {}, paths=["name"], actor="t")
    assert len(await journal.read()) == 1 and (await ns.get("there")).labels == {"a": "1"}


async def test_delete_of_a_non_empty_namespace_fails(tmp_path: Path) -> None:
    """Any projection's namespaced table holding a row keeps its namespace from being deleted."""

    class Thing(NamespaceCreated.__mro__[1], frozen=True):  # an Event subclass
        TYPE = "test.thing_made"
        SUBJECT = "id"
        id: str

    def apply(env, tx):  # type: ignore[no-untyped-def]
        tx.execute("INSERT INTO things(namespace, id) VALUES (?, ?)", (env.namespace, env.event.id))

    projections = Projections([*all_projections().all, Projection("things", ("things",), (Thing,), apply,
                                                                   namespaced_tables=("things",))])
    db = tmp_path / "engine.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE things (namespace TEXT, id TEXT)")
    conn.close()
    j = Journal(db, projections)
    await j.open()
    try:
        ns = NamespaceService(j)
        await ns.create("busy", actor="t")
        await j.append([Thing(id="x")], namespace="busy", actor="t")
        with pytest.raises(FailedPrecondition, match="must be empty, but it still has things"):
            await ns.delete("busy", actor="t")
        assert (await ns.get("busy")).name == "busy"
    finally:
        await j.close()


async def test_subscribe_backlog_then_live_no_gap_no_duplicate(journal: Journal) -> None:
    ns = NamespaceService(journal)
    for i in range(30):
        await ns.create(f"pre{i}", actor="t")
    seen: list[int] = []

    async def reader() -> None:
        async for env in journal.subscribe(after_seq=10):
            seen.append(env.seq)
            if env.seq == 30 + 300:
                return

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)  # the reader is mid-backlog while the writers go on
    await asyncio.gather(*[ns.create(f"live{i}", actor="t") for i in range(300)])
    await asyncio.wait_for(task, 10)
    assert seen == list(range(11, 331))


async def test_subscribe_from_now_sees_only_new(journal: Journal) -> None:
    ns = NamespaceService(journal)
    await ns.create("old", actor="t")
    got = []

    async def reader() -> None:
        async for env in journal.subscribe():
            got.append(env.subject)
            return

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.01)
    await ns.create("new", actor="t")
    await asyncio.wait_for(task, 5)
    assert got == ["new"]


async def test_lagging_subscriber_falls_back_to_the_database(tmp_path: Path) -> None:
    j = Journal(tmp_path / "engine.db", all_projections(), queue_size=5)
    await j.open()
    try:
        ns = NamespaceService(j)
        await ns.create("first", actor="t")
        it = j.subscribe(after_seq=0)
        first = await it.__anext__()  # registered; now do not read while 199 events arrive
        await asyncio.gather(*[ns.create(f"n{i}", actor="t") for i in range(199)])
        rest = [first.seq]
        while rest[-1] < 200:
            rest.append((await asyncio.wait_for(it.__anext__(), 5)).seq)
        await it.aclose()
        assert rest == list(range(1, 201))
        assert j.subscriber_count == 0
    finally:
        await j.close()


async def test_journal_is_append_only_in_the_database(journal: Journal) -> None:
    await NamespaceService(journal).create("x", actor="t")
    conn = sqlite3.connect(journal.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE events SET actor = 'someone else'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM events")
    finally:
        conn.close()


async def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    j = Journal(tmp_path / "engine.db", all_projections())
    await j.open()
    await NamespaceService(j).create("a", actor="t")
    await j.close()
    j2 = Journal(tmp_path / "engine.db", all_projections())
    await j2.open()
    try:
        await NamespaceService(j2).create("b", actor="t")
        a, b = await j2.read()
        assert b.seq == 2 and b.prev_hash == a.hash
        assert b.hash == row_hash(a.hash, 2, b.time_ns, "b", "namespace.created", "b", "t", "api", 1,
                                  b'{"name":"b"}')
    finally:
        await j2.close()


async def test_append_after_close_is_refused(tmp_path: Path) -> None:
    j = Journal(tmp_path / "engine.db", all_projections())
    await j.open()
    await j.close()
    with pytest.raises(Exception, match="closed"):
        await NamespaceService(j).create("late", actor="t")
