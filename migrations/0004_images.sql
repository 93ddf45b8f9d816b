-- Projection: containerd images (engine/services/images.py). `record` is the whole Image (msgspec JSON:
-- name, labels, target descriptor with annotations); target_digest is kept apart for the gc roots.
CREATE TABLE images (
    namespace     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    record        TEXT    NOT NULL,
    target_digest TEXT    NOT NULL,
    created_ns    INTEGER NOT NULL,
    updated_ns    INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE INDEX images_target ON images(namespace, target_digest);
