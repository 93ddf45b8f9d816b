"""``engine journal verify``: prove the journal is whole and every projection is exactly its replay.

Two checks, on one consistent read snapshot of the database:

1. The chain: seqs are 1..n with no gap, each row's prev_hash is the previous row's hash, each hash is
   recomputed from the row's content, and every payload decodes (upcast) to its event type.
2. The projections: every event is replayed through the same ``apply`` functions into a scratch
   in-memory database built by the same migrations, and each projection table is compared with the live
   one, row for row (as sorted tuples of every column).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from engine import store
from engine.events.journal import _COLUMNS, GENESIS, envelope_from_row, row_hash
from engine.events.projection import Projections


@dataclass
class TableReport:
    rows: int = 0
    missing: list[tuple] = field(default_factory=list)  # in the replay, not in the live table
    extra: list[tuple] = field(default_factory=list)  # in the live table, not in the replay

    @property
    def ok(self) -> bool:
        return not self.missing and not self.extra


@dataclass
class VerifyReport:
    events: int = 0
    last_seq: int = 0
    last_hash: str = ""
    chain_errors: list[str] = field(default_factory=list)
    tables: dict[str, TableReport] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.chain_errors and all(t.ok for t in self.tables.values())

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "events": self.events, "last_seq": self.last_seq, "last_hash": self.last_hash,
            "chain_errors": self.chain_errors,
            "tables": {name: {"rows": t.rows, "ok": t.ok, "missing": [list(map(str, r)) for r in t.missing[:20]],
                              "extra": [list(map(str, r)) for r in t.extra[:20]]}
                       for name, t in self.tables.items()},
        }


def verify(conn: sqlite3.Connection, projections: Projections, max_errors: int = 100) -> VerifyReport:
    """Check `conn` (read in one transaction by the caller, or a quiet database) against its own journal."""
    report = VerifyReport()
    scratch = sqlite3.connect(":memory:", isolation_level=None)
    try:
        store.migrate(scratch)
        scratch.execute("BEGIN")
        tx = scratch.cursor()
        prev = GENESIS
        expected_seq = 1
        for row in conn.execute(f"SELECT {_COLUMNS} FROM events ORDER BY seq"):
            seq, time_ns, namespace, type_, subject, actor, cause, schema, payload, prev_hash, hash_ = row
            errors = report.chain_errors
            if seq != expected_seq:
                errors.append(f"seq {expected_seq} to {seq - 1} missing")
            if prev_hash != prev:
                errors.append(f"seq {seq}: prev_hash does not match the hash of the row before it")
            recomputed = row_hash(prev_hash, seq, time_ns, namespace, type_, subject, actor, cause, schema,
                                  payload.encode() if isinstance(payload, str) else payload)
            if recomputed != hash_:
                errors.append(f"seq {seq}: hash does not match the row's content (edited?)")
            try:
                env = envelope_from_row(row)
                projections.apply(env, tx)
            except Exception as err:  # any failure to decode or replay is a finding, not a crash
                errors.append(f"seq {seq} ({type_}): cannot replay: {err}")
            if len(errors) >= max_errors:
                errors.append("too many errors; stopped")
                break
            prev = hash_
            expected_seq = seq + 1
            report.events += 1
            report.last_seq = seq
        report.last_hash = prev.hex()
        scratch.execute("COMMIT")
        for table in projections.tables:
            live = sorted(tuple(r) for r in conn.execute(f"SELECT * FROM {table}"))
            replay = sorted(tuple(r) for r in scratch.execute(f"SELECT * FROM {table}"))
            live_set, replay_set = set(live), set(replay)
            report.tables[table] = TableReport(
                rows=len(live),
                missing=[r for r in replay if r not in live_set],
                extra=[r for r in live if r not in replay_set],
            )
    finally:
        scratch.close()
    return report


def verify_path(path: str, projections: Projections) -> VerifyReport:
    conn = store.connect(path, readonly=True)
    try:
        conn.execute("BEGIN")
        return verify(conn, projections)
    finally:
        conn.close()
