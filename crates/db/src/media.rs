use sqlx::FromRow;

use crate::{BlobCompletion, Db, DbError};

/// The processing state of one preview blob.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct MediaRow {
    /// The source blob.
    pub blob_id: String,
    /// `pending`, `ready` or `failed`.
    pub state: String,
    /// Failed: the stable error code.
    pub code: Option<String>,
    /// Failed: what happened.
    pub detail: Option<String>,
    /// Ready: the source's real MIME type.
    pub mime: Option<String>,
    /// Ready: displayed width.
    pub width: Option<i64>,
    /// Ready: displayed height.
    pub height: Option<i64>,
    /// Ready: frames.
    pub frames: Option<i64>,
    /// Ready: a BlurHash.
    pub blurhash: Option<String>,
    /// Ready, video or audio: duration in milliseconds.
    pub duration_ms: Option<i64>,
    /// Processing attempts so far.
    pub attempts: i64,
    /// Unix seconds the job was queued.
    pub created_at: i64,
    /// Unix seconds of the last change.
    pub updated_at: i64,
}

/// One stored rendition of a preview.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct RenditionRow {
    /// Its name (`crop-32`, `fit-320x240`, …).
    pub name: String,
    /// Its MIME type.
    pub mime: String,
    /// Width.
    pub width: i64,
    /// Height.
    pub height: i64,
    /// Size in bytes.
    pub size: i64,
    /// The rendition's own blob id.
    pub rendition_id: String,
}

/// What processing found, for [`Db::finish_media`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaOutcome {
    /// Processed: what the source is, and its renditions (already stored as blobs).
    Ready {
        /// The source's real MIME type.
        mime: String,
        /// Displayed width.
        width: i64,
        /// Displayed height.
        height: i64,
        /// Frames.
        frames: i64,
        /// A BlurHash.
        blurhash: String,
        /// Video and audio: duration in milliseconds.
        duration_ms: Option<i64>,
        /// The renditions.
        renditions: Vec<RenditionRow>,
    },
    /// Refused for good.
    Failed {
        /// The stable error code.
        code: String,
        /// What happened.
        detail: String,
    },
}

const MEDIA_COLUMNS: &str = "blob_id, state, code, detail, mime, width, height, frames, blurhash, \
                             duration_ms, attempts, created_at, updated_at";

impl Db {
    /// Queues a preview blob for processing; false if it was queued (or processed) before.
    /// (Completing a `preview` upload does this in its own transaction.)
    pub async fn enqueue_media(
        &self,
        blob_id: &str,
        account_id: &str,
        now: i64,
    ) -> Result<bool, DbError> {
        let mut conn = self.writer.acquire().await?;
        enqueue(&mut conn, blob_id, account_id, now).await
    }

    /// Takes the pending preview a worker should process next, marking it started at `now`:
    /// of the previews no worker took since `stale` (or ever), the one of the account whose
    /// last preview started longest ago, oldest first within an account. `None` when every
    /// pending preview is taken.
    pub async fn take_media(&self, now: i64, stale: i64) -> Result<Option<String>, DbError> {
        // Two workers may pick the same row; the update's condition lets one take it.
        for _ in 0..5 {
            let next: Option<(String,)> = sqlx::query_as(
                "SELECT m.blob_id FROM media m \
                 WHERE m.state = 'pending' AND (m.started_at IS NULL OR m.started_at < $1) \
                 ORDER BY (SELECT COALESCE(MAX(o.started_at), 0) FROM media o \
                           WHERE o.account_id = m.account_id), m.created_at, m.blob_id \
                 LIMIT 1",
            )
            .bind(stale)
            .fetch_optional(&self.pool)
            .await?;
            let Some((id,)) = next else {
                return Ok(None);
            };
            let taken = sqlx::query(
                "UPDATE media SET started_at = $2 WHERE blob_id = $1 AND state = 'pending' \
                 AND (started_at IS NULL OR started_at < $3)",
            )
            .bind(&id)
            .bind(now)
            .bind(stale)
            .execute(&self.writer)
            .await?;
            if taken.rows_affected() == 1 {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// A preview's processing state.
    pub async fn media(&self, blob_id: &str) -> Result<Option<MediaRow>, DbError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MEDIA_COLUMNS} FROM media WHERE blob_id = $1"
        )))
        .bind(blob_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A preview's renditions, by name and type.
    pub async fn media_renditions(&self, blob_id: &str) -> Result<Vec<RenditionRow>, DbError> {
        Ok(sqlx::query_as(
            "SELECT name, mime, width, height, size, rendition_id FROM media_renditions \
             WHERE blob_id = $1 ORDER BY name, mime",
        )
        .bind(blob_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Counts an attempt at a pending preview; returns the attempts so far.
    pub async fn count_media_attempt(&self, blob_id: &str, now: i64) -> Result<i64, DbError> {
        let (attempts,): (i64,) = sqlx::query_as(
            "UPDATE media SET attempts = attempts + 1, updated_at = $2 \
             WHERE blob_id = $1 RETURNING attempts",
        )
        .bind(blob_id)
        .bind(now)
        .fetch_one(&self.writer)
        .await?;
        Ok(attempts)
    }

    /// Records a pending preview's outcome, once: false if it was finished already (by another
    /// worker that got the same job).
    pub async fn finish_media(
        &self,
        blob_id: &str,
        outcome: &MediaOutcome,
        now: i64,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin().await?;
        let done =
            match outcome {
                MediaOutcome::Ready {
                    mime,
                    width,
                    height,
                    frames,
                    blurhash,
                    duration_ms,
                    renditions,
                } => {
                    let done = sqlx::query(
                        "UPDATE media SET state = 'ready', mime = $2, width = $3, height = $4, \
                     frames = $5, blurhash = $6, updated_at = $7, duration_ms = $8 \
                     WHERE blob_id = $1 AND state = 'pending'",
                    )
                    .bind(blob_id)
                    .bind(mime)
                    .bind(width)
                    .bind(height)
                    .bind(frames)
                    .bind(blurhash)
                    .bind(now)
                    .bind(duration_ms)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 1 {
                        for r in renditions {
                            sqlx::query(
                                "INSERT INTO media_renditions \
                             (blob_id, name, mime, width, height, size, rendition_id) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7)",
                            )
                            .bind(blob_id)
                            .bind(&r.name)
                            .bind(&r.mime)
                            .bind(r.width)
                            .bind(r.height)
                            .bind(r.size)
                            .bind(&r.rendition_id)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                    done.rows_affected() == 1
                }
                MediaOutcome::Failed { code, detail } => sqlx::query(
                    "UPDATE media SET state = 'failed', code = $2, detail = $3, updated_at = $4 \
                     WHERE blob_id = $1 AND state = 'pending'",
                )
                .bind(blob_id)
                .bind(code)
                .bind(detail)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1,
            };
        tx.commit().await?;
        Ok(done)
    }

    /// Claims up to `limit` previews pending since before `cutoff` (their job may be lost, or
    /// its worker died) for republishing: their clock restarts at `now`, so that the next sweep,
    /// on any node, leaves them alone for a while. Oldest first.
    pub async fn requeue_stale_media(
        &self,
        cutoff: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<String>, DbError> {
        let stale: Vec<(String,)> = sqlx::query_as(
            "SELECT blob_id FROM media WHERE state = 'pending' AND updated_at < $1 \
             ORDER BY updated_at LIMIT $2",
        )
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(stale.len());
        for (id,) in stale {
            let done = sqlx::query(
                "UPDATE media SET updated_at = $3 \
                 WHERE blob_id = $1 AND state = 'pending' AND updated_at < $2",
            )
            .bind(&id)
            .bind(cutoff)
            .bind(now)
            .execute(&self.writer)
            .await?;
            if done.rows_affected() == 1 {
                claimed.push(id);
            }
        }
        Ok(claimed)
    }

    /// Records a blob that did not come from an upload (a rendition), stored at `storage_key`:
    /// inserted, or revived if expired; a live blob keeps its key and `storage_key` is left to
    /// delete (see [`BlobCompletion`]).
    pub async fn record_blob(
        &self,
        blob_id: &str,
        size: i64,
        storage_key: &str,
        now: i64,
    ) -> Result<BlobCompletion, DbError> {
        let mut tx = self.begin().await?;
        let completion =
            crate::blobs::record_copy(&mut tx, blob_id, size, storage_key, now).await?;
        tx.commit().await?;
        Ok(completion)
    }
}

/// Queues `blob_id` for processing inside a transaction; false if it was queued before.
pub(crate) async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    blob_id: &str,
    account_id: &str,
    now: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO media (blob_id, state, created_at, updated_at, account_id) \
         VALUES ($1, 'pending', $2, $2, $3) ON CONFLICT (blob_id) DO NOTHING",
    )
    .bind(blob_id)
    .bind(now)
    .bind(account_id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Restarts the retention of a preview's live renditions along with the preview's.
pub(crate) async fn touch_renditions(
    conn: &mut sqlx::AnyConnection,
    blob_id: &str,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE blobs SET touched_at = $2 WHERE state = 'live' AND id IN \
         (SELECT rendition_id FROM media_renditions WHERE blob_id = $1)",
    )
    .bind(blob_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Drops an expired preview's processing record and rendition list.
pub(crate) async fn forget(conn: &mut sqlx::AnyConnection, blob_id: &str) -> Result<(), DbError> {
    for table in ["media_renditions", "media"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE blob_id = $1"
        )))
        .bind(blob_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
