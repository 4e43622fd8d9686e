//! Downloading and opening sealed media: the ciphertext is hashed (it must be the blob its id
//! names) and opened as it streams in, in a blocking thread, into a `.partial` file that
//! becomes the output only when every check passed.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use sealpost_crypto::{DecryptingWriter, Decryptor, HEADER_LEN, Header, MediaKey, ciphertext_len};
use sealpost_proto::MediaRef;
use sha2::{Digest, Sha256};

use crate::{Client, ClientError, check, header};

/// Hashes and opens chunks into `partial`; returns the ciphertext's and plaintext's SHA-256.
fn open_into(
    partial: &Path,
    media: &MediaRef,
    chunks: &mut tokio::sync::mpsc::Receiver<Bytes>,
) -> Result<(String, String), ClientError> {
    /// Hashes what passes through to the file.
    struct Hashing<W> {
        inner: W,
        hash: Sha256,
    }
    impl<W: Write> Write for Hashing<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.hash.update(buf);
            self.inner.write_all(buf)?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let file = std::io::BufWriter::new(std::fs::File::create(partial)?);
    let key = MediaKey::from_bytes(media.media_key);
    let decryptor = Decryptor::expecting(&key, ciphertext_len(media.size));
    let mut writer = DecryptingWriter::new(
        Hashing {
            inner: file,
            hash: Sha256::new(),
        },
        decryptor,
    );
    let mut sealed = Sha256::new();
    let crypto = |e: std::io::Error| match e.get_ref().and_then(|e| e.downcast_ref()) {
        Some(crypto) => ClientError::Tampered(Clone::clone(crypto)),
        None => ClientError::Io(e),
    };
    while let Some(chunk) = chunks.blocking_recv() {
        sealed.update(&chunk);
        writer.write_all(&chunk).map_err(crypto)?;
    }
    let plain = writer.finish().map_err(crypto)?;
    let mut file = plain.inner;
    file.flush()?;
    file.get_ref().sync_all()?;
    Ok((
        hex::encode(sealed.finalize()),
        hex::encode(plain.hash.finalize()),
    ))
}

/// Feeds the response body through a channel to `consume`, run on a blocking thread, and
/// returns its result; a network error while receiving wins.
async fn pump<T: Send + 'static>(
    res: reqwest::Response,
    consume: impl FnOnce(&mut tokio::sync::mpsc::Receiver<Bytes>) -> Result<T, ClientError>
    + Send
    + 'static,
) -> Result<T, ClientError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let consumer = tokio::task::spawn_blocking(move || consume(&mut rx));
    let mut body = res.bytes_stream();
    let mut failed = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            // A closed channel means the consumer stopped on an error, returned below.
            Ok(chunk) => {
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failed = Some(ClientError::Network(e));
                break;
            }
        }
    }
    drop(tx);
    let consumed = consumer.await.map_err(std::io::Error::other)?;
    match failed {
        Some(e) => Err(e),
        None => consumed,
    }
}

/// Runs `work` on `out.partial`, then renames it to `out`; removes it if `work` fails.
async fn into_place<F>(out: &Path, work: impl FnOnce(PathBuf) -> F) -> Result<(), ClientError>
where
    F: std::future::Future<Output = Result<(), ClientError>>,
{
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    match work(partial.clone()).await {
        Ok(()) => Ok(tokio::fs::rename(&partial, out).await?),
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            Err(e)
        }
    }
}

impl Client {
    /// Downloads the blob `media` names, checks it is that blob, opens it with the media key,
    /// checks the plaintext's SHA-256, and only then writes it to `out` (through `out.partial`,
    /// removed on failure).
    ///
    /// # Errors
    /// [`ClientError::HashMismatch`] for the wrong bytes, [`ClientError::Tampered`] when they do
    /// not open, [`ClientError::PlaintextMismatch`] for the wrong plaintext, or the server's or
    /// network's errors.
    pub async fn download_decrypted(
        &self,
        media: &MediaRef,
        out: &Path,
    ) -> Result<(), ClientError> {
        into_place(out, |partial| async move {
            self.download_into(media, &partial).await
        })
        .await
    }

    async fn download_into(&self, media: &MediaRef, partial: &Path) -> Result<(), ClientError> {
        let res = self
            .http
            .get(self.url(&format!("/v1/blobs/{}", media.blob_id)))
            .bearer_auth(self.bearer()?)
            .send()
            .await
            .map_err(ClientError::Network)?;
        let res = check(res).await?;
        let (target, reference) = (partial.to_path_buf(), media.clone());
        let (sealed, plain) = pump(res, move |rx| open_into(&target, &reference, rx)).await?;
        if sealed != media.blob_id {
            return Err(ClientError::HashMismatch {
                expected: media.blob_id.clone(),
                actual: sealed,
            });
        }
        if plain != media.plaintext_sha256 {
            return Err(ClientError::PlaintextMismatch);
        }
        Ok(())
    }
}

/// Opens the segments arriving on `chunks` and writes plaintext bytes `skip..skip + take` of
/// them to `partial`.
fn open_range_into(
    partial: &Path,
    mut decryptor: Decryptor,
    skip: u64,
    take: u64,
    chunks: &mut tokio::sync::mpsc::Receiver<Bytes>,
) -> Result<(), ClientError> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(partial)?);
    let (mut skip, mut take) = (skip, take);
    let mut plain = Vec::new();
    let mut write = |plain: &mut Vec<u8>| -> std::io::Result<()> {
        let cut = usize::try_from(skip.min(plain.len() as u64)).unwrap_or(0);
        skip -= cut as u64;
        let keep = usize::try_from(take.min((plain.len() - cut) as u64)).unwrap_or(0);
        take -= keep as u64;
        file.write_all(&plain[cut..cut + keep])?;
        plain.clear();
        Ok(())
    };
    while let Some(chunk) = chunks.blocking_recv() {
        decryptor.update(&chunk, &mut plain)?;
        write(&mut plain)?;
    }
    decryptor.finish(&mut plain)?;
    write(&mut plain)?;
    file.flush()?;
    file.get_ref().sync_all()?;
    Ok(())
}

impl Client {
    /// Downloads just the segments that hold plaintext bytes `range` of `media` (HTTP Range),
    /// opens them and writes those bytes to `out` (through `out.partial`). Each segment is
    /// authenticated on its own, so a range needs neither the whole blob nor the file hashes;
    /// this is how a player seeks in a sealed video.
    ///
    /// # Errors
    /// [`ClientError::BadRange`] for a range outside the file, [`ClientError::Tampered`] when
    /// the segments do not open, or the server's or network's errors.
    pub async fn download_decrypted_range(
        &self,
        media: &MediaRef,
        range: std::ops::Range<u64>,
        out: &Path,
    ) -> Result<(), ClientError> {
        let span = sealpost_crypto::span(range.clone(), media.size)
            .map_err(|_| ClientError::BadRange(range, media.size))?;
        into_place(out, |partial| async move {
            let header_bytes = self.fetch_range(media, 0..HEADER_LEN).await?.bytes().await;
            let header = Header::parse(&header_bytes.map_err(ClientError::Network)?)?;
            let key = MediaKey::from_bytes(media.media_key);
            let decryptor = Decryptor::from_segment(
                &key,
                &header,
                span.first_segment,
                ciphertext_len(media.size),
            );
            let res = self.fetch_range(media, span.ciphertext.clone()).await?;
            let (skip, take) = (span.skip, span.take);
            pump(res, move |rx| {
                open_range_into(&partial, decryptor, skip, take, rx)
            })
            .await
        })
        .await
    }

    /// GETs ciphertext bytes `range` of the blob; insists on a 206 for exactly them.
    async fn fetch_range(
        &self,
        media: &MediaRef,
        range: std::ops::Range<u64>,
    ) -> Result<reqwest::Response, ClientError> {
        let res = self
            .http
            .get(self.url(&format!("/v1/blobs/{}", media.blob_id)))
            .bearer_auth(self.bearer()?)
            .header("Range", format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(ClientError::Network)?;
        let res = check(res).await?;
        let expected = format!(
            "bytes {}-{}/{}",
            range.start,
            range.end - 1,
            ciphertext_len(media.size)
        );
        if res.status() != reqwest::StatusCode::PARTIAL_CONTENT
            || header(&res, "content-range").as_deref() != Some(expected.as_str())
        {
            return Err(ClientError::Protocol(format!(
                "asked for {expected}, got {} {:?}",
                res.status(),
                header(&res, "content-range")
            )));
        }
        Ok(res)
    }
}
