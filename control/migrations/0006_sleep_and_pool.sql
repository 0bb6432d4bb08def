-- Light sleep: a sandbox can be desired and seen `asleep` (its container
-- frozen). SQLite cannot change a CHECK in place, so the table is rebuilt
-- with the same columns in the same order; no other table references it.
-- The warm pool: `pooled` rows are ready sandboxes no client has claimed.
CREATE TABLE sandboxes_new (
    id              TEXT PRIMARY KEY,
    image           TEXT NOT NULL,
    ports           TEXT NOT NULL,
    env             TEXT NOT NULL,
    metadata        TEXT NOT NULL DEFAULT '{}',
    memory_bytes    INTEGER NOT NULL,
    nano_cpus       INTEGER NOT NULL,
    start_cmd       TEXT,
    idle_timeout_s  INTEGER NOT NULL,
    idle_policy     TEXT NOT NULL CHECK (idle_policy IN ('sleep', 'always_on')),
    desired_state   TEXT NOT NULL CHECK (desired_state IN ('running', 'asleep', 'stopped', 'deleted', 'purged')),
    status          TEXT NOT NULL CHECK (status IN ('creating', 'running', 'asleep', 'stopping', 'stopped', 'error')),
    status_detail   TEXT,
    container_id    TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_active_at  INTEGER NOT NULL,
    keepalive_until INTEGER,
    public          INTEGER NOT NULL DEFAULT 1,
    preview_generation TEXT NOT NULL DEFAULT '',
    egress          TEXT NOT NULL DEFAULT 'open',
    runtime         TEXT,
    pooled          INTEGER NOT NULL DEFAULT 0
);

INSERT INTO sandboxes_new (id, image, ports, env, metadata, memory_bytes, nano_cpus, start_cmd,
    idle_timeout_s, idle_policy, desired_state, status, status_detail, container_id, created_at,
    updated_at, last_active_at, keepalive_until, public, preview_generation, egress, runtime)
SELECT id, image, ports, env, metadata, memory_bytes, nano_cpus, start_cmd,
    idle_timeout_s, idle_policy, desired_state, status, status_detail, container_id, created_at,
    updated_at, last_active_at, keepalive_until, public, preview_generation, egress, runtime
FROM sandboxes;

DROP TABLE sandboxes;
ALTER TABLE sandboxes_new RENAME TO sandboxes;
CREATE INDEX sandboxes_created_at ON sandboxes (created_at);
CREATE INDEX sandboxes_pooled ON sandboxes (pooled, created_at) WHERE pooled = 1;
