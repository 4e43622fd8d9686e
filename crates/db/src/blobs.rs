use sqlx::FromRow;

use crate::{Db, DbError};

/// One stored blob: content address, size, where its bytes live and whether they still do.
#[derive(Debug, Clone, FromRow)]
pub struct BlobRow {
    /// Lowercase hex SHA-256 of the bytes.
    pub id: String,
    /// Size in bytes.
    pub size: i64,
    /// Where the blob store keeps (or kept) the bytes.
    pub storage_key: String,
    /// Unix seconds of the first upload.
    pub created_at: i64,
    /// `live`, `expired` (bytes being deleted) or `gone`.
    pub state: String,
    /// Unix seconds of the last upload of these bytes or link minted for them.
    pub touched_at: i64,
}

impl BlobRow {
    /// Whether the blob can be served at `now` under a retention of `retention` seconds.
    pub fn is_live(&self, now: i64, retention: i64) -> bool {
        self.state == "live" && self.touched_at.saturating_add(retention) > now
    }
}

/// What completing an upload did to its blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobCompletion {
    /// The storage key the blob is served from now.
    pub storage_key: String,
    /// Storage keys nobody needs any more, to delete after the commit: the completed upload's
    /// own copy when the blob was already live, or an expired copy it replaced.
    pub unused: Vec<String>,
    /// Whether the blob was queued for media processing now (a `preview` upload of bytes not
    /// queued before): its job is to be published.
    pub media_queued: bool,
}

impl Db {
    /// Looks a blob up by id (in any state).
    pub async fn blob(&self, id: &str) -> Result<Option<BlobRow>, DbError> {
        Ok(sqlx::query_as(
            "SELECT id, size, storage_key, created_at, state, touched_at FROM blobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Restarts a live blob's retention at `now` (a link was minted), and that of its
    /// renditions if it is a processed preview. False if the blob is not live.
    pub async fn touch_blob(&self, id: &str, now: i64) -> Result<bool, DbError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE blobs SET touched_at = $2 WHERE id = $1 AND state = 'live'")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let touched = done.rows_affected() == 1;
        if touched {
            crate::media::touch_renditions(&mut tx, id, now).await?;
        }
        tx.commit().await?;
        Ok(touched)
    }

    /// Live blobs not touched since `cutoff`: `(id, storage_key)`, oldest first.
    pub async fn due_blobs(
        &self,
        cutoff: i64,
        limit: i64,
    ) -> Result<Vec<(String, String)>, DbError> {
        Ok(sqlx::query_as(
            "SELECT id, storage_key FROM blobs WHERE state = 'live' AND touched_at < $1 \
             ORDER BY touched_at LIMIT $2",
        )
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Forgets which accounts held blobs last uploaded before `cutoff` (they no longer count
    /// in any quota); returns how many holdings were dropped.
    pub async fn forget_holdings(&self, cutoff: i64) -> Result<u64, DbError> {
        Ok(sqlx::query("DELETE FROM account_blobs WHERE held_at <= $1")
            .bind(cutoff)
            .execute(&self.writer)
            .await?
            .rows_affected())
    }

    /// Expired blobs whose bytes are still to be deleted: `(id, storage_key)`.
    pub async fn expired_blobs(&self, limit: i64) -> Result<Vec<(String, String)>, DbError> {
        Ok(sqlx::query_as(
            "SELECT id, storage_key FROM blobs WHERE state = 'expired' ORDER BY touched_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Marks a live blob stored under `key` and untouched since `cutoff` expired. False when it
    /// was touched, revived or expired meanwhile.
    /// A preview's processing record goes with it, so that uploading it again processes it
    /// again (its renditions expire on their own).
    pub async fn expire_blob(&self, id: &str, key: &str, cutoff: i64) -> Result<bool, DbError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE blobs SET state = 'expired' \
             WHERE id = $1 AND storage_key = $2 AND state = 'live' AND touched_at < $3",
        )
        .bind(id)
        .bind(key)
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        let expired = done.rows_affected() == 1;
        if expired {
            crate::media::forget(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(expired)
    }

    /// Records that an expired blob's bytes under `key` are deleted.
    pub async fn forget_blob(&self, id: &str, key: &str) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE blobs SET state = 'gone' WHERE id = $1 AND storage_key = $2 AND state = 'expired'",
        )
        .bind(id)
        .bind(key)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

/// Records that `account_id` holds a blob (it completed an upload of it at `now`), inside the
/// completion's transaction: counted in its storage quota from `now` for the retention.
pub(crate) async fn record_holder(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    account_id: &str,
    blob_id: &str,
    size: i64,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO account_blobs (account_id, blob_id, size, held_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (account_id, blob_id) DO UPDATE SET held_at = excluded.held_at",
    )
    .bind(account_id)
    .bind(blob_id)
    .bind(size)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records a completed upload's copy of a blob inside the completion's transaction: a new blob
/// is inserted, a live one is touched (the copy is unused), an expired or gone one is revived
/// with the copy.
pub(crate) async fn record_copy(
    tx: &mut sqlx::AnyConnection,
    blob_id: &str,
    size: i64,
    storage_key: &str,
    now: i64,
) -> Result<BlobCompletion, DbError> {
    let kept: Option<(String,)> = sqlx::query_as(
        "INSERT INTO blobs (id, size, storage_key, created_at, state, touched_at) \
         VALUES ($1, $2, $3, $4, 'live', $4) \
         ON CONFLICT (id) DO UPDATE SET touched_at = excluded.touched_at \
         WHERE blobs.state = 'live' RETURNING storage_key",
    )
    .bind(blob_id)
    .bind(size)
    .bind(storage_key)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((kept,)) = kept {
        let unused = if kept == storage_key {
            Vec::new()
        } else {
            vec![storage_key.to_owned()]
        };
        return Ok(BlobCompletion {
            storage_key: kept,
            unused,
            media_queued: false,
        });
    }
    let (old_key, old_state): (String, String) =
        sqlx::query_as("SELECT storage_key, state FROM blobs WHERE id = $1")
            .bind(blob_id)
            .fetch_one(&mut *tx)
            .await?;
    sqlx::query(
        "UPDATE blobs SET state = 'live', storage_key = $2, size = $3, touched_at = $4 \
         WHERE id = $1 AND state <> 'live'",
    )
    .bind(blob_id)
    .bind(storage_key)
    .bind(size)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let unused = if old_state == "expired" && old_key != storage_key {
        vec![old_key]
    } else {
        Vec::new()
    };
    Ok(BlobCompletion {
        storage_key: storage_key.to_owned(),
        unused,
        media_queued: false,
    })
}
