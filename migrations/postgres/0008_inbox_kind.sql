-- Inbox entries are messages or receipts (a receipt's body is the JSON the server made).
ALTER TABLE inbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'message';
