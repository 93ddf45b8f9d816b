-- Projection: snapshots (engine/services/snapshots.py), containerd's metadata for every snapshotter.
--
--   snapshots      one row per snapshot per containerd namespace. `key` is the key of an active snapshot
--                  or view, the name of a committed one; `parent` the name of a committed snapshot in the
--                  same namespace and snapshotter ('' for none); `sid` the backing id on disk
--                  (<root>/snapshots/<snapshotter>/snapshots/<sid>), unique per snapshotter; `state` is
--                  'preparing' (intent recorded, directories being made), 'ready', or 'removing' (intent to
--                  delete recorded, directories being deleted). size/inodes are fixed at commit.
--   snapshot_ids   the last backing id handed out per snapshotter, so ids are never reused.
CREATE TABLE snapshots (
    namespace   TEXT    NOT NULL,
    snapshotter TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    sid         TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    parent      TEXT    NOT NULL,
    labels      TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    size        INTEGER NOT NULL DEFAULT 0,
    inodes      INTEGER NOT NULL DEFAULT 0,
    created_ns  INTEGER NOT NULL,
    updated_ns  INTEGER NOT NULL,
    PRIMARY KEY (namespace, snapshotter, key)
);
CREATE UNIQUE INDEX snapshots_sid ON snapshots(snapshotter, sid);
CREATE INDEX snapshots_parent ON snapshots(namespace, snapshotter, parent);

CREATE TABLE snapshot_ids (
    snapshotter TEXT PRIMARY KEY,
    last        INTEGER NOT NULL
);
