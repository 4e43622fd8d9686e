-- Fair preview processing. `account_id` is the account whose upload queued the preview (its
-- pending previews are capped), `started_at` when a worker last took it: workers take the
-- pending preview of the account whose last one started longest ago, so no account's backlog
-- holds up the others'.
ALTER TABLE media ADD COLUMN account_id TEXT;
ALTER TABLE media ADD COLUMN started_at BIGINT;
CREATE INDEX media_account_started_at ON media (account_id, started_at);
