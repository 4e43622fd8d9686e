-- Messages dropped from a device's inbox unread (expired), to tell the device on its next hello.
ALTER TABLE inbox_cursors ADD COLUMN dropped BIGINT NOT NULL DEFAULT 0;
CREATE INDEX inbox_sent_at ON inbox (sent_at);
