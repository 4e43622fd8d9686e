-- A send keeps what it published until a delivery worker has stored it, so a message the
-- bus lost (a crash of an in-process bus, a trimmed backlog) is published again.
ALTER TABLE chat_sends ADD COLUMN payload BYTEA;
ALTER TABLE chat_sends ADD COLUMN delivered BIGINT NOT NULL DEFAULT 0;
CREATE INDEX chat_sends_server_id ON chat_sends (server_id);
CREATE INDEX chat_sends_undelivered ON chat_sends (delivered, created_at);

-- Acknowledged inbox entries stay as tombstones until they expire, so a late redelivery of
-- the same message is recognised and not stored again.
ALTER TABLE inbox ADD COLUMN acked BIGINT NOT NULL DEFAULT 0;
