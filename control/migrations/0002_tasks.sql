-- Coding-agent tasks. Not tied to the sandbox row by a foreign key: a
-- deleted sandbox keeps its workspace, and its task history with it; purge
-- removes both.
CREATE TABLE tasks (
    id           TEXT PRIMARY KEY,
    sandbox_id   TEXT NOT NULL,
    agent        TEXT NOT NULL,
    prompt       TEXT NOT NULL,
    model        TEXT,
    env          TEXT NOT NULL DEFAULT '{}',   -- JSON object; may hold provider keys
    check_cmd    TEXT,
    timeout_s    INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out')),
    exec_id      TEXT,                         -- Docker exec of the running agent
    exit_code    INTEGER,
    result       TEXT,                         -- JSON object, once finished
    created_at   INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER
);

CREATE INDEX tasks_by_sandbox ON tasks (sandbox_id, created_at);
CREATE INDEX tasks_by_status ON tasks (status);

-- Every event of a task, in order: written before it is sent, so a stream
-- and the history always agree.
CREATE TABLE task_events (
    task_id     TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,                 -- JSON
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (task_id, seq)
);
