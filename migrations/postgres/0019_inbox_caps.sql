-- Inbox caps. Each copy records its body's size (the body is emptied when acknowledged), and
-- each device's cursor keeps how many messages and body bytes wait unacknowledged, so a send
-- can check the recipient's inboxes without reading them.
ALTER TABLE inbox ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
UPDATE inbox SET size = LENGTH(body);
ALTER TABLE inbox_cursors ADD COLUMN waiting BIGINT NOT NULL DEFAULT 0;
ALTER TABLE inbox_cursors ADD COLUMN waiting_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE inbox_cursors SET
    waiting = (SELECT COUNT(*) FROM inbox i WHERE i.account_id = inbox_cursors.account_id
               AND i.device_id = inbox_cursors.device_id AND i.acked = 0),
    waiting_bytes = (SELECT COALESCE(SUM(i.size), 0) FROM inbox i
                     WHERE i.account_id = inbox_cursors.account_id
                     AND i.device_id = inbox_cursors.device_id AND i.acked = 0);
