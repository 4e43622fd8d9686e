-- The key directory: each device's Olm identity (bound to its login key by a signature), its
-- signed fallback key, and the one-time keys not yet claimed.
CREATE TABLE device_keys (
    account_id         TEXT NOT NULL,
    device_id          BIGINT NOT NULL,
    curve25519         TEXT NOT NULL,
    ed25519            TEXT NOT NULL,
    identity_signature TEXT NOT NULL,
    fallback_key_id    TEXT,
    fallback_key       TEXT,
    fallback_signature TEXT,
    updated_at         BIGINT NOT NULL,
    PRIMARY KEY (account_id, device_id)
);

CREATE TABLE one_time_keys (
    account_id TEXT NOT NULL,
    device_id  BIGINT NOT NULL,
    key_id     TEXT NOT NULL,
    key        TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, device_id, key_id)
);
