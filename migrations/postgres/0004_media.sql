-- Processing of plaintext previews: one row per source blob (its job's state), one per
-- rendition the worker stored as a blob of its own. Written by the media worker.
CREATE TABLE media (
    blob_id    TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    code       TEXT,
    detail     TEXT,
    mime       TEXT,
    width      BIGINT,
    height     BIGINT,
    frames     BIGINT,
    blurhash   TEXT,
    attempts   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX media_state_updated_at ON media (state, updated_at);

CREATE TABLE media_renditions (
    blob_id      TEXT NOT NULL REFERENCES media (blob_id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    mime         TEXT NOT NULL,
    width        BIGINT NOT NULL,
    height       BIGINT NOT NULL,
    size         BIGINT NOT NULL,
    rendition_id TEXT NOT NULL,
    PRIMARY KEY (blob_id, name, mime)
);
