//! tus concatenation: a final upload claims its parked partial uploads, joins their bytes in
//! order into one upload that completes as one blob (its SHA-256 over the whole), and deletes
//! them; if it fails, it is deleted and the parts are parked again for a retry.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use sealpost_auth::unix_now;
use sealpost_db::UploadRow;
use sealpost_store::Manifest;
use sha2::{Digest, Sha256};

use super::protocol::{Concat, Metadata, concat_err};
use super::service::{AppendSpec, CreateSpec, UploadService, UploadView, Writer};
use super::sink::save_sha256;
use crate::error::{ApiError, ApiResult};
use crate::metrics::MethodLabels;

/// A part's stored bytes: storage key and length.
type Source = (String, u64);

impl UploadService {
    /// Creates a tus final upload of `parts` (parked partial uploads of `account`, distinct, in
    /// order). Runs to its end even if the client goes away, so the parts are always deleted
    /// or parked again.
    pub async fn concatenate(
        self: &Arc<Self>,
        account: &str,
        parts: Vec<String>,
        metadata: Metadata,
    ) -> ApiResult<UploadRow> {
        let this = self.clone();
        let account = account.to_owned();
        Self::detached(async move {
            let now = unix_now();
            if !this
                .db
                .claim_parts(&account, &parts, now, this.expiry(now))
                .await?
            {
                return Err(concat_err(
                    "every part must be a partial upload of this account whose bytes were all \
                     sent, not expired, and not used by another final upload",
                ));
            }
            let joined = this.join(&account, &parts, metadata).await;
            if joined.is_ok() {
                for id in &parts {
                    if let Err(e) = this.delete_part(id).await {
                        tracing::warn!(upload = %id, error = %e, "cannot delete a joined partial upload; it expires later");
                    }
                }
            } else if let Err(e) = this.db.release_parts(&parts).await {
                tracing::warn!(error = %e, "cannot park the parts of a failed final upload again; they expire later");
            }
            joined
        })
        .await
    }

    /// Creates the final upload and joins the claimed `parts` into it; deletes it if that
    /// fails.
    async fn join(
        self: &Arc<Self>,
        account: &str,
        parts: &[String],
        metadata: Metadata,
    ) -> ApiResult<UploadRow> {
        let mut sources = Vec::with_capacity(parts.len());
        for id in parts {
            let part = self
                .db
                .upload(id)
                .await?
                .ok_or(ApiError::NotFound("no such upload"))?;
            let key = part
                .storage_key
                .clone()
                .ok_or_else(|| ApiError::Internal(format!("parked upload {id} has no bytes")))?;
            sources.push((key, part.offset()));
        }
        let total = sources.iter().map(|(_, len)| len).sum();
        self.check_max_size(total)?;
        let spec = CreateSpec {
            length: Some(total),
            metadata,
            concat: Some(Concat::Final(parts.to_vec())),
        };
        let row = self.create(account, spec).await?;
        if row.state == "complete" {
            return Ok(row);
        }
        let joined = match self.store.compose(&row.id, &sources).await {
            Ok(Some(key)) => {
                self.finish_composed(account, &row.id, key, total, &sources)
                    .await
            }
            Ok(None) => self.stream_parts(account, &row.id, total, sources).await,
            Err(e) => Err(e.into()),
        };
        match joined {
            Ok(row) => {
                tracing::info!(upload = %row.id, size = total, "final upload joined");
                Ok(row)
            }
            Err(e) => {
                if let Err(cleanup) = self.terminate(account, &row.id).await {
                    tracing::warn!(upload = %row.id, error = %cleanup, "cannot delete a failed final upload");
                }
                Err(e)
            }
        }
    }

    /// Streams the parts' stored bytes into the final upload `id`, hashing and checkpointing
    /// them as any append does.
    async fn stream_parts(
        self: &Arc<Self>,
        account: &str,
        id: &str,
        total: u64,
        sources: Vec<Source>,
    ) -> ApiResult<UploadRow> {
        self.count_concatenation("stream");
        let store = self.store.clone();
        let bytes = futures_util::stream::iter(sources.into_iter().filter(|(_, len)| *len > 0))
            .then(move |(key, len)| {
                let store = store.clone();
                async move {
                    store
                        .read(&key, 0..len)
                        .await
                        .map_err(std::io::Error::other)
                }
            })
            .try_flatten();
        let spec = AppendSpec {
            offset: 0,
            body: Body::from_stream(bytes),
            content_length: Some(total),
            declared_length: None,
            complete: None,
            checksum: None,
        };
        self.append_as(account, id, spec, Writer::Concatenation)
            .await
            .map_err(|e| match e {
                // The "body" is the parts' stored bytes: failing to read them is ours.
                ApiError::BadRequest("request-interrupted", _) => {
                    ApiError::Internal(format!("reading the partial uploads of {id} failed"))
                }
                e => e,
            })
    }

    /// Completes the final upload `id` whose bytes the store composed under `key`: hashes the
    /// parts (the blob id needs every byte, in order), records the offset and hash, and
    /// finalizes as any upload. The composed object is deleted if that fails.
    async fn finish_composed(
        &self,
        account: &str,
        id: &str,
        key: String,
        total: u64,
        sources: &[Source],
    ) -> ApiResult<UploadRow> {
        self.count_concatenation("copy");
        let finished = async {
            let hasher = self.hash_parts(sources).await?;
            let (_guard, row) = self.take_over(account, id, |_| Ok(())).await?;
            self.commit(
                &row,
                total,
                &save_sha256(&hasher),
                &Manifest::new(),
                Some(total),
            )
            .await?;
            let row = self
                .db
                .upload(id)
                .await?
                .ok_or(ApiError::NotFound("no such upload"))?;
            self.finalize(&row, row.lease).await
        }
        .await;
        if finished.is_err()
            && !self
                .db
                .upload(id)
                .await
                .is_ok_and(|row| row.is_some_and(|r| r.state == "complete"))
        {
            self.delete_copy(&key).await;
        }
        finished
    }

    /// The SHA-256 state after the parts' bytes, in order, hashed on a blocking thread.
    async fn hash_parts(&self, sources: &[Source]) -> ApiResult<Sha256> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let hashing = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Some(chunk) = rx.blocking_recv() {
                hasher.update(&chunk);
            }
            hasher
        });
        let read: ApiResult<()> = async {
            for (key, len) in sources.iter().filter(|(_, len)| *len > 0) {
                let mut bytes = self.store.read(key, 0..*len).await?;
                while let Some(chunk) = bytes.next().await {
                    let chunk =
                        chunk.map_err(|e| ApiError::Internal(format!("reading {key}: {e}")))?;
                    if tx.send(chunk).await.is_err() {
                        return Err(ApiError::Internal("the hashing thread stopped".into()));
                    }
                }
            }
            Ok(())
        }
        .await;
        drop(tx);
        let hasher = hashing
            .await
            .map_err(|e| ApiError::Internal(format!("hashing thread: {e}")))?;
        read.map(|()| hasher)
    }

    /// Deletes a joined partial upload's bytes, then its row.
    async fn delete_part(&self, id: &str) -> ApiResult<()> {
        if let Some(key) = self.db.upload(id).await?.and_then(|r| r.storage_key) {
            self.store.delete(&key).await?;
        }
        self.db.delete_upload(id).await?;
        Ok(())
    }

    fn count_concatenation(&self, method: &'static str) {
        self.metrics
            .concatenations
            .get_or_create(&MethodLabels { method })
            .inc();
    }
}
