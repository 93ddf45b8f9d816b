"""Replay and verification: a projection is exactly its replay; edits and gaps are found; old payloads are
upcast; a projection added later catches up from the whole journal."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import ClassVar

import pytest

from engine.errors import DataLoss
from engine.events.journal import Journal
from engine.events.projection import Projection, Projections
from engine.events.types import EVENT_TYPES, UPCASTERS, Event, decode_payload, upcaster
from engine.events.verify import verify_path
from engine.services import all_projections
from engine.services.namespaces import NamespaceService


async def _filled(tmp_path: Path) -> Path:
    j = Journal(tmp_path / "engine.db", all_projections())
    await j.open()
    ns = NamespaceService(j)
    for i in range(20):
        await ns.create(f"n{i}", {"i": str(i)}, actor="t")
    await ns.update("n3", {"x": "y"}, actor="t")
    await ns.delete("n4", actor="t")
    await j.close()
    return tmp_path / "engine.db"


async def test_verify_passes_on_a_healthy_journal(tmp_path: Path) -> None:
    report = verify_path(str(await _filled(tmp_path)), all_projections())
    assert report.ok, report.to_dict()
    assert report.events == 22 and report.tables["namespaces"].rows == 19


def _raw(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")  # what an attacker with file access could do
    conn.execute("DROP TRIGGER events_no_delete")
    return conn


async def test_verify_finds_an_edited_row(tmp_path: Path) -> None:
    db = await _filled(tmp_path)
    conn = _raw(db)
    conn.execute("UPDATE events SET actor = 'someone-else' WHERE seq = 5")
    conn.close()
    report = verify_path(str(db), all_projections())
    assert not report.ok
    assert any("seq 5: hash does not match" in e for e in report.chain_errors)


async def test_verify_finds_a_gap(tmp_path: Path) -> None:
    db = await _filled(tmp_path)
    conn = _raw(db)
    conn.execute("DELETE FROM events WHERE seq = 7")
    conn.close()
    report = verify_path(str(db), all_projections())
    assert any("seq 7 to 7 missing" in e for e in report.chain_errors)
    assert any("seq 8: prev_hash" in e for e in report.chain_errors)


async def test_verify_finds_a_projection_that_drifted(tmp_path: Path) -> None:
    db = await _filled(tmp_path)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE namespaces SET labels = '{\"forged\":\"1\"}' WHERE name = 'n1'")
    conn.execute("DELETE FROM namespaces WHERE name = 'n2'")
    conn.close()
    report = verify_path(str(db), all_projections())
    t = report.tables["namespaces"]
    assert not report.ok and not report.chain_errors
    assert {r[0] for r in t.missing} == {"n1", "n2"} and {r[0] for r in t.extra} == {"n1"}


async def test_a_new_projection_catches_up_from_the_whole_journal(tmp_path: Path) -> None:
    db = await _filled(tmp_path)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE ns_count (n INTEGER)")
    conn.execute("INSERT INTO ns_count VALUES (0)")
    conn.commit()
    conn.close()

    def apply(env, tx):  # type: ignore[no-untyped-def]
        delta = 1 if env.type == "namespace.created" else -1
        tx.execute("UPDATE ns_count SET n = n + ?", (delta,))

    from engine.services.namespaces import NamespaceCreated, NamespaceDeleted

    counting = Projection("ns_count", ("ns_count",), (NamespaceCreated, NamespaceDeleted), apply)
    j = Journal(db, Projections([*all_projections().all, counting]))
    await j.open()
    try:
        assert await j.run_read(lambda c: c.execute("SELECT n FROM ns_count").fetchone()[0]) == 19
        await NamespaceService(j).create("later", actor="t")
        assert await j.run_read(lambda c: c.execute("SELECT n FROM ns_count").fetchone()[0]) == 20
    finally:
        await j.close()
    # and it is not replayed twice on the next open
    j = Journal(db, Projections([*all_projections().all, counting]))
    await j.open()
    try:
        assert await j.run_read(lambda c: c.execute("SELECT n FROM ns_count").fetchone()[0]) == 20
    finally:
        await j.close()


def test_upcasting_an_old_payload() -> None:
    class Renamed(Event, frozen=True):
        TYPE: ClassVar[str] = "test.renamed"
        SCHEMA: ClassVar[int] = 3
        SUBJECT: ClassVar[str] = "id"
        id: str
        display_name: str
        tags: list[str] = []

    try:
        @upcaster("test.renamed", 1)
        def v1_v2(d: dict) -> dict:
            return {"id": d["id"], "display_name": d.pop("name")}

        @upcaster("test.renamed", 2)
        def v2_v3(d: dict) -> dict:
            return {**d, "tags": ["migrated"]}

        ev = decode_payload("test.renamed", 1, b'{"id":"a","name":"old"}')
        assert ev == Renamed(id="a", display_name="old", tags=["migrated"])
        assert decode_payload("test.renamed", 3, b'{"id":"a","display_name":"n"}') == Renamed(id="a", display_name="n")
        with pytest.raises(DataLoss, match="newer than this engine"):
            decode_payload("test.renamed", 4, b"{}")
        with pytest.raises(DataLoss, match="unknown type"):
            decode_payload("test.nope", 1, b"{}")
    finally:
        EVENT_TYPES.pop("test.renamed", None)
        UPCASTERS.pop(("test.renamed", 1), None)
        UPCASTERS.pop(("test.renamed", 2), None)


def test_event_types_are_unique_and_named_in_the_past_tense() -> None:
    import engine.services  # noqa: F401  registers every type
    from engine.services import all_projections as ap

    ap()
    for name, cls in EVENT_TYPES.items():
        if name.startswith("test."):
            continue
        domain, _, verb = name.partition(".")
        assert domain and verb.endswith("ed"), name
        assert name == cls.TYPE
