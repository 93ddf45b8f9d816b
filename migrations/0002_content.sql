-- Projections: content metadata (engine/services/content.py) and leases (engine/services/leases.py).
-- containerd's metadata over its local store: blobs are shared on disk (<root>/content/blobs/<alg>/<hex>),
-- the rows say which namespace holds which digest, with its labels.
--
--   content           one row per (namespace, digest) committed or shared into that namespace.
--   content_ingests   one row per open-or-resumable ingest (namespace, ref); expected/total as given.
--   content_removals  blob files whose removal intent is recorded (content.blob_removal_requested) and
--                     whose outcome is not yet: recovery finishes them.
--   leases            one row per lease (namespace, id) with its labels (containerd.io/gc.expire, ...).
--   lease_resources   what a lease protects: type 'content' (id = digest), 'ingests' (id = ref),
--                     'snapshots/<snapshotter>' (id = key).
CREATE TABLE content (
    namespace   TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    labels      TEXT    NOT NULL,
    created_ns  INTEGER NOT NULL,
    updated_ns  INTEGER NOT NULL,
    PRIMARY KEY (namespace, digest)
);
CREATE INDEX content_digest ON content(digest);

CREATE TABLE content_ingests (
    namespace   TEXT    NOT NULL,
    ref         TEXT    NOT NULL,
    expected    TEXT    NOT NULL,
    total       INTEGER NOT NULL,
    started_ns  INTEGER NOT NULL,
    updated_ns  INTEGER NOT NULL,
    PRIMARY KEY (namespace, ref)
);

CREATE TABLE content_removals (
    digest       TEXT    PRIMARY KEY,
    requested_ns INTEGER NOT NULL
);

CREATE TABLE leases (
    namespace   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    labels      TEXT    NOT NULL,
    created_ns  INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
);

CREATE TABLE lease_resources (
    namespace   TEXT    NOT NULL,
    lease       TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    PRIMARY KEY (namespace, lease, type, id)
);
CREATE INDEX lease_resources_by_id ON lease_resources(namespace, type, id);
