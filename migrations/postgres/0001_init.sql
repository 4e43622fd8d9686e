-- Accounts, login challenges, bearer tokens, blobs and resumable uploads.
-- Times are Unix seconds; ids are opaque text.

CREATE TABLE accounts (
    id           TEXT PRIMARY KEY,
    phone        TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    identity_key BYTEA NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE challenges (
    challenge_hash TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX challenges_expires_at ON challenges (expires_at);

CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX tokens_expires_at ON tokens (expires_at);

-- A blob's content address (id) maps to where the store keeps it (storage_key).
CREATE TABLE blobs (
    id          TEXT PRIMARY KEY,
    size        BIGINT NOT NULL,
    storage_key TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE uploads (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    state           TEXT NOT NULL,
    kind            TEXT NOT NULL,
    length          BIGINT,
    upload_offset   BIGINT NOT NULL DEFAULT 0,
    hash_state      BYTEA NOT NULL,
    declared_sha256 TEXT,
    filename        TEXT,
    content_type    TEXT,
    metadata        TEXT,
    blob_id         TEXT,
    error           TEXT,
    lease           BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX uploads_account_state ON uploads (account_id, state);
CREATE INDEX uploads_state_expires_at ON uploads (state, expires_at);
