-- Projection: containerd containers (engine/services/containers.py). `record` is the whole Container
-- (msgspec JSON: labels, image, runtime, spec Any, snapshotter, snapshot key, extensions, sandbox).
CREATE TABLE containers (
    namespace   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    record      TEXT    NOT NULL,
    created_ns  INTEGER NOT NULL,
    updated_ns  INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
);
