-- tus concatenation. `concat` is NULL for an ordinary upload, 'partial' for a partial upload,
-- and 'final;<id> <id> …' (its parts in order) for a final upload. A finished partial upload's
-- bytes are published under `storage_key` and kept there, counted in its account's upload
-- quota, until a final upload consumes them or the partial upload expires.
ALTER TABLE uploads ADD COLUMN concat TEXT;
ALTER TABLE uploads ADD COLUMN storage_key TEXT;
