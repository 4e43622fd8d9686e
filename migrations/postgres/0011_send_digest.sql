-- What a send said (a SHA-256 of its recipient, kind and envelopes), so that a client id
-- reused for different content is refused instead of being answered as the first send.
ALTER TABLE chat_sends ADD COLUMN digest TEXT NOT NULL DEFAULT '';
