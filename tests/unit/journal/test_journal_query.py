"""JournalQuery's SQL and its live predicate agree on every event; the audit filters."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.events.journal import Journal
from engine.events.query import JournalQuery
from engine.services import all_projections
from engine.services.namespaces import NamespaceService


@pytest.fixture
async def journal(tmp_path: Path):
    j = Journal(tmp_path / "engine.db", all_projections())
    await j.open()
    ns = NamespaceService(j)
    for i in range(12):
        await ns.create(f"team-{i % 3}-{i}", actor=f"uid={1000 + i % 2} gid=0 pid={i}")
    await ns.update("team-0-0", {"a": "b"}, actor="uid=0 gid=0 pid=1")
    await ns.delete("team-1-1", actor="tls:CN=alice")
    try:
        yield j
    finally:
        await j.close()


QUERIES = [
    JournalQuery(),
    JournalQuery(types=["namespace.created"]),
    JournalQuery(types=["namespace.*"]),
    JournalQuery(types=["namespace.updated", "namespace.deleted"]),
    JournalQuery(subjects=["team-0-*"]),
    JournalQuery(namespaces=["team-1-1"]),
    JournalQuery(actors=["uid=1001*"]),
    JournalQuery(actors=["tls:*"]),
    JournalQuery(from_seq=3, to_seq=7),
    JournalQuery(types=["namespace.created"], actors=["uid=1000*"], from_seq=2),
]


@pytest.mark.parametrize("q", QUERIES, ids=[str(i) for i in range(len(QUERIES))])
async def test_sql_and_predicate_agree(journal: Journal, q: JournalQuery) -> None:
    everything = await journal.read(limit=1000)
    where, params = q.where()
    by_sql = [e.seq for e in await journal.read(limit=1000, where=where, params=params)]
    by_match = [e.seq for e in everything if q.match(e)]
    assert by_sql == by_match


async def test_time_range(journal: Journal) -> None:
    everything = await journal.read(limit=1000)
    mid = everything[5].time_ns
    q = JournalQuery(since_ns=mid, until_ns=everything[9].time_ns)
    where, params = q.where()
    got = [e.seq for e in await journal.read(limit=1000, where=where, params=params)]
    assert got == [e.seq for e in everything if q.match(e)]
    assert got[0] == 6 and got[-1] >= 10


async def test_who_deleted_it(journal: Journal) -> None:
    q = JournalQuery(types=["namespace.deleted"], subjects=["team-1-1"])
    where, params = q.where()
    (row,) = await journal.read(where=where, params=params)
    assert row.actor == "tls:CN=alice"
