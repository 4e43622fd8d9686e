-- The messages waiting in inboxes (for the sealpost_chat_inbox_messages gauge): counted from
-- this index, which holds only unacknowledged rows, not from the table and its tombstones.
CREATE INDEX inbox_waiting ON inbox (acked) WHERE acked = 0;
