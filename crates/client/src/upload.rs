//! Sealed, resumable uploads: the file is hashed and sealed once to learn the ciphertext's
//! SHA-256 (declared at creation, so the server verifies it), then sealed again while it
//! streams, from whatever offset the server has; nothing is written to disk but the small state
//! file.

use std::io::{Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use sealpost_crypto::{Encryptor, Header, MediaKey, Resume, ciphertext_len, resume_at};
use sealpost_proto::{MediaRef, Thumbnail, ThumbnailBlob};
use sealpost_transcode::image::{self as preview, ImageInfo};
use sealpost_transcode::video;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::state::{self, UploadState};
use crate::{Client, ClientError, check, header, is_gone};

const CHUNK: usize = 1 << 20;

/// What the client can tell about the file at `path` from its bytes: the duration of video or
/// audio, and the preview of an image or of a video's poster frame. `None` when it is nothing
/// this client reads (or reading it failed: the file is sent as it is).
fn describe(path: &Path) -> Option<(Option<u64>, Option<preview::Preview>)> {
    let kind = sniffed(path)?;
    if kind.is_image() {
        let made = preview::preview(path, &sealpost_transcode::ImageLimits::default()).ok()?;
        return Some((None, Some(made)));
    }
    if !video::handles(kind) {
        return None;
    }
    let limits = sealpost_transcode::VideoLimits {
        max_bytes: u64::MAX,
        max_duration: Duration::from_secs(24 * 3600),
        ..sealpost_transcode::VideoLimits::default()
    };
    let info = video::probe(path, &limits).ok()?;
    let duration_ms = Some(u64::try_from(info.duration.as_millis()).unwrap_or(u64::MAX));
    if info.video.is_none() {
        return Some((duration_ms, None));
    }
    Some((
        duration_ms,
        video::preview(path, &limits).ok().map(|(_, p)| p),
    ))
}

/// How far an upload is, in ciphertext bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes the server has or is receiving.
    pub sent: u64,
    /// All of them.
    pub total: u64,
    /// Where this run started (more than 0 when it resumed).
    pub resumed_at: u64,
}

/// A file with mode 0600 under a random name, deleted when dropped.
struct PrivateFile(std::path::PathBuf);

impl PrivateFile {
    fn create(dir: &Path, bytes: &[u8]) -> std::io::Result<Self> {
        use std::io::Write;
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!(
            "thumbnail-{}.jpg",
            hex::encode(rand::random::<[u8; 16]>())
        ));
        let mut out = state::private_options().create_new(true).open(&path)?;
        let file = Self(path);
        out.write_all(bytes)?;
        Ok(file)
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The MIME type of the file's real type, from its first bytes.
fn sniffed_mime(path: &Path) -> Option<&'static str> {
    sniffed(path).map(sealpost_transcode::MediaType::mime)
}

/// What the file at `path` is, from its first bytes.
fn sniffed(path: &Path) -> Option<sealpost_transcode::MediaType> {
    sealpost_transcode::sniff::sniff_file(path).ok().flatten()
}

/// The MIME type its name suggests, for files whose bytes say nothing known.
fn guess_mime(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("heic") => "image/heic",
        Some("mp4" | "m4v") => "video/mp4",
        Some("mov") => "video/quicktime",
        Some("webm") => "video/webm",
        Some("mp3") => "audio/mpeg",
        Some("m4a") => "audio/mp4",
        Some("ogg" | "opus") => "audio/ogg",
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        _ => "application/octet-stream",
    }
}

fn decode_hex<const N: usize>(text: &str) -> Result<[u8; N], ClientError> {
    hex::decode(text)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| ClientError::Protocol("corrupt upload state file".into()))
}

/// Seals the file from `resume` on, handing each piece of plaintext read and the ciphertext it
/// completed to `sink`, which empties the ciphertext buffer and returns false to stop.
fn seal_file(
    path: &Path,
    key: &MediaKey,
    header: Header,
    resume: &Resume,
    mut sink: impl FnMut(&[u8], &mut Vec<u8>) -> bool,
) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(resume.plaintext_offset))?;
    let mut encryptor = Encryptor::resume(key, header, resume);
    let mut buf = vec![0u8; CHUNK];
    let mut out = Vec::with_capacity(2 * CHUNK);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        encryptor.update(&buf[..n], &mut out);
        if !sink(&buf[..n], &mut out) {
            return Ok(());
        }
    }
    encryptor.finish(&mut out);
    sink(&[], &mut out);
    Ok(())
}

/// Hashes the plaintext and the ciphertext it seals to, reading the file once.
fn hash_file(path: &Path, key: &MediaKey, header: Header) -> std::io::Result<(String, String)> {
    let (mut plain, mut sealed) = (Sha256::new(), Sha256::new());
    seal_file(path, key, header, &resume_at(0), |read, out| {
        plain.update(read);
        sealed.update(&out[..]);
        out.clear();
        true
    })?;
    Ok((
        hex::encode(plain.finalize()),
        hex::encode(sealed.finalize()),
    ))
}

/// Seals `path` from ciphertext offset `offset` on into `tx` (run it in a blocking thread).
fn stream_from(
    path: &Path,
    key: &MediaKey,
    header: Header,
    offset: u64,
    rate: Option<u64>,
    tx: &mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<()> {
    let resume = resume_at(offset);
    // Bytes of the first re-sealed segment that the server has already.
    let mut skip = usize::try_from(resume.skip).unwrap_or(usize::MAX);
    let started = std::time::Instant::now();
    let mut sent = 0u64;
    seal_file(path, key, header, &resume, |_, out| {
        let cut = skip.min(out.len());
        skip -= cut;
        let delivered = out.len() == cut
            || tx
                .blocking_send(Ok(Bytes::copy_from_slice(&out[cut..])))
                .is_ok();
        sent += (out.len() - cut) as u64;
        out.clear();
        if let Some(rate) = rate {
            // Stay at or under the rate: wait until `sent` bytes are due.
            let due = Duration::from_millis(sent.saturating_mul(1000) / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        delivered
    })
}

impl Client {
    /// Seals the file at `path` under a fresh media key and uploads it, resuming an earlier
    /// attempt recorded in `state_dir` if the file has not changed. `progress` is called about
    /// ten times a second; returning `ControlFlow::Break` stops the upload (resumable later:
    /// [`ClientError::Interrupted`]). Transient failures are retried with backoff.
    ///
    /// For an image or a video (found from its bytes) it also attaches, unless
    /// [`Client::with_thumbnails`] turned it off: the displayed width and height, a tiny
    /// inline JPEG and a BlurHash, and a 320 px JPEG thumbnail (of a video's poster frame)
    /// uploaded sealed under a key of its own; for video and audio, the duration. A file it
    /// cannot read is sent without them.
    ///
    /// # Errors
    /// The file cannot be read, the server refuses, or retries ran out.
    pub async fn upload_encrypted(
        &self,
        path: &Path,
        state_dir: &Path,
        mut progress: impl FnMut(Progress) -> ControlFlow<()> + Send,
    ) -> Result<MediaRef, ClientError> {
        // The small thumbnail goes first (stopping works there too); a rerun after an
        // interruption makes and uploads a new one, a few KiB, and resumes the big file.
        let preview = if self.thumbnails {
            self.upload_thumbnail(path, state_dir, &mut progress)
                .await?
        } else {
            None
        };
        let mut media = self.upload_sealed(path, state_dir, progress).await?;
        if let Some((info, duration_ms, thumbnail)) = preview {
            media.width = info.map(|i| i.width);
            media.height = info.map(|i| i.height);
            media.duration_ms = duration_ms;
            media.thumbnail = thumbnail;
        }
        Ok(media)
    }

    /// For an image or a video: makes its preview (inline JPEG, BlurHash, 320 px JPEG; of the
    /// poster frame for a video), uploads the JPEG sealed under a key of its own, and returns
    /// what the `MediaRef` carries: the displayed size, the duration of video or audio, the
    /// thumbnail. `None` when the file is nothing this client can read; no thumbnail when it
    /// could not be made or uploaded (the file is then sent without one). Only a stop the
    /// caller asked for ends the send.
    async fn upload_thumbnail(
        &self,
        path: &Path,
        state_dir: &Path,
        progress: &mut (impl FnMut(Progress) -> ControlFlow<()> + Send),
    ) -> Result<Option<(Option<ImageInfo>, Option<u64>, Option<Thumbnail>)>, ClientError> {
        let file = path.to_path_buf();
        let made = tokio::task::spawn_blocking(move || describe(&file)).await;
        let Ok(Some((duration_ms, made))) = made else {
            return Ok(None);
        };
        let Some(made) = made else {
            // Audio: a duration, nothing to look at.
            return Ok(Some((None, duration_ms, None)));
        };
        // The plaintext thumbnail lives on disk only while it is sealed and sent: readable by
        // this user alone, under a name of its own, removed however the upload ends.
        let thumb = PrivateFile::create(state_dir, &made.thumbnail.bytes)?;
        let sealed = Box::pin(self.upload_sealed(&thumb.0, state_dir, &mut *progress)).await;
        if sealed.is_err() {
            // Its name is never used again: nothing to resume.
            state::remove(state_dir, &thumb.0);
        }
        drop(thumb);
        let sealed = match sealed {
            Ok(sealed) => sealed,
            Err(ClientError::Interrupted) => return Err(ClientError::Interrupted),
            Err(_) => return Ok(Some((Some(made.info), duration_ms, None))),
        };
        let thumbnail = Thumbnail {
            inline_jpeg: Some(STANDARD.encode(&made.inline_jpeg)),
            blurhash: Some(made.blurhash),
            blob: Some(ThumbnailBlob {
                blob_id: sealed.blob_id,
                media_key: sealed.media_key,
                plaintext_sha256: sealed.plaintext_sha256,
                size: sealed.size,
                mime: made.thumbnail.format.mime().to_owned(),
                width: made.thumbnail.width,
                height: made.thumbnail.height,
            }),
        };
        Ok(Some((Some(made.info), duration_ms, Some(thumbnail))))
    }

    /// Seals and uploads one file, resumably; the `MediaRef` without thumbnail.
    async fn upload_sealed(
        &self,
        path: &Path,
        state_dir: &Path,
        mut progress: impl FnMut(Progress) -> ControlFlow<()> + Send,
    ) -> Result<MediaRef, ClientError> {
        let meta = tokio::fs::metadata(path).await?;
        let size = meta.len();
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let mut state = match state::load(state_dir, path, size, modified_ns) {
            Some(state) => state,
            None => {
                let key = MediaKey::generate();
                let header = Header::generate();
                let (file, k) = (path.to_path_buf(), key.clone());
                let (plaintext_sha256, ciphertext_sha256) =
                    tokio::task::spawn_blocking(move || hash_file(&file, &k, header))
                        .await
                        .map_err(std::io::Error::other)??;
                let state = UploadState {
                    size,
                    modified_ns,
                    media_key: hex::encode(key.as_bytes()),
                    salt: hex::encode(header.salt),
                    nonce_prefix: hex::encode(header.nonce_prefix),
                    plaintext_sha256,
                    ciphertext_sha256,
                    upload_url: None,
                };
                state::save(state_dir, path, &state)?;
                state
            }
        };
        let key = MediaKey::from_bytes(decode_hex(&state.media_key)?);
        let header = Header {
            salt: decode_hex(&state.salt)?,
            nonce_prefix: decode_hex(&state.nonce_prefix)?,
        };
        let mut attempt = 1;
        let blob_id = loop {
            let result = self
                .push(path, state_dir, &mut state, &key, header, &mut progress)
                .await;
            match result {
                Ok(blob_id) => break blob_id,
                Err(e) if e.is_transient() && attempt < self.retry.attempts => {
                    attempt += 1;
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        };
        if blob_id != state.ciphertext_sha256 {
            return Err(ClientError::Protocol(format!(
                "the server stored blob {blob_id}, not the ciphertext's SHA-256"
            )));
        }
        state::remove(state_dir, path);
        Ok(MediaRef {
            blob_id,
            media_key: *key.as_bytes(),
            plaintext_sha256: state.plaintext_sha256,
            size,
            mime: sniffed_mime(path)
                .unwrap_or_else(|| guess_mime(path))
                .to_owned(),
            filename: path.file_name().and_then(|n| n.to_str()).map(str::to_owned),
            width: None,
            height: None,
            duration_ms: None,
            thumbnail: None,
        })
    }

    /// A tus request with the token.
    fn tus(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        Ok(self
            .http
            .request(method, self.url(url))
            .bearer_auth(self.bearer()?)
            .header("Tus-Resumable", "1.0.0"))
    }

    /// Creates the upload on the server (declaring the ciphertext's length and SHA-256).
    async fn create(&self, state: &UploadState) -> Result<String, ClientError> {
        let digest = hex::decode(&state.ciphertext_sha256)
            .map_err(|_| ClientError::Protocol("corrupt upload state file".into()))?;
        let metadata = format!(
            "sha256 {},kind {}",
            STANDARD.encode(digest),
            STANDARD.encode("encrypted")
        );
        let res = self
            .tus(reqwest::Method::POST, "/v1/uploads")?
            .header("Upload-Length", ciphertext_len(state.size).to_string())
            .header("Upload-Metadata", metadata)
            .send()
            .await
            .map_err(ClientError::Network)?;
        let res = check(res).await?;
        header(&res, "location").ok_or_else(|| ClientError::Protocol("no Location".into()))
    }

    /// One attempt: makes sure the upload exists, asks for its offset, sends the rest.
    async fn push(
        &self,
        path: &Path,
        state_dir: &Path,
        state: &mut UploadState,
        key: &MediaKey,
        header_values: Header,
        progress: &mut (impl FnMut(Progress) -> ControlFlow<()> + Send),
    ) -> Result<String, ClientError> {
        let total = ciphertext_len(state.size);
        let (url, head) = loop {
            let fresh = state.upload_url.is_none();
            let url = match &state.upload_url {
                Some(url) => url.clone(),
                None => {
                    let url = self.create(state).await?;
                    state.upload_url = Some(url.clone());
                    state::save(state_dir, path, state)?;
                    url
                }
            };
            let head = self
                .tus(reqwest::Method::HEAD, &url)?
                .send()
                .await
                .map_err(ClientError::Network)?;
            match check(head).await {
                // Expired or swept: start a new upload of the same ciphertext (once: a new
                // upload that is gone at once is the server's error to report).
                Err(e) if is_gone(&e) && !fresh => {
                    state.upload_url = None;
                    state::save(state_dir, path, state)?;
                }
                head => break (url, head?),
            }
        };
        if let Some(blob) = header(&head, "sealpost-blob-id") {
            return Ok(blob);
        }
        let offset: u64 = header(&head, "upload-offset")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ClientError::Protocol("HEAD without Upload-Offset".into()))?;
        let sent = Arc::new(AtomicU64::new(offset));
        let (tx, mut rx) = mpsc::channel(4);
        let (file, k, rate) = (path.to_path_buf(), key.clone(), self.rate);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = stream_from(&file, &k, header_values, offset, rate, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let counter = sent.clone();
        let body = futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx).map(|item| {
                if let Some(Ok(chunk)) = &item {
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                item
            })
        });
        let request = self
            .tus(reqwest::Method::PATCH, &url)?
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .header("Content-Length", (total - offset).to_string())
            .body(reqwest::Body::wrap_stream(body))
            .send();
        tokio::pin!(request);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let res = loop {
            tokio::select! {
                res = &mut request => break res.map_err(ClientError::Network)?,
                _ = tick.tick() => {
                    let now = Progress { sent: sent.load(Ordering::Relaxed), total, resumed_at: offset };
                    if progress(now).is_break() {
                        return Err(ClientError::Interrupted);
                    }
                }
            }
        };
        let res = check(res).await?;
        let _ = progress(Progress {
            sent: total,
            total,
            resumed_at: offset,
        });
        header(&res, "sealpost-blob-id")
            .ok_or_else(|| ClientError::Protocol("the upload ended without a blob id".into()))
    }
}
