use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::{
    BlobId, BlobStore, ByteStream, Manifest, StagedWriter, StoreError, SyncJob, check_upload_id,
};

/// Bytes a download reads from a blob file at a time.
const READ_CHUNK: usize = 256 * 1024;

/// Blobs as files under a root directory: `ab/cd/<id>.<upload>` for blobs, `.staging/<upload>` for
/// unfinished uploads (same file system, so publishing is an atomic rename).
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// Opens (creating) a store rooted at `root`.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = root.as_ref().to_path_buf();
        tokio::fs::create_dir_all(root.join(".staging"))
            .await
            .map_err(|e| {
                StoreError::Config(format!(
                    "cannot create blob directory {}: {e}",
                    root.display()
                ))
            })?;
        Ok(Self { root })
    }

    fn staged_path(&self, upload: &str) -> Result<PathBuf, StoreError> {
        check_upload_id(upload)?;
        Ok(self.root.join(".staging").join(upload))
    }

    /// The storage key of the copy of a blob that an upload published: `ab/cd/<id>.<upload>`,
    /// relative to the root. Each copy has its own key, so deleting an expired copy can never
    /// remove the bytes of a newer upload of the same blob.
    fn blob_key(blob: &BlobId, upload: &str) -> String {
        let id = blob.as_str();
        format!("{}/{}/{id}.{upload}", &id[0..2], &id[2..4])
    }

    /// The path of a storage key, which must be one this store made (`ab/cd/<id>.<upload>`,
    /// or `ab/cd/<id>` from before copies had their own keys).
    fn key_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let valid = key.rsplit('/').next().is_some_and(|name| {
            let (id, upload) = name.split_once('.').unwrap_or((name, ""));
            id.parse::<BlobId>().is_ok_and(|id| {
                let legacy = format!("{}/{}/{id}", &id.as_str()[0..2], &id.as_str()[2..4]);
                if upload.is_empty() {
                    legacy == key
                } else {
                    check_upload_id(upload).is_ok() && Self::blob_key(&id, upload) == key
                }
            })
        });
        if valid {
            Ok(self.root.join(key))
        } else {
            Err(StoreError::InvalidId(key.to_owned()))
        }
    }
}

/// How long a writer waits for the previous writer of an upload (on this or another node
/// sharing the directory) to let go of the staged file.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Takes the staged file's exclusive lock (held until every descriptor of this open file is
/// closed), so that two writers never write one upload's bytes at once, even across processes.
fn lock_exclusive(file: &std::fs::File) -> Result<(), StoreError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::Busy),
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
    }
}

fn not_found_is_none<T>(r: std::io::Result<T>) -> Result<Option<T>, StoreError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[async_trait::async_trait]
impl BlobStore for FsStore {
    async fn open_staged(
        &self,
        upload: &str,
        offset: u64,
        _max_len: u64,
        _manifest: &Manifest,
    ) -> Result<Box<dyn StagedWriter>, StoreError> {
        let path = self.staged_path(upload)?;
        let writer = tokio::task::spawn_blocking(move || -> Result<FsStagedWriter, StoreError> {
            // Only a new upload creates its staged file: a missing one at a later offset was
            // published (or lost), and must not come back empty.
            let opened = std::fs::OpenOptions::new()
                .create(offset == 0)
                .write(true)
                .truncate(false)
                .open(&path);
            let mut file = not_found_is_none(opened)?.ok_or(StoreError::NotFound)?;
            lock_exclusive(&file)?;
            let len = file.metadata()?.len();
            if len < offset {
                return Err(StoreError::SizeMismatch {
                    expected: offset,
                    actual: len,
                });
            }
            if len > offset {
                file.set_len(offset)?;
            }
            file.seek(SeekFrom::Start(offset))?;
            Ok(FsStagedWriter {
                file: std::io::BufWriter::with_capacity(1 << 20, file),
            })
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(Box::new(writer))
    }

    async fn discard_staged(&self, upload: &str) -> Result<(), StoreError> {
        let path = self.staged_path(upload)?;
        not_found_is_none(tokio::fs::remove_file(path).await)?;
        Ok(())
    }

    async fn publish(
        &self,
        upload: &str,
        blob: &BlobId,
        size: u64,
        _manifest: &Manifest,
    ) -> Result<String, StoreError> {
        let staged = self.staged_path(upload)?;
        let key = Self::blob_key(blob, upload);
        let target = self.root.join(&key);
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let Some(meta) = not_found_is_none(std::fs::metadata(&staged))? else {
                // Already published by an earlier attempt that crashed after the rename, or
                // an empty upload that never staged a byte.
                if !target.exists() {
                    if size > 0 {
                        return Err(StoreError::NotFound);
                    }
                    std::fs::create_dir_all(target.parent().unwrap_or(&target))?;
                    std::fs::File::create(&target)?.sync_all()?;
                }
                return Ok(());
            };
            // Published by an earlier attempt that crashed before removing the staged file.
            if target.exists() {
                std::fs::remove_file(&staged)?;
                return Ok(());
            }
            if meta.len() < size {
                return Err(StoreError::SizeMismatch {
                    expected: size,
                    actual: meta.len(),
                });
            }
            if meta.len() > size {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&staged)?
                    .set_len(size)?;
            }
            let dir = target
                .parent()
                .ok_or_else(|| StoreError::InvalidId(target.display().to_string()))?;
            std::fs::create_dir_all(dir)?;
            std::fs::File::open(&staged)?.sync_all()?;
            std::fs::rename(&staged, &target)?;
            std::fs::File::open(dir)?.sync_all()?;
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(key)
    }

    async fn read(&self, key: &str, range: Range<u64>) -> Result<ByteStream, StoreError> {
        let path = self.key_path(key)?;
        let file = tokio::task::spawn_blocking(move || std::fs::File::open(path))
            .await
            .map_err(std::io::Error::other)?;
        let file = std::sync::Arc::new(not_found_is_none(file)?.ok_or(StoreError::NotFound)?);
        // One blocking-pool hop and one copy (page cache → the chunk) per READ_CHUNK bytes,
        // read on demand: memory stays at a chunk or two per download, and no thread waits on a
        // slow client.
        let chunks = futures_util::stream::try_unfold(range, move |range| {
            let file = file.clone();
            async move {
                if range.is_empty() {
                    return Ok(None);
                }
                let len = usize::try_from(range.end - range.start)
                    .unwrap_or(READ_CHUNK)
                    .min(READ_CHUNK);
                let at = range.start;
                let chunk = tokio::task::spawn_blocking(move || {
                    // The file is this download's own and its chunks are read one after
                    // another, so its position is ours; File reads into uninitialised capacity.
                    let mut buf = Vec::with_capacity(len);
                    let mut reader = &*file;
                    reader.seek(SeekFrom::Start(at))?;
                    reader.take(len as u64).read_to_end(&mut buf)?;
                    if buf.len() < len {
                        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                    }
                    Ok(bytes::Bytes::from(buf))
                })
                .await
                .map_err(std::io::Error::other)??;
                Ok(Some((chunk, at + len as u64..range.end)))
            }
        });
        Ok(chunks.boxed())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        not_found_is_none(tokio::fs::remove_file(self.key_path(key)?).await)?;
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        // A name of its own per probe: concurrent probes, and nodes sharing the directory,
        // must not remove each other's.
        let name = format!(".ready-probe-{}", uuid::Uuid::new_v4().simple());
        let probe = self.root.join(".staging").join(name);
        tokio::fs::write(&probe, b"ok").await?;
        tokio::fs::remove_file(&probe).await?;
        Ok(())
    }
}

struct FsStagedWriter {
    file: std::io::BufWriter<std::fs::File>,
}

impl StagedWriter for FsStagedWriter {
    fn write_all(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        Ok(self.file.write_all(buf)?)
    }

    fn checkpoint(&mut self) -> Result<SyncJob, StoreError> {
        self.file.flush()?;
        // fsync through a second descriptor of the same file flushes the same inode.
        let file = self.file.get_ref().try_clone()?;
        Ok(Box::new(move || {
            file.sync_data()?;
            Ok(Manifest::new())
        }))
    }
}
