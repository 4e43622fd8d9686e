//! Blobs in an S3-compatible bucket (AWS S3, MinIO, Garage, R2).
//!
//! An upload is one multipart upload of the object `objects/<upload id>`, whose key becomes the
//! blob's storage key. Every part has the same size, `max(5 MiB, length / 10 000)` rounded up to
//! a MiB (so no upload needs more than 10 000 parts), fixed by the first part. Bytes that do not
//! fill a part yet are made durable as a temporary object `staging/<upload id>/<start>-<writer>`
//! holding the part's bytes from `start`; any node can continue any upload from the committed
//! offset by reading that object back (at most one part). Completion copies the last partial
//! part from its temporary object server-side (a part under 64 KiB is sent again) and completes
//! the multipart upload: the blob's bytes never come back through the server.
//!
//! Fencing: the [`Manifest`] committed with each offset names the multipart upload, every part
//! with its ETag, and the temporary object. A writer that lost the upload's lease can still
//! finish a request to S3 it had started, but its temporary objects carry its own writer id, so
//! they never replace the committed one, and a part it overwrites no longer has the committed
//! ETag, so completion fails with [`StoreError::Conflict`] instead of publishing mixed bytes.

use std::ops::Range;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures_util::StreamExt;
use tokio::runtime::Handle;
use tokio_util::io::ReaderStream;

use crate::{
    BlobId, BlobStore, ByteStream, Manifest, StagedWriter, StoreError, SyncJob, check_upload_id,
};

const MIB: u64 = 1 << 20;
const MIN_PART: u64 = 5 * MIB;
const MAX_PARTS: u64 = 10_000;
/// The largest part S3 copies server-side.
const MAX_COPY: u64 = 5 << 30;
/// Last parts at least this long are copied from their temporary object server-side; shorter
/// ones are sent again.
const COPY_MIN: u64 = 64 * 1024;

/// Manifest entry: the multipart upload's id.
const MULTIPART: &str = "multipart";
/// Manifest entry: the key of the temporary object holding the committed part in progress.
const TAIL: &str = "tail";
/// Manifest entries `part/<number>`: `<size> <etag>` of an uploaded part.
const PART: &str = "part/";

/// An S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

fn s3_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(std::io::Error::other(format!("S3: {e}")))
}

/// A failed S3 request: the service's code and message, or what went wrong on the way.
fn sdk_err<E: ProvideErrorMetadata + std::error::Error, R>(e: SdkError<E, R>) -> StoreError {
    match e.as_service_error() {
        Some(service) => s3_err(format!(
            "{} ({})",
            service.code().unwrap_or("unknown error"),
            service.message().unwrap_or("no message")
        )),
        None => s3_err(e),
    }
}

/// The S3 error code of a failed request (`NoSuchUpload`, `InvalidPart`, …).
fn error_code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.as_service_error().and_then(ProvideErrorMetadata::code)
}

fn object_key(upload: &str) -> String {
    format!("objects/{upload}")
}

fn tail_prefix(upload: &str) -> String {
    format!("staging/{upload}/")
}

fn tail_key(upload: &str, start: u64, writer: &str) -> String {
    format!("staging/{upload}/{start:020}-{writer}")
}

/// The part offset a temporary object's key names.
fn tail_start(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    name.split('-').next()?.parse().ok()
}

/// The part size for an upload of at most `max_len` bytes.
fn part_size_for(max_len: u64) -> u64 {
    max_len.div_ceil(MAX_PARTS).max(MIN_PART).div_ceil(MIB) * MIB
}

/// An uploaded part as the manifest records it.
#[derive(Debug, Clone)]
struct Part {
    number: i32,
    size: u64,
    etag: String,
}

impl Part {
    fn entry(&self) -> (String, String) {
        (
            format!("{PART}{:05}", self.number),
            format!("{} {}", self.size, self.etag),
        )
    }

    fn completed(&self) -> CompletedPart {
        CompletedPart::builder()
            .part_number(self.number)
            .e_tag(&self.etag)
            .build()
    }
}

fn corrupt(what: &str) -> StoreError {
    s3_err(format!("inconsistent upload manifest: {what}"))
}

/// The parts a manifest records, in order.
fn manifest_parts(manifest: &Manifest) -> Result<Vec<Part>, StoreError> {
    manifest
        .range(PART.to_owned()..)
        .take_while(|(k, _)| k.starts_with(PART))
        .map(|(k, v)| {
            let number = k[PART.len()..].parse().map_err(|_| corrupt(k))?;
            let (size, etag) = v.split_once(' ').ok_or_else(|| corrupt(k))?;
            Ok(Part {
                number,
                size: size.parse().map_err(|_| corrupt(k))?,
                etag: etag.to_owned(),
            })
        })
        .collect()
}

/// The first `full` parts of a manifest, which must be parts 1..=full of one size.
fn full_parts(parts: &[Part], full: u64) -> Result<&[Part], StoreError> {
    let n = usize::try_from(full).map_err(s3_err)?;
    let taken = parts.get(..n).ok_or(StoreError::SizeMismatch {
        expected: full,
        actual: parts.len() as u64,
    })?;
    let contiguous = taken
        .iter()
        .enumerate()
        .all(|(i, p)| usize::try_from(p.number).is_ok_and(|n| n == i + 1));
    if contiguous {
        Ok(taken)
    } else {
        Err(corrupt("missing part"))
    }
}

/// The committed temporary object for a part starting at `start`.
fn manifest_tail(manifest: &Manifest, start: u64) -> Result<&str, StoreError> {
    manifest
        .get(TAIL)
        .map(String::as_str)
        .filter(|k| tail_start(k) == Some(start))
        .ok_or_else(|| corrupt("no temporary object for the part in progress"))
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

    /// Ids of every multipart upload in progress for `key` (normally one; two writers that
    /// raced at offset 0 may have made two).
    async fn multipart_ids(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(key)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(listed
            .uploads()
            .iter()
            .filter(|u| u.key() == Some(key))
            .filter_map(|u| u.upload_id().map(str::to_owned))
            .collect())
    }

    /// Starts a multipart upload of the object `key`; returns its id.
    async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
        Ok(self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .send()
            .await
            .map_err(sdk_err)?
            .upload_id()
            .ok_or_else(|| s3_err("no upload id"))?
            .to_owned())
    }

    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Err(e) if error_code(&e) != Some("NoSuchUpload") => Err(sdk_err(e)),
            _ => Ok(()),
        }
    }

    /// The temporary objects of an upload, with the part offset each starts at.
    async fn tails(&self, upload: &str) -> Result<Vec<(u64, String)>, StoreError> {
        let mut tails = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(tail_prefix(upload))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(sdk_err)?;
            tails.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .filter_map(|k| Some((tail_start(k)?, k.to_owned()))),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(tails),
            }
        }
    }

    /// Deletes the upload's temporary objects for parts before `before` (all of them if `None`).
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
            .map_err(sdk_err)?;
        Ok(())
    }

    /// The first `len` bytes of a temporary object.
    async fn read_tail(&self, key: &str, len: u64) -> Result<Vec<u8>, StoreError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes=0-{}", len - 1))
            .send()
            .await
            .map_err(|e| match error_code(&e) {
                Some("NoSuchKey") => StoreError::NotFound,
                _ => sdk_err(e),
            })?;
        let bytes = object.body.collect().await.map_err(s3_err)?.into_bytes();
        if (bytes.len() as u64) < len {
            return Err(StoreError::SizeMismatch {
                expected: len,
                actual: bytes.len() as u64,
            });
        }
        Ok(bytes.to_vec())
    }

    /// The size of an object, if it exists.
    async fn object_size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(head.content_length().and_then(|l| u64::try_from(l).ok())),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(sdk_err(e)),
        }
    }

    /// Makes the first `len` bytes of the object `tail` part `number` of a multipart upload,
    /// and returns its ETag; [`StoreError::NotFound`] if the multipart upload is gone. A
    /// server-side copy, except for objects under [`COPY_MIN`]: stores may refuse to copy
    /// objects that small (Garage keeps them inline), and sending them again costs less than a
    /// copy request.
    async fn copy_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        tail: &str,
        len: u64,
    ) -> Result<Option<String>, StoreError> {
        let gone = |code: Option<&str>| code == Some("NoSuchUpload");
        if len < COPY_MIN {
            let bytes = self.read_tail(tail, len).await?;
            return match self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(S3Body::from(bytes))
                .send()
                .await
            {
                Ok(uploaded) => Ok(uploaded.e_tag().map(str::to_owned)),
                Err(e) if gone(error_code(&e)) => Err(StoreError::NotFound),
                Err(e) => Err(sdk_err(e)),
            };
        }
        match self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .copy_source(format!("{}/{tail}", self.bucket))
            .copy_source_range(format!("bytes=0-{}", len - 1))
            .send()
            .await
        {
            Ok(copied) => Ok(copied
                .copy_part_result()
                .and_then(|r| r.e_tag())
                .map(str::to_owned)),
            Err(e) if gone(error_code(&e)) => Err(StoreError::NotFound),
            Err(e) => Err(sdk_err(e)),
        }
    }

    /// Completes an earlier publish that finished in S3 but not in the caller's records: the
    /// multipart upload is gone and the object has the expected size.
    async fn already_published(&self, key: &str, size: u64) -> Result<String, StoreError> {
        match self.object_size(key).await? {
            Some(len) if len == size => Ok(key.to_owned()),
            _ => Err(StoreError::NotFound),
        }
    }
}

#[cfg(feature = "test-support")]
impl S3Store {
    /// Creates the bucket; one that exists already is fine.
    pub(crate) async fn create_bucket(&self) -> Result<(), StoreError> {
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Err(e)
                if !matches!(
                    error_code(&e),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) =>
            {
                Err(sdk_err(e))
            }
            _ => Ok(()),
        }
    }

    /// Everything in the bucket: objects under `objects/` as blobs; temporary objects and
    /// multipart uploads in progress as staged.
    pub(crate) async fn contents(&self) -> Result<crate::testing::Contents, StoreError> {
        let mut contents = crate::testing::Contents::default();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(sdk_err)?;
            for key in page.contents().iter().filter_map(|o| o.key()) {
                if key.starts_with("staging/") {
                    contents.staged.push(key.to_owned());
                } else {
                    contents.blobs.push(key.to_owned());
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        let uploads = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(sdk_err)?;
        contents.staged.extend(
            uploads
                .uploads()
                .iter()
                .filter_map(|u| u.key())
                .map(|k| format!("multipart:{k}")),
        );
        Ok(contents)
    }

    /// An object's bytes, whole (test support: tests read small objects).
    pub(crate) async fn object(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(object.body.collect().await.map_err(s3_err)?.to_vec())
    }
}

#[async_trait::async_trait]
impl BlobStore for S3Store {
    async fn open_staged(
        &self,
        upload: &str,
        offset: u64,
        max_len: u64,
        manifest: &Manifest,
    ) -> Result<Box<dyn StagedWriter>, StoreError> {
        check_upload_id(upload)?;
        let key = object_key(upload);
        let upload_id = match manifest.get(MULTIPART) {
            Some(id) => id.clone(),
            None if offset == 0 => self.create_multipart(&key).await?,
            None => return Err(StoreError::NotFound),
        };
        let recorded = manifest_parts(manifest)?;
        let part_size = recorded.first().map_or_else(
            || part_size_for(max_len).max(offset.div_ceil(MIB) * MIB),
            |p| p.size,
        );
        let full = offset / part_size;
        let parts = full_parts(&recorded, full)?.to_vec();
        let start = full * part_size;
        let buffer = if offset > start {
            self.read_tail(manifest_tail(manifest, start)?, offset - start)
                .await?
        } else {
            Vec::new()
        };
        Ok(Box::new(S3Writer {
            rt: Handle::current(),
            store: self.clone(),
            upload: upload.to_owned(),
            writer: uuid::Uuid::new_v4().simple().to_string(),
            key,
            upload_id,
            part_size,
            next_part: i32::try_from(parts.len() + 1).map_err(s3_err)?,
            new_parts: Vec::new(),
            start,
            buffer,
        }))
    }

    async fn committed(&self, upload: &str, committed: &Manifest) -> Result<(), StoreError> {
        // Temporary objects for earlier parts are no longer needed by anyone: the committed
        // offset is past them, and a fenced-off writer cannot commit.
        match committed.get(TAIL).and_then(|k| tail_start(k)) {
            Some(start) if start > 0 => self.delete_tails(upload, Some(start)).await,
            _ => Ok(()),
        }
    }

    async fn discard_staged(&self, upload: &str) -> Result<(), StoreError> {
        check_upload_id(upload)?;
        let key = object_key(upload);
        for id in self.multipart_ids(&key).await? {
            self.abort(&key, &id).await?;
        }
        self.delete_tails(upload, None).await
    }

    async fn publish(
        &self,
        upload: &str,
        _blob: &BlobId,
        size: u64,
        manifest: &Manifest,
    ) -> Result<String, StoreError> {
        check_upload_id(upload)?;
        let key = object_key(upload);
        // Published already by an earlier attempt that crashed before it was recorded.
        if self.object_size(&key).await? == Some(size) {
            self.delete_tails(upload, None).await?;
            return Ok(key);
        }
        let Some(upload_id) = manifest.get(MULTIPART) else {
            // No byte was ever staged.
            if size > 0 {
                return Err(StoreError::NotFound);
            }
            self.put_empty(&key).await?;
            return Ok(key);
        };
        if size == 0 {
            self.abort(&key, upload_id).await?;
            self.put_empty(&key).await?;
            self.delete_tails(upload, None).await?;
            return Ok(key);
        }
        let recorded = manifest_parts(manifest)?;
        // No part uploaded yet: all bytes are in the temporary object from 0.
        let part_size = recorded.first().map_or(u64::MAX, |p| p.size).max(1);
        let full = size / part_size;
        let rest = size - full * part_size;
        let mut parts: Vec<CompletedPart> = full_parts(&recorded, full)?
            .iter()
            .map(Part::completed)
            .collect();
        if rest > 0 {
            let number = i32::try_from(full + 1).map_err(s3_err)?;
            let tail = manifest_tail(manifest, full * part_size)?;
            let etag = match self.copy_part(&key, upload_id, number, tail, rest).await {
                Ok(etag) => etag,
                Err(StoreError::NotFound) => return self.already_published(&key, size).await,
                Err(e) => return Err(e),
            };
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(etag)
                    .build(),
            );
        }
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match completed {
            Ok(_) => {}
            Err(e) if error_code(&e) == Some("NoSuchUpload") => {
                return self.already_published(&key, size).await;
            }
            // A part no longer has the ETag its writer committed: a fenced-off writer
            // replaced it.
            Err(e) if error_code(&e) == Some("InvalidPart") => return Err(StoreError::Conflict),
            Err(e) => return Err(sdk_err(e)),
        }
        self.delete_tails(upload, None).await?;
        Ok(key)
    }

    async fn compose(
        &self,
        upload: &str,
        sources: &[(String, u64)],
    ) -> Result<Option<String>, StoreError> {
        check_upload_id(upload)?;
        let sources: Vec<&(String, u64)> = sources.iter().filter(|(_, len)| *len > 0).collect();
        let Some((last, init)) = sources.split_last() else {
            return Ok(None);
        };
        // Every part of a multipart upload but the last is 5 MiB to 5 GiB.
        let fits = u64::try_from(sources.len()).is_ok_and(|n| n <= MAX_PARTS)
            && init
                .iter()
                .all(|(_, len)| (MIN_PART..=MAX_COPY).contains(len))
            && last.1 <= MAX_COPY;
        if !fits {
            return Ok(None);
        }
        let key = object_key(upload);
        let upload_id = self.create_multipart(&key).await?;
        let composed = async {
            let mut parts = Vec::with_capacity(sources.len());
            for (number, (source, len)) in (1..).zip(&sources) {
                let etag = self
                    .copy_part(&key, &upload_id, number, source, *len)
                    .await?;
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
                .map_err(sdk_err)
        }
        .await;
        match composed {
            Ok(_) => Ok(Some(key)),
            Err(e) => {
                if let Err(abort) = self.abort(&key, &upload_id).await {
                    tracing::warn!(key, error = %abort, "cannot abort a failed composition");
                }
                Err(e)
            }
        }
    }

    async fn presign(&self, key: &str, ttl: Duration) -> Result<Option<String>, StoreError> {
        let config = PresigningConfig::expires_in(ttl).map_err(s3_err)?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            // What sealpost itself would send: opaque bytes, cacheable while the URL lives.
            .response_content_type("application/octet-stream")
            .response_cache_control(format!("public, max-age={}, immutable", ttl.as_secs()))
            .presigned(config)
            .await
            .map_err(sdk_err)?;
        Ok(Some(request.uri().to_owned()))
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
            .map_err(|e| match error_code(&e) {
                Some("NoSuchKey") => StoreError::NotFound,
                _ => sdk_err(e),
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
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }
}

/// Appends to one upload: full parts go up as multipart parts, the rest stays in memory (at most
/// one part) until a checkpoint makes it a temporary object of this writer's own.
///
/// Requests carry their body unsigned (`UNSIGNED-PAYLOAD`): the SDK's CRC32 checksum, which S3
/// verifies, protects the bytes, and the upload is already hashed once with SHA-256; a signed
/// payload would hash every byte a second time.
struct S3Writer {
    rt: Handle,
    store: S3Store,
    upload: String,
    /// Names this writer's temporary objects, so that no other writer can replace them.
    writer: String,
    key: String,
    upload_id: String,
    part_size: u64,
    next_part: i32,
    /// Parts uploaded since the last checkpoint.
    new_parts: Vec<Part>,
    /// Upload offset of `buffer`'s first byte.
    start: u64,
    buffer: Vec<u8>,
}

impl StagedWriter for S3Writer {
    fn write_all(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        let part_size = usize::try_from(self.part_size).unwrap_or(usize::MAX);
        let mut buf = buf;
        while !buf.is_empty() {
            let take = (part_size - self.buffer.len()).min(buf.len());
            self.buffer.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.buffer.len() < part_size {
                break;
            }
            let part = std::mem::take(&mut self.buffer);
            let store = &self.store;
            let uploaded = self.rt.block_on(
                store
                    .client
                    .upload_part()
                    .bucket(&store.bucket)
                    .key(&self.key)
                    .upload_id(&self.upload_id)
                    .part_number(self.next_part)
                    .body(S3Body::from(part))
                    .customize()
                    .disable_payload_signing()
                    .send(),
            );
            let etag = uploaded
                .map_err(sdk_err)?
                .e_tag()
                .ok_or_else(|| s3_err("UploadPart returned no ETag"))?
                .to_owned();
            self.new_parts.push(Part {
                number: self.next_part,
                size: self.part_size,
                etag,
            });
            self.next_part += 1;
            self.start += self.part_size;
        }
        Ok(())
    }

    /// Right after a part went up, little is left for the temporary object.
    fn wants_checkpoint(&self) -> bool {
        !self.new_parts.is_empty()
    }

    fn checkpoint(&mut self) -> Result<SyncJob, StoreError> {
        let (rt, store) = (self.rt.clone(), self.store.clone());
        let tail = tail_key(&self.upload, self.start, &self.writer);
        let mut manifest = Manifest::new();
        manifest.insert(MULTIPART.to_owned(), self.upload_id.clone());
        manifest.extend(self.new_parts.drain(..).map(|p| p.entry()));
        manifest.insert(TAIL.to_owned(), tail.clone());
        let snapshot = (!self.buffer.is_empty()).then(|| self.buffer.clone());
        Ok(Box::new(move || {
            if let Some(bytes) = snapshot {
                rt.block_on(
                    store
                        .client
                        .put_object()
                        .bucket(&store.bucket)
                        .key(tail)
                        .body(S3Body::from(bytes))
                        .customize()
                        .disable_payload_signing()
                        .send(),
                )
                .map_err(sdk_err)?;
            }
            Ok(manifest)
        }))
    }
}
