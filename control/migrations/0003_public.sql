-- Private sandboxes: preview requests need a signed token.
ALTER TABLE sandboxes ADD COLUMN public INTEGER NOT NULL DEFAULT 1;
