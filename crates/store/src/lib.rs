//! Blob storage: blobs (streaming, range-aware reads by the storage key the store chose when it
//! published them) and the staged bytes of resumable uploads. One trait, one backend per URL
//! scheme, chosen once at start-up.

mod blob_id;
mod error;
mod fs;
mod s3;
#[cfg(feature = "test-support")]
pub mod testing;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;

pub use blob_id::BlobId;
pub use error::StoreError;
pub use fs::FsStore;
pub use s3::S3Store;

/// A stream of blob bytes.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// What a store must know, beside the offset, to resume or publish an upload: entries it hands
/// out with every durable checkpoint, which the caller commits in the same transaction as the
/// offset (an entry replaces an earlier one of the same name) and gives back on
/// [`BlobStore::open_staged`] and [`BlobStore::publish`]. Because only the holder of an
/// upload's lease can commit, a fenced-off writer's late writes never become part of the
/// upload. The file store needs none; the S3 store records its multipart upload, its parts and
/// the object holding the part in progress.
pub type Manifest = BTreeMap<String, String>;

/// Where blobs and staged upload bytes live.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + Debug {
    /// Opens an upload of at most `max_len` bytes for appending at `offset`, the committed
    /// offset, whose committed manifest is `manifest`; anything stored past `offset` (written
    /// but never committed) is ignored or dropped. The writer is blocking: drive it from a
    /// blocking thread.
    async fn open_staged(
        &self,
        upload: &str,
        offset: u64,
        max_len: u64,
        manifest: &Manifest,
    ) -> Result<Box<dyn StagedWriter>, StoreError>;

    /// Tells the store that a checkpoint's manifest entries `committed` are committed, so that
    /// it can drop what it kept only to resume from an earlier offset.
    async fn committed(&self, _upload: &str, _committed: &Manifest) -> Result<(), StoreError> {
        Ok(())
    }

    /// Deletes an upload's staged bytes, if any.
    async fn discard_staged(&self, upload: &str) -> Result<(), StoreError>;

    /// Turns an upload's `size` committed bytes (described by `manifest`) into the blob `blob`
    /// and returns the storage key the bytes live under now (recorded with the blob; the store
    /// picks it). Idempotent. [`StoreError::Conflict`] if a fenced-off writer overwrote
    /// committed bytes, which the store detects rather than publishing them.
    async fn publish(
        &self,
        upload: &str,
        blob: &BlobId,
        size: u64,
        manifest: &Manifest,
    ) -> Result<String, StoreError>;

    /// Publishes the concatenation of `sources` (storage keys of published bytes with their
    /// lengths, in order) as upload `upload`'s bytes without passing them through this process,
    /// where the store can: returns the key [`BlobStore::publish`] would, which then finds them
    /// published already; `None` when the store cannot (the caller streams the bytes through
    /// an ordinary upload instead). The S3 store copies server-side when every source but the
    /// last is at least 5 MiB.
    async fn compose(
        &self,
        _upload: &str,
        _sources: &[(String, u64)],
    ) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// Streams `range` of the blob stored under `key`, with bounded memory.
    async fn read(&self, key: &str, range: Range<u64>) -> Result<ByteStream, StoreError>;

    /// A URL that serves the blob stored under `key` without credentials for `ttl` (an S3
    /// presigned GET), or `None` when the store cannot make one.
    async fn presign(&self, _key: &str, _ttl: Duration) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// Deletes the blob stored under `key`; deleting a missing blob is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Checks that the store is usable (readiness).
    async fn check(&self) -> Result<(), StoreError>;
}

/// Makes the bytes written before it was created durable and returns the manifest entries to
/// commit with them; may run on another thread while writing goes on.
pub type SyncJob = Box<dyn FnOnce() -> Result<Manifest, StoreError> + Send>;

/// Appends to one upload's staged bytes. Blocking.
pub trait StagedWriter: Send {
    /// Appends `buf`.
    fn write_all(&mut self, buf: &[u8]) -> Result<(), StoreError>;
    /// Hands everything written so far to the backend and returns the job that makes it durable.
    fn checkpoint(&mut self) -> Result<SyncJob, StoreError>;
    /// Whether now is a cheap moment for a checkpoint (the S3 store: right after a part went
    /// up, when little is left to store as a temporary object). Checkpoints also happen every
    /// `checkpoint_bytes` regardless.
    fn wants_checkpoint(&self) -> bool {
        false
    }
    /// Makes every byte written so far durable, here and now; returns the manifest entries to
    /// commit with them.
    fn sync(&mut self) -> Result<Manifest, StoreError> {
        self.checkpoint()?()
    }
}

/// Checks that an upload id can name staged bytes in any store (a file name, an object key
/// segment): 1 to 64 ASCII letters, digits, `-` and `_`.
fn check_upload_id(upload: &str) -> Result<(), StoreError> {
    let safe = !upload.is_empty()
        && upload.len() <= 64
        && upload
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if safe {
        Ok(())
    } else {
        Err(StoreError::InvalidId(upload.to_owned()))
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
