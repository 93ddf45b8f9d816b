-- Projection: volumes (engine/services/volumes.py), Docker's local volume driver.
--
--   volumes       one row per volume: name, driver ('local'), driver options (type/device/o), labels,
--                 whether it was made anonymous (a container's -v /path or an image VOLUME), created time.
--                 The data lives at <root>/volumes/<name>/_data.
--   volume_refs   which containers reference a volume (from their create to their removal): a referenced
--                 volume cannot be removed; `mounted` is 1 while the container runs with it mounted (for
--                 volumes with driver options the mount is shared and made on the first use).
CREATE TABLE volumes (
    name        TEXT    PRIMARY KEY,
    driver      TEXT    NOT NULL,
    options     TEXT    NOT NULL,
    labels      TEXT    NOT NULL,
    anonymous   INTEGER NOT NULL,
    created_ns  INTEGER NOT NULL
);

CREATE TABLE volume_refs (
    name        TEXT    NOT NULL,
    container   TEXT    NOT NULL,
    mounted     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (name, container)
);
CREATE INDEX volume_refs_container ON volume_refs(container);
