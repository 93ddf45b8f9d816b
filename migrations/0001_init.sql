-- The journal: one append-only table, the source of truth. seq is the global order; prev_hash/hash
-- chain every row to the one before it (sha256), so a gap or an edit is detectable.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY,
    time_ns    INTEGER NOT NULL,
    namespace  TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    cause      TEXT    NOT NULL,
    schema     INTEGER NOT NULL,
    payload    TEXT    NOT NULL,
    prev_hash  BLOB    NOT NULL,
    hash       BLOB    NOT NULL
);
CREATE INDEX events_time ON events(time_ns);
CREATE INDEX events_subject ON events(subject, seq);
CREATE INDEX events_type ON events(type, seq);

-- Append-only is enforced by the database itself, not only by convention.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Projection: containerd namespaces (engine/services/namespaces.py).
CREATE TABLE namespaces (
    name        TEXT PRIMARY KEY,
    labels      TEXT NOT NULL,
    created_ns  INTEGER NOT NULL,
    updated_ns  INTEGER NOT NULL
);

-- Projection bookkeeping: the last seq each projection has applied (same transaction as the apply).
CREATE TABLE projection_positions (
    name TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
);
