-- What the agent reported about its run: its session (for `"continue":
-- true`), the model it really used and its CLI's version.
ALTER TABLE tasks ADD COLUMN session_id TEXT;
ALTER TABLE tasks ADD COLUMN agent_model TEXT;
ALTER TABLE tasks ADD COLUMN agent_version TEXT;
-- The task continues the sandbox's previous session of the same agent.
ALTER TABLE tasks ADD COLUMN resume INTEGER NOT NULL DEFAULT 0;
