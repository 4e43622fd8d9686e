//! Blobs in an S3-compatible bucket (AWS S3, MinIO, Garage, R2).
//!
//! An upload is one multipart upload of the object `objects/<upload id>`, whose key becomes the
//! blob's storage key. Every part has the same size, `max(5 MiB, length / 10 000)` rounded up to
//! a MiB (so no upload needs more than 10 000 parts), fixed by the first part. Bytes that do not
//! fill a part yet are made durable as a temporary object `staging/<upload id>/<start>` holding
//! the part's bytes from `start`; any node can continue any upload from the committed offset by
//! reading that object back (at most one part). Completion copies the last partial part from its
//! temporary object server-side and completes the multipart upload: the bytes never come back
//! through the server.

use std::ops::Range;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures_util::StreamExt;
use tokio::runtime::Handle;
use tokio_util::io::ReaderStream;

use crate::{BlobId, BlobStore, ByteStream, StagedWriter, StoreError, SyncJob};

const MIB: u64 = 1 << 20;
const MIN_PART: u64 = 5 * MIB;
const MAX_PARTS: u64 = 10_000;

/// An S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

fn s3_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(std::io::Error::other(format!("S3: {e}")))
}

fn object_key(upload: &str) -> String {
    format!("objects/{upload}")
}

fn tail_prefix(upload: &str) -> String {
    format!("staging/{upload}/")
}

fn tail_key(upload: &str, start: u64) -> String {
    format!("staging/{upload}/{start:020}")
}

/// The part size for an upload of at most `max_len` bytes.
fn part_size_for(max_len: u64) -> u64 {
    max_len.div_ceil(MAX_PARTS).max(MIN_PART).div_ceil(MIB) * MIB
}

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

impl S3Store {
    /// Opens `s3://BUCKET?endpoint=URL&region=REGION&path_style=true|false`; credentials come
    /// from the standard AWS environment and profile chain.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| StoreError::Config(format!("invalid S3 URL {url:?}: {e}")))?;
        let bucket = parsed
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                StoreError::Config("s3:// URL needs a bucket: s3://BUCKET?endpoint=…".into())
            })?
            .to_owned();
        let (mut endpoint, mut region, mut path_style) = (None, None, None);
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "endpoint" => endpoint = Some(v.into_owned()),
                "region" => region = Some(v.into_owned()),
                "path_style" => path_style = Some(v == "true" || v == "1"),
                other => {
                    return Err(StoreError::Config(format!(
                        "unknown S3 URL parameter {other:?}"
                    )));
                }
            }
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region));
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared);
        // A custom endpoint (MinIO, Garage) usually wants path-style addressing.
        config = config.force_path_style(path_style.unwrap_or(endpoint.is_some()));
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(Self {
            client: Client::from_conf(config.build()),
            bucket,
        })
    }

    async fn multipart_id(&self, key: &str) -> Result<Option<String>, StoreError> {
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(key)
            .send()
            .await
            .map_err(s3_err)?;
        Ok(listed
            .uploads()
            .iter()
            .find(|u| u.key() == Some(key))
            .and_then(|u| u.upload_id().map(str::to_owned)))
    }

    /// The uploaded parts, in order, with their sizes.
    async fn parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<(CompletedPart, u64)>, StoreError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(s3_err)?;
            for p in page.parts() {
                let part = CompletedPart::builder()
                    .set_part_number(p.part_number())
                    .set_e_tag(p.e_tag().map(str::to_owned))
                    .build();
                parts.push((part, u64::try_from(p.size().unwrap_or(0)).unwrap_or(0)));
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            marker = page.next_part_number_marker().map(str::to_owned);
        }
        parts.sort_by_key(|(p, _)| p.part_number());
        Ok(parts)
    }

    async fn tails(&self, upload: &str) -> Result<Vec<(u64, String)>, StoreError> {
        let listed = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(tail_prefix(upload))
            .send()
            .await
            .map_err(s3_err)?;
        Ok(listed
            .contents()
            .iter()
            .filter_map(|o| {
                let key = o.key()?;
                let start = key.rsplit('/').next()?.parse().ok()?;
                Some((start, key.to_owned()))
            })
            .collect())
    }

    async fn delete_tails(&self, upload: &str, before: Option<u64>) -> Result<(), StoreError> {
        for (start, key) in self.tails(upload).await? {
            if before.is_none_or(|b| start < b) {
                self.delete(&key).await?;
            }
        }
        Ok(())
    }

    /// Stores an empty object (an empty upload needs no multipart upload).
    async fn put_empty(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(S3Body::from(Vec::new()))
            .send()
            .await
            .map_err(s3_err)?;
        Ok(())
    }

    async fn read_tail(&self, upload: &str, start: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(tail_key(upload, start))
            .range(format!("bytes=0-{}", len - 1))
            .send()
            .await
            .map_err(|_| StoreError::NotFound)?;
        let bytes = object.body.collect().await.map_err(s3_err)?.into_bytes();
        if (bytes.len() as u64) < len {
            return Err(StoreError::SizeMismatch {
                expected: len,
                actual: bytes.len() as u64,
            });
        }
        Ok(bytes.to_vec())
    }
}

#[async_trait::async_trait]
impl BlobStore for S3Store {
    async fn open_staged(
        &self,
        upload: &str,
        offset: u64,
        max_len: u64,
    ) -> Result<Box<dyn StagedWriter>, StoreError> {
        check_upload_id(upload)?;
        let key = object_key(upload);
        let upload_id = match self.multipart_id(&key).await? {
            Some(id) => id,
            None if offset == 0 => self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .content_type("application/octet-stream")
                .send()
                .await
                .map_err(s3_err)?
                .upload_id()
                .ok_or_else(|| s3_err("no upload id"))?
                .to_owned(),
            None => return Err(StoreError::NotFound),
        };
        let uploaded = self.parts(&key, &upload_id).await?;
        let part_size = uploaded.first().map_or_else(
            || part_size_for(max_len).max(offset.div_ceil(MIB) * MIB),
            |(_, size)| *size,
        );
        let full = offset / part_size;
        let start = full * part_size;
        let parts: Vec<CompletedPart> = uploaded
            .into_iter()
            .map(|(p, _)| p)
            .take(usize::try_from(full).unwrap_or(usize::MAX))
            .collect();
        if (parts.len() as u64) < full {
            return Err(StoreError::SizeMismatch {
                expected: offset,
                actual: parts.len() as u64 * part_size,
            });
        }
        let buffer = self.read_tail(upload, start, offset - start).await?;
        Ok(Box::new(S3Writer {
            rt: Handle::current(),
            store: self.clone(),
            upload: upload.to_owned(),
            key,
            upload_id,
            part_size,
            parts,
            start,
            buffer,
        }))
    }

    async fn committed(&self, upload: &str, offset: u64) -> Result<(), StoreError> {
        // The tail the committed offset needs is the newest one starting at or before it.
        let tails = self.tails(upload).await?;
        if let Some(needed) = tails.iter().map(|(s, _)| *s).filter(|s| *s <= offset).max() {
            self.delete_tails(upload, Some(needed)).await?;
        }
        Ok(())
    }

    async fn discard_staged(&self, upload: &str) -> Result<(), StoreError> {
        check_upload_id(upload)?;
        let key = object_key(upload);
        if let Some(id) = self.multipart_id(&key).await? {
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(id)
                .send()
                .await
                .map_err(s3_err)?;
        }
        self.delete_tails(upload, None).await
    }

    async fn publish(&self, upload: &str, _blob: &BlobId, size: u64) -> Result<String, StoreError> {
        check_upload_id(upload)?;
        let key = object_key(upload);
        let Some(upload_id) = self.multipart_id(&key).await? else {
            // Completed by an earlier attempt that crashed before it was recorded.
            let head = self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await;
            let len = head
                .ok()
                .and_then(|h| h.content_length())
                .and_then(|l| u64::try_from(l).ok());
            return match len {
                Some(len) if len == size => Ok(key),
                _ if size == 0 => {
                    self.put_empty(&key).await?;
                    Ok(key)
                }
                _ => Err(StoreError::NotFound),
            };
        };
        if size == 0 {
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(&upload_id)
                .send()
                .await
                .map_err(s3_err)?;
            self.put_empty(&key).await?;
            self.delete_tails(upload, None).await?;
            return Ok(key);
        }
        let uploaded = self.parts(&key, &upload_id).await?;
        // No part uploaded yet: all bytes are in the temporary object from 0.
        let part_size = uploaded.first().map_or(u64::MAX, |(_, s)| *s).max(1);
        let full = size / part_size;
        let rest = size - full * part_size;
        let mut parts: Vec<CompletedPart> = uploaded
            .into_iter()
            .map(|(p, _)| p)
            .take(usize::try_from(full).unwrap_or(usize::MAX))
            .collect();
        if (parts.len() as u64) < full {
            return Err(StoreError::SizeMismatch {
                expected: size,
                actual: parts.len() as u64 * part_size,
            });
        }
        if rest > 0 {
            let number = i32::try_from(full + 1).map_err(s3_err)?;
            let copied = self
                .client
                .upload_part_copy()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(&upload_id)
                .part_number(number)
                .copy_source(format!(
                    "{}/{}",
                    self.bucket,
                    tail_key(upload, full * part_size)
                ))
                .copy_source_range(format!("bytes=0-{}", rest - 1))
                .send()
                .await
                .map_err(s3_err)?;
            let etag = copied
                .copy_part_result()
                .and_then(|r| r.e_tag())
                .map(str::to_owned);
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(etag)
                    .build(),
            );
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(s3_err)?;
        self.delete_tails(upload, None).await?;
        Ok(key)
    }

    async fn read(&self, key: &str, range: Range<u64>) -> Result<ByteStream, StoreError> {
        if range.is_empty() {
            return Ok(futures_util::stream::empty().boxed());
        }
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(s) if s.is_no_such_key() => StoreError::NotFound,
                _ => s3_err(e),
            })?;
        Ok(ReaderStream::with_capacity(object.body.into_async_read(), 64 * 1024).boxed())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(s3_err)?;
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(s3_err)?;
        Ok(())
    }
}

/// Appends to one upload: full parts go up as multipart parts, the rest stays in memory (at most
/// one part) until a checkpoint makes it a temporary object.
struct S3Writer {
    rt: Handle,
    store: S3Store,
    upload: String,
    key: String,
    upload_id: String,
    part_size: u64,
    parts: Vec<CompletedPart>,
    start: u64,
    buffer: Vec<u8>,
}

impl StagedWriter for S3Writer {
    fn write_all(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        self.buffer.extend_from_slice(buf);
        let part_size = usize::try_from(self.part_size).unwrap_or(usize::MAX);
        while self.buffer.len() >= part_size {
            let rest = self.buffer.split_off(part_size);
            let part = std::mem::replace(&mut self.buffer, rest);
            let number = i32::try_from(self.parts.len() + 1).map_err(s3_err)?;
            let store = &self.store;
            let uploaded = self.rt.block_on(
                store
                    .client
                    .upload_part()
                    .bucket(&store.bucket)
                    .key(&self.key)
                    .upload_id(&self.upload_id)
                    .part_number(number)
                    .body(S3Body::from(part))
                    .send(),
            );
            let etag = uploaded.map_err(s3_err)?.e_tag().map(str::to_owned);
            self.parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(etag)
                    .build(),
            );
            self.start += self.part_size;
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<SyncJob, StoreError> {
        let (rt, store) = (self.rt.clone(), self.store.clone());
        let key = tail_key(&self.upload, self.start);
        let snapshot = self.buffer.clone();
        Ok(Box::new(move || {
            rt.block_on(
                store
                    .client
                    .put_object()
                    .bucket(&store.bucket)
                    .key(key)
                    .body(S3Body::from(snapshot))
                    .send(),
            )
            .map_err(s3_err)?;
            Ok(())
        }))
    }
}
