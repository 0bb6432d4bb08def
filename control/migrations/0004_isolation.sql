-- Preview tokens name their sandbox's generation: a token survives neither
-- a re-creation of the sandbox under the same id nor a revocation.
ALTER TABLE sandboxes ADD COLUMN preview_generation TEXT NOT NULL DEFAULT '';
UPDATE sandboxes SET preview_generation = lower(hex(randomblob(16)));

-- Egress per sandbox: `open` (internet, not the host, metadata or private
-- ranges) or `none` (no route out; the edge still reaches its ports).
ALTER TABLE sandboxes ADD COLUMN egress TEXT NOT NULL DEFAULT 'open';

-- The OCI runtime (`runc`, `runsc`); NULL is Docker's default.
ALTER TABLE sandboxes ADD COLUMN runtime TEXT;

-- Each sandbox id owns a host uid (its gid has the same number) from a range
-- that belongs to no host account. The row outlives the sandbox's row, as
-- its workspace does (delete keeps both; purge frees both), so a sandbox
-- re-created under the same id finds its files owned by its user.
CREATE TABLE sandbox_uids (
    sandbox_id TEXT PRIMARY KEY,
    uid INTEGER NOT NULL UNIQUE
);
