-- What the blob store needs, beside the offset, to resume or publish an upload (the S3 store:
-- its multipart upload, parts with ETags, and the object holding the part in progress).
-- Written in the same transaction as the offset it belongs to.
CREATE TABLE upload_manifest (
    upload_id TEXT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (upload_id, name)
);
