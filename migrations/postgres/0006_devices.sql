-- Devices of an account. Device 1 is the one the account registered with; others are linked
-- from a device it has. A removed device keeps its row (removed_at set), so its id is never
-- given to another device.
CREATE TABLE devices (
    account_id   TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    device_id    BIGINT NOT NULL,
    name         TEXT NOT NULL,
    identity_key BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    removed_at   BIGINT,
    PRIMARY KEY (account_id, device_id)
);
INSERT INTO devices (account_id, device_id, name, identity_key, created_at)
    SELECT id, 1, 'primary', identity_key, created_at FROM accounts;

-- Challenges and tokens belong to one device of the account.
ALTER TABLE challenges ADD COLUMN device_id BIGINT NOT NULL DEFAULT 1;
ALTER TABLE tokens ADD COLUMN device_id BIGINT NOT NULL DEFAULT 1;

-- Single-use codes a device makes so that a new device can join its account (stored hashed).
CREATE TABLE link_codes (
    code_hash  TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
);
CREATE INDEX link_codes_expires_at ON link_codes (expires_at);
