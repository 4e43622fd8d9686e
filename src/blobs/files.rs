//! Blobs to and from local files: the media worker copies a preview out to decode it, and
//! stores each rendition it made as a blob of its own.

use std::io::Read;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use rand::Rng;
use sealpost_auth::unix_now;
use sealpost_db::BlobRow;
use sealpost_store::{BlobId, Manifest};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::BlobService;
use crate::error::{ApiError, ApiResult};

/// Bytes read from a file per write to the store.
const CHUNK: usize = 256 << 10;

impl BlobService {
    /// Copies the blob `row` (looked up with [`BlobService::live`]) into a new file at
    /// `path`, streaming; returns its size.
    pub async fn copy_to_file(&self, row: &BlobRow, path: &Path) -> ApiResult<u64> {
        let size = u64::try_from(row.size).unwrap_or(0);
        let mut stream = self.store.read(&row.storage_key, 0..size).await?;
        let mut file = tokio::fs::File::create_new(path).await.map_err(io)?;
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk.map_err(io)?).await.map_err(io)?;
        }
        file.sync_all().await.map_err(io)?;
        Ok(size)
    }

    /// Stores the file at `path` as a blob: hashed while it is written to the store (off the
    /// executor), published under a key of its own and recorded; if the blob is live already
    /// its retention restarts and the copy is dropped. Returns the blob id and size.
    pub async fn put_file(&self, path: &Path) -> ApiResult<(BlobId, u64)> {
        let size = tokio::fs::metadata(path).await.map_err(io)?.len();
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        // Staged like an upload, under a name no upload id (plain hex) can take.
        let staging = format!("put-{}", hex::encode(raw));
        let stored = self.stage_and_publish(&staging, path, size).await;
        if stored.is_err()
            && let Err(e) = self.store.discard_staged(&staging).await
        {
            tracing::warn!(staging, error = %e, "cannot delete the staged copy of a failed put");
        }
        let (blob, key) = stored?;
        let recorded = self
            .db
            .record_blob(
                blob.as_str(),
                i64::try_from(size).unwrap_or(i64::MAX),
                &key,
                unix_now(),
            )
            .await;
        let completion = match recorded {
            Ok(completion) => completion,
            Err(e) => {
                // Published but never recorded: nothing refers to this copy.
                if let Err(e) = self.store.delete(&key).await {
                    tracing::warn!(key, error = %e, "cannot delete an unrecorded copy of a blob");
                }
                return Err(e.into());
            }
        };
        for unused in &completion.unused {
            if let Err(e) = self.store.delete(unused).await {
                tracing::warn!(key = %unused, error = %e, "cannot delete an unused copy of a blob");
            }
        }
        Ok((blob, size))
    }

    async fn stage_and_publish(
        &self,
        staging: &str,
        path: &Path,
        size: u64,
    ) -> ApiResult<(BlobId, String)> {
        let mut writer = self
            .store
            .open_staged(staging, 0, size, &Manifest::new())
            .await?;
        let path: PathBuf = path.to_owned();
        let (blob, manifest) = tokio::task::spawn_blocking(move || -> ApiResult<_> {
            let mut file = std::fs::File::open(&path).map_err(io)?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; CHUNK];
            let mut written = 0u64;
            loop {
                let n = file.read(&mut buf).map_err(io)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                writer.write_all(&buf[..n])?;
                written += n as u64;
            }
            if written != size {
                return Err(ApiError::Internal(format!(
                    "{} changed while it was stored",
                    path.display()
                )));
            }
            let manifest = writer.sync()?;
            Ok((BlobId::from_digest(&hasher.finalize().into()), manifest))
        })
        .await
        .map_err(|e| ApiError::Internal(format!("put task: {e}")))??;
        let key = self.store.publish(staging, &blob, size, &manifest).await?;
        Ok((blob, key))
    }
}

fn io(e: std::io::Error) -> ApiError {
    ApiError::Internal(format!("local file: {e}"))
}
