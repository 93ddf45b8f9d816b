-- Projection: Docker containers (engine/services/dockerd/record.py). `record` is the whole DockerContainer
-- (msgspec JSON: name, image, Config, HostConfig, command, paths, State); `name` ("/x") and `status`
-- are copied out for the unique name and for listing. A row is `creating` (reserved, invisible) from
-- docker_container.create_requested until docker_container.created.
CREATE TABLE docker_containers (
    namespace   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    record      TEXT    NOT NULL,
    created_ns  INTEGER NOT NULL,
    updated_ns  INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
);
CREATE UNIQUE INDEX docker_containers_name ON docker_containers(namespace, name);
