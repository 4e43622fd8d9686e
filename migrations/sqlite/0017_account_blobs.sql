-- Which accounts hold which blobs, for per-account storage quotas. One row per account and
-- blob it uploaded, counted until `held_at` (the account's last upload of those bytes) is older
-- than the blob retention, then swept. A blob counts for every account holding it, whoever
-- else uploaded the same bytes.
CREATE TABLE account_blobs (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    blob_id    TEXT NOT NULL,
    size       BIGINT NOT NULL,
    held_at    BIGINT NOT NULL,
    PRIMARY KEY (account_id, blob_id)
);
CREATE INDEX account_blobs_held_at ON account_blobs (held_at);
-- Uploads completed before quotas existed count from their completion, as far as their rows
-- are still kept.
INSERT INTO account_blobs (account_id, blob_id, size, held_at)
SELECT account_id, blob_id, MAX(length), MAX(updated_at) FROM uploads
WHERE state = 'complete' AND blob_id IS NOT NULL AND length IS NOT NULL
GROUP BY account_id, blob_id;
