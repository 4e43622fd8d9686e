-- Chat: sends recorded under the sender's own id (a retry is answered the same and stored
-- once), and per-device inboxes with a sequence number that only grows.
CREATE TABLE chat_sends (
    account_id TEXT NOT NULL,
    device_id  BIGINT NOT NULL,
    client_id  TEXT NOT NULL,
    server_id  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    published  BIGINT NOT NULL,
    PRIMARY KEY (account_id, device_id, client_id)
);

CREATE TABLE inbox (
    account_id     TEXT NOT NULL,
    device_id      BIGINT NOT NULL,
    seq            BIGINT NOT NULL,
    server_id      TEXT NOT NULL,
    sender_account TEXT NOT NULL,
    sender_device  BIGINT NOT NULL,
    sent_at        BIGINT NOT NULL,
    body           BYTEA NOT NULL,
    PRIMARY KEY (account_id, device_id, seq),
    UNIQUE (account_id, device_id, server_id)
);

CREATE TABLE inbox_cursors (
    account_id TEXT NOT NULL,
    device_id  BIGINT NOT NULL,
    next_seq   BIGINT NOT NULL,
    PRIMARY KEY (account_id, device_id)
);
