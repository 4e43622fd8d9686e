//! Blob storage: blobs (streaming, range-aware reads by the storage key the store chose when it
//! published them) and the staged bytes of resumable uploads. One trait, one backend per URL
//! scheme, chosen once at start-up.

mod blob_id;
mod error;
mod fs;
mod s3;

use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;

pub use blob_id::BlobId;
pub use error::StoreError;
pub use fs::FsStore;
pub use s3::S3Store;

/// A stream of blob bytes.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Where blobs and staged upload bytes live.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + Debug {
    /// Opens an upload of at most `max_len` bytes for appending at `offset`; anything stored
    /// past `offset` (written but never committed) is dropped. The writer is blocking: drive it
    /// from a blocking thread.
    async fn open_staged(
        &self,
        upload: &str,
        offset: u64,
        max_len: u64,
    ) -> Result<Box<dyn StagedWriter>, StoreError>;

    /// Tells the store that `offset` bytes of the upload are committed, so that it can drop
    /// what it kept only to resume from an earlier offset.
    async fn committed(&self, _upload: &str, _offset: u64) -> Result<(), StoreError> {
        Ok(())
    }

    /// Deletes an upload's staged bytes, if any.
    async fn discard_staged(&self, upload: &str) -> Result<(), StoreError>;

    /// Turns an upload's `size` staged bytes into the blob `blob` and returns the storage key
    /// the bytes live under now (recorded with the blob; the store picks it). Idempotent.
    async fn publish(&self, upload: &str, blob: &BlobId, size: u64) -> Result<String, StoreError>;

    /// Streams `range` of the blob stored under `key`, with bounded memory.
    async fn read(&self, key: &str, range: Range<u64>) -> Result<ByteStream, StoreError>;

    /// Deletes the blob stored under `key`; deleting a missing blob is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Checks that the store is usable (readiness).
    async fn check(&self) -> Result<(), StoreError>;
}

/// Makes the bytes written before it was created durable; may run on another thread while
/// writing goes on.
pub type SyncJob = Box<dyn FnOnce() -> Result<(), StoreError> + Send>;

/// Appends to one upload's staged bytes. Blocking.
pub trait StagedWriter: Send {
    /// Appends `buf`.
    fn write_all(&mut self, buf: &[u8]) -> Result<(), StoreError>;
    /// Hands everything written so far to the backend and returns the job that makes it durable.
    fn checkpoint(&mut self) -> Result<SyncJob, StoreError>;
    /// Makes every byte written so far durable, here and now.
    fn sync(&mut self) -> Result<(), StoreError> {
        self.checkpoint()?()
    }
}

/// Opens the store a URL names: `file:///path` (or a plain path), or
/// `s3://BUCKET?endpoint=URL&region=REGION&path_style=true`.
pub async fn open(url: &str) -> Result<Arc<dyn BlobStore>, StoreError> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        Some("file") | None => {
            let path = url.strip_prefix("file://").unwrap_or(url);
            if path.is_empty() {
                return Err(StoreError::Config("file:// blob store needs a path".into()));
            }
            Ok(Arc::new(FsStore::open(path).await?))
        }
        Some("s3") => Ok(Arc::new(S3Store::open(url).await?)),
        Some(other) => Err(StoreError::Config(format!(
            "unsupported blob store scheme {other:?}: use file:///PATH or s3://BUCKET?endpoint=URL"
        ))),
    }
}
