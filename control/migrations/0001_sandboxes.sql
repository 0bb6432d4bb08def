-- Facts about this berth instance (its id labels every container it makes).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per sandbox: the source of truth Docker is converged to.
CREATE TABLE sandboxes (
    id              TEXT PRIMARY KEY,
    image           TEXT NOT NULL,
    ports           TEXT NOT NULL,              -- JSON array of port numbers
    env             TEXT NOT NULL,              -- JSON object
    metadata        TEXT NOT NULL DEFAULT '{}', -- JSON object, the client's own labels
    memory_bytes    INTEGER NOT NULL,
    nano_cpus       INTEGER NOT NULL,
    start_cmd       TEXT,
    idle_timeout_s  INTEGER NOT NULL,
    idle_policy     TEXT NOT NULL CHECK (idle_policy IN ('sleep', 'always_on')),
    desired_state   TEXT NOT NULL CHECK (desired_state IN ('running', 'stopped', 'deleted', 'purged')),
    status          TEXT NOT NULL CHECK (status IN ('creating', 'running', 'stopping', 'stopped', 'error')),
    status_detail   TEXT,
    container_id    TEXT,
    created_at      INTEGER NOT NULL,           -- unix milliseconds
    updated_at      INTEGER NOT NULL,
    last_active_at  INTEGER NOT NULL,
    keepalive_until INTEGER
);

CREATE INDEX sandboxes_created_at ON sandboxes (created_at);
