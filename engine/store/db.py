"""The SQLite connection: pragmas, numbered migrations, and the only place that opens the database.

Layout of the persisted schema (one file, ``<root>/engine.db``, WAL mode)::

    events              the journal: append-only, seq is the global order (see engine/events)
    schema_migrations   version, name, applied_ns: which migrations/NNNN_*.sql ran, in order
    meta                key/value facts about this database (daemon uuid, ...)
    <projection tables> one set per service (namespaces, ...), rebuilt from events on demand

Durability is a setting: ``synchronous=NORMAL`` (the default) survives any crash of the engine's process,
because a committed WAL frame is in the kernel's page cache; ``FULL`` also survives power loss at the cost
of an fsync per group commit.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from importlib import resources
from pathlib import Path

from engine.errors import DataLoss, InvalidArgument

SYNC_MODES = ("off", "normal", "full", "extra")
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def connect(path: str | Path, *, synchronous: str = "normal", readonly: bool = False) -> sqlite3.Connection:
    """Open the database with the engine's pragmas; the connection is in autocommit mode (explicit BEGIN)."""
    if synchronous not in SYNC_MODES:
        raise InvalidArgument(f"journal durability must be one of {', '.join(SYNC_MODES)}, not {synchronous!r}")
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    else:
        # owner-only: SQLite gives the -wal and -shm files the database file's permissions
        os.close(os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600))
        os.chmod(path, 0o600)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


def migration_files() -> list[tuple[int, str, str]]:
    """The numbered migrations shipped with the package, as (version, name, sql), in order."""
    out = []
    for entry in resources.files("engine.migrations").iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m:
            out.append((int(m.group(1)), m.group(2), entry.read_text()))
    out.sort()
    seen: dict[int, str] = {}
    for version, name, _ in out:
        if version in seen:
            raise DataLoss(f"two migrations share number {version:04d}: {seen[version]} and {name}")
        seen[version] = name
    return out


def migrate(conn: sqlite3.Connection, upto: int | None = None) -> list[int]:
    """Apply every migration not yet applied, each in its own transaction; returns the versions applied.

    Numbers are unique and applied in increasing order; a gap is allowed (numbers are handed out to work
    in progress), so a migration may run after a higher-numbered one that landed first: each migration
    only adds its own tables.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ns INTEGER NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    files = migration_files()
    known = {v for v, _, _ in files}
    if done - known:
        raise DataLoss(
            f"database has migrations this engine does not know ({sorted(done - known)}): it was written by a newer engine"
        )
    applied = []
    for version, name, sql in files:
        if version in done or (upto is not None and version > upto):
            continue
        # executescript commits any open transaction first, so the BEGIN/COMMIT live in the script itself.
        script = (
            f"BEGIN IMMEDIATE;\n{sql}\n;"
            f"INSERT INTO schema_migrations(version, name, applied_ns) VALUES ({version}, '{name}', {time.time_ns()});"
            "\nCOMMIT;"
        )
        try:
            conn.executescript(script)
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise DataLoss(f"migration {version:04d}_{name} failed: {err}") from err
        applied.append(version)
    return applied


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def set_meta_if_absent(conn: sqlite3.Connection, key: str, value: str) -> str:
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (key, value))
    return get_meta(conn, key) or value
