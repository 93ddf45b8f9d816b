-- Projection: containerd tasks (engine/services/tasks.py). One row per task (the container's running
-- instance) from task.create_requested until task.deleted / task.create_failed. `status` is creating,
-- created, running, paused, stopped or deleting; `pending` names an intent without its outcome yet
-- ("start", "start:<exec id>"). `shim_seq` is the last shim event seq the journal recorded, where
-- recovery resumes the shim's event stream. `mounts` is the rootfs mounts (msgspec JSON).
CREATE TABLE tasks (
    namespace    TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    pending      TEXT    NOT NULL DEFAULT '',
    pid          INTEGER NOT NULL DEFAULT 0,
    shim_pid     INTEGER NOT NULL DEFAULT 0,
    exit_status  INTEGER NOT NULL DEFAULT 0,
    exited_at    INTEGER NOT NULL DEFAULT 0,
    bundle       TEXT    NOT NULL,
    shim_socket  TEXT    NOT NULL,
    state_dir    TEXT    NOT NULL,
    mounts       TEXT    NOT NULL,
    stdin        TEXT    NOT NULL DEFAULT '',
    stdout       TEXT    NOT NULL DEFAULT '',
    stderr       TEXT    NOT NULL DEFAULT '',
    terminal     INTEGER NOT NULL DEFAULT 0,
    shim_seq     INTEGER NOT NULL DEFAULT 0,
    created_ns   INTEGER NOT NULL,
    updated_ns   INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
);

-- Exec'd processes of a task, from task.exec_added until task.exec_deleted (or the task's deletion).
CREATE TABLE task_execs (
    namespace    TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    exec_id      TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    pid          INTEGER NOT NULL DEFAULT 0,
    exit_status  INTEGER NOT NULL DEFAULT 0,
    exited_at    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, id, exec_id)
);
