-- Blob retention. A blob is `live` until `touched_at` (its last upload or link mint) is older
-- than the configured retention; the sweep then marks it `expired`, deletes its bytes and marks
-- it `gone`. Expired and gone rows answer 410 blob-expired; uploading the same bytes again
-- makes the blob live again under a new storage key.
ALTER TABLE blobs ADD COLUMN state TEXT NOT NULL DEFAULT 'live';
ALTER TABLE blobs ADD COLUMN touched_at BIGINT NOT NULL DEFAULT 0;
-- Blobs stored before retention existed start their retention now, not at their upload:
-- upgrading must not delete media that is still in use.
UPDATE blobs SET touched_at = CAST(EXTRACT(EPOCH FROM now()) AS BIGINT);
CREATE INDEX blobs_state_touched_at ON blobs (state, touched_at);
