use std::collections::BTreeMap;

use sqlx::{FromRow, Row};

use crate::{BlobCompletion, Db, DbError};

/// The columns of [`UploadRow`], as a literal for `concat!`.
macro_rules! upload_columns {
    () => {
        "id, account_id, state, kind, length, upload_offset, hash_state, declared_sha256, \
         filename, content_type, metadata, blob_id, error, lease, created_at, updated_at, expires_at, \
         concat, storage_key"
    };
}

/// One resumable upload as stored.
#[derive(Debug, Clone, FromRow)]
pub struct UploadRow {
    /// Upload id.
    pub id: String,
    /// Owner.
    pub account_id: String,
    /// `active`, `complete`, `failed` or `expired`; a finished tus partial upload is `parked`,
    /// and `joining` while a final upload reads it.
    pub state: String,
    /// `encrypted` or `preview`.
    pub kind: String,
    /// Declared length; `None` while deferred.
    pub length: Option<i64>,
    /// Bytes durably stored.
    pub upload_offset: i64,
    /// Serialized SHA-256 state over the first `upload_offset` bytes.
    pub hash_state: Vec<u8>,
    /// Lowercase hex SHA-256 the client declared in its metadata.
    pub declared_sha256: Option<String>,
    /// Client file name.
    pub filename: Option<String>,
    /// Client media type.
    pub content_type: Option<String>,
    /// The raw `Upload-Metadata` value, echoed on HEAD.
    pub metadata: Option<String>,
    /// Content address once complete.
    pub blob_id: Option<String>,
    /// Problem code once failed.
    pub error: Option<String>,
    /// Fencing token: bumped by every writer that takes the upload over.
    pub lease: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Unix seconds after which an active upload (or a parked partial one) is expired.
    pub expires_at: i64,
    /// tus concatenation: `partial`, or `final;<id> <id> …` listing the parts in order.
    pub concat: Option<String>,
    /// Where a finished partial upload's bytes are stored.
    pub storage_key: Option<String>,
}

/// What a new upload starts with.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// Upload id.
    pub id: String,
    /// Owner.
    pub account_id: String,
    /// `encrypted` or `preview`.
    pub kind: String,
    /// Declared length, if known.
    pub length: Option<i64>,
    /// Serialized empty SHA-256 state.
    pub hash_state: Vec<u8>,
    /// Lowercase hex SHA-256 the client declared.
    pub declared_sha256: Option<String>,
    /// Client file name.
    pub filename: Option<String>,
    /// Client media type.
    pub content_type: Option<String>,
    /// Raw `Upload-Metadata`.
    pub metadata: Option<String>,
    /// Unix seconds.
    pub now: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// tus concatenation: `partial` or `final;<id> <id> …`.
    pub concat: Option<String>,
}

/// An account's unfinished uploads and the blobs it holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct UploadUsage {
    /// How many uploads are active and unexpired.
    pub count: i64,
    /// Their declared lengths (or, while deferred, their offsets) summed.
    pub bytes: i64,
    /// Blobs the account uploaded since the cutoff it was asked about.
    pub stored_blobs: i64,
    /// Their sizes summed.
    pub stored_bytes: i64,
    /// Previews waiting to be processed or still uploading (unfinished `preview` uploads).
    pub previews: i64,
}

/// The condition for rows an upload's expiry applies to: active uploads, and finished partial
/// uploads (`parked`, their bytes waiting for a final upload; `joining` while one reads them).
/// Never NULL, so it can be negated.
macro_rules! expiring {
    () => {
        "state IN ('active', 'parked', 'joining')"
    };
}

/// An account's unfinished (or parked partial), unexpired uploads: count `n` and bytes `b`
/// (final uploads do not count: their bytes are their parts'); and the blobs it has held since
/// `$3`: count `sn` and bytes `sb`; and its previews pending processing or still uploading `pp`.
const USAGE: &str = concat!(
    "SELECT COUNT(*) AS n, \
     CAST(COALESCE(SUM(COALESCE(length, upload_offset)), 0) AS BIGINT) AS b, \
     (SELECT COUNT(*) FROM account_blobs WHERE account_id = $1 AND held_at > $3) AS sn, \
     (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM account_blobs \
      WHERE account_id = $1 AND held_at > $3) AS sb, \
     CAST(COALESCE(SUM(CASE WHEN kind = 'preview' THEN 1 ELSE 0 END), 0) AS BIGINT) \
      + (SELECT COUNT(*) FROM media WHERE account_id = $1 AND state = 'pending') AS pp \
     FROM uploads WHERE account_id = $1 AND expires_at > $2 \
     AND (concat IS NULL OR concat = 'partial') AND ",
    expiring!()
);

/// Drops a finished upload's manifest: the store needs it no more.
async fn forget_manifest(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
) -> Result<(), DbError> {
    sqlx::query("DELETE FROM upload_manifest WHERE upload_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn usage(row: &sqlx::any::AnyRow) -> Result<UploadUsage, DbError> {
    Ok(UploadUsage {
        count: row.try_get("n")?,
        bytes: row.try_get("b")?,
        stored_blobs: row.try_get("sn")?,
        stored_bytes: row.try_get("sb")?,
        previews: row.try_get("pp")?,
    })
}

impl Db {
    /// Inserts an upload in state `active` at offset 0, if `admit` accepts the account's usage
    /// (blobs counted as held since `held_since`) as it stands. One transaction that first takes the account row's
    /// write lock, so concurrent creations for one account are checked one after another and
    /// cannot overshoot a limit together. Returns the usage `admit` saw and whether the upload
    /// was inserted.
    pub async fn insert_upload_if(
        &self,
        u: &NewUpload,
        now: i64,
        held_since: i64,
        admit: impl FnOnce(&UploadUsage) -> bool,
    ) -> Result<(UploadUsage, bool), DbError> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE accounts SET name = name WHERE id = $1")
            .bind(&u.account_id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(USAGE)
            .bind(&u.account_id)
            .bind(now)
            .bind(held_since)
            .fetch_one(&mut *tx)
            .await?;
        let usage = usage(&row)?;
        if !admit(&usage) {
            return Ok((usage, false));
        }
        sqlx::query(
            "INSERT INTO uploads (id, account_id, state, kind, length, upload_offset, hash_state, \
             declared_sha256, filename, content_type, metadata, lease, created_at, updated_at, expires_at, \
             concat) VALUES ($1, $2, 'active', $3, $4, 0, $5, $6, $7, $8, $9, 0, $10, $10, $11, $12)",
        )
        .bind(&u.id)
        .bind(&u.account_id)
        .bind(&u.kind)
        .bind(u.length)
        .bind(&u.hash_state)
        .bind(&u.declared_sha256)
        .bind(&u.filename)
        .bind(&u.content_type)
        .bind(&u.metadata)
        .bind(u.now)
        .bind(u.expires_at)
        .bind(&u.concat)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((usage, true))
    }

    /// Reads an upload.
    pub async fn upload(&self, id: &str) -> Result<Option<UploadRow>, DbError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            upload_columns!(),
            " FROM uploads WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Takes the upload over for a new writer: bumps the fencing token and, if the upload is
    /// active and not yet expired at `now`, pushes its expiry out to `expires_at` (so it cannot
    /// expire under a request that is streaming into it). Returns the row as it is now. Writes
    /// by holders of older tokens are rejected from here on.
    pub async fn take_upload_lease(
        &self,
        id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Option<UploadRow>, DbError> {
        Ok(sqlx::query_as(concat!(
            "UPDATE uploads SET lease = lease + 1, expires_at = CASE \
             WHEN state = 'active' AND expires_at > $2 AND expires_at < $3 THEN $3 \
             ELSE expires_at END WHERE id = $1 RETURNING ",
            upload_columns!()
        ))
        .bind(id)
        .bind(now)
        .bind(expires_at)
        .fetch_optional(&self.writer)
        .await?)
    }

    /// The upload's current fencing token.
    pub async fn upload_lease(&self, id: &str) -> Result<Option<i64>, DbError> {
        let row = sqlx::query("SELECT lease FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get("lease"))
            .transpose()
            .map_err(DbError::from)
    }

    /// Records durable progress (and a newly declared length) with the blob store's manifest
    /// entries for it, in one transaction, if `lease` still holds the upload. Slides the expiry
    /// forward. Returns false when fenced off.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit_upload_progress(
        &self,
        id: &str,
        lease: i64,
        offset: i64,
        hash_state: &[u8],
        length: Option<i64>,
        manifest: &BTreeMap<String, String>,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE uploads SET upload_offset = $3, hash_state = $4, length = COALESCE($5, length), \
             updated_at = $6, expires_at = $7 WHERE id = $1 AND lease = $2 AND state = 'active'",
        )
        .bind(id)
        .bind(lease)
        .bind(offset)
        .bind(hash_state)
        .bind(length)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        for (name, value) in manifest {
            sqlx::query(
                "INSERT INTO upload_manifest (upload_id, name, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (upload_id, name) DO UPDATE SET value = excluded.value",
            )
            .bind(id)
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The blob store's manifest entries committed for an upload.
    pub async fn upload_manifest(&self, id: &str) -> Result<BTreeMap<String, String>, DbError> {
        let rows = sqlx::query("SELECT name, value FROM upload_manifest WHERE upload_id = $1")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("value")?)))
            .collect()
    }

    /// Marks the upload complete as blob `blob_id` and records its copy of the blob, stored at
    /// `storage_key`, in one transaction: a live blob keeps its key (the copy is unused), an
    /// expired one is revived with the copy. A `preview` upload also queues its blob for
    /// processing (once; a re-upload restarts the retention of its renditions instead). `None`
    /// when fenced off.
    pub async fn complete_upload(
        &self,
        id: &str,
        lease: i64,
        blob_id: &str,
        size: i64,
        storage_key: &str,
        now: i64,
    ) -> Result<Option<BlobCompletion>, DbError> {
        let mut tx = self.begin().await?;
        let kind: Option<(String, String)> = sqlx::query_as(
            "UPDATE uploads SET state = 'complete', blob_id = $3, upload_offset = $4, length = $4, \
             updated_at = $5 WHERE id = $1 AND lease = $2 AND state = 'active' \
             RETURNING kind, account_id",
        )
        .bind(id)
        .bind(lease)
        .bind(blob_id)
        .bind(size)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((kind, account_id)) = kind else {
            return Ok(None);
        };
        let mut completion =
            crate::blobs::record_copy(&mut tx, blob_id, size, storage_key, now).await?;
        crate::blobs::record_holder(&mut tx, &account_id, blob_id, size, now).await?;
        if kind == "preview" {
            completion.media_queued =
                crate::media::enqueue(&mut tx, blob_id, &account_id, now).await?;
        }
        crate::media::touch_renditions(&mut tx, blob_id, now).await?;
        forget_manifest(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Some(completion))
    }

    /// Marks the upload failed with a problem code. Returns false when fenced off.
    pub async fn fail_upload(
        &self,
        id: &str,
        lease: i64,
        code: &str,
        now: i64,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE uploads SET state = 'failed', error = $3, updated_at = $4 \
             WHERE id = $1 AND lease = $2 AND state = 'active'",
        )
        .bind(id)
        .bind(lease)
        .bind(code)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Parks a finished partial upload: its bytes are stored under `storage_key`, where they
    /// wait for a final upload until `expires_at`. Returns false when fenced off.
    pub async fn complete_partial_upload(
        &self,
        id: &str,
        lease: i64,
        size: i64,
        storage_key: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE uploads SET state = 'parked', storage_key = $3, upload_offset = $4, length = $4, \
             updated_at = $5, expires_at = $6 \
             WHERE id = $1 AND lease = $2 AND state = 'active' AND concat = 'partial'",
        )
        .bind(id)
        .bind(lease)
        .bind(storage_key)
        .bind(size)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        forget_manifest(&mut tx, id).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Claims `account`'s parked partial uploads `ids` for a final upload, all or none: they
    /// become `joining` (no other final upload can claim them, and they cannot be deleted) and
    /// live until `expires_at`. False when one is not a parked, unexpired partial upload of the
    /// account (or is claimed already).
    pub async fn claim_parts(
        &self,
        account_id: &str,
        ids: &[String],
        now: i64,
        expires_at: i64,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin().await?;
        for id in ids {
            let done = sqlx::query(
                "UPDATE uploads SET state = 'joining', expires_at = $4 \
                 WHERE id = $1 AND account_id = $2 AND state = 'parked' AND expires_at > $3",
            )
            .bind(id)
            .bind(account_id)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Parks claimed partial uploads again (their final upload failed).
    pub async fn release_parts(&self, ids: &[String]) -> Result<(), DbError> {
        for id in ids {
            sqlx::query("UPDATE uploads SET state = 'parked' WHERE id = $1 AND state = 'joining'")
                .bind(id)
                .execute(&self.writer)
                .await?;
        }
        Ok(())
    }

    /// Deletes an upload row (termination).
    pub async fn delete_upload(&self, id: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// An account's unfinished (or parked partial), unexpired uploads (final uploads not), and
    /// the blobs it has held since `held_since`.
    pub async fn upload_usage(
        &self,
        account_id: &str,
        now: i64,
        held_since: i64,
    ) -> Result<UploadUsage, DbError> {
        let row = sqlx::query(USAGE)
            .bind(account_id)
            .bind(now)
            .bind(held_since)
            .fetch_one(&self.pool)
            .await?;
        usage(&row)
    }

    /// Uploads whose expiry has passed, with the storage key of a finished partial upload's
    /// bytes.
    pub async fn due_uploads(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<(String, Option<String>)>, DbError> {
        let rows = sqlx::query(concat!(
            "SELECT id, storage_key FROM uploads WHERE ",
            expiring!(),
            " AND expires_at <= $1 ORDER BY expires_at LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("storage_key")?)))
            .collect()
    }

    /// Marks a due upload expired, fencing off any writer. Returns false when it was not due.
    pub async fn expire_upload(&self, id: &str, now: i64) -> Result<bool, DbError> {
        let done = sqlx::query(concat!(
            "UPDATE uploads SET state = 'expired', lease = lease + 1, updated_at = $2 \
             WHERE id = $1 AND ",
            expiring!(),
            " AND expires_at <= $2"
        ))
        .bind(id)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes rows of finished (complete, failed, expired) uploads whose expiry is before
    /// `cutoff`, except finished partial uploads, which expire first (deleting their bytes).
    pub async fn purge_finished_uploads(&self, cutoff: i64) -> Result<u64, DbError> {
        let done = sqlx::query(concat!(
            "DELETE FROM uploads WHERE NOT ",
            expiring!(),
            " AND expires_at <= $1"
        ))
        .bind(cutoff)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    /// How many uploads are active (for metrics).
    pub async fn active_upload_count(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM uploads WHERE state = 'active'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}
