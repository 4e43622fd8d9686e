//! Downloading and opening sealed media: the ciphertext is hashed (it must be the blob its id
//! names) and opened as it streams in, in a blocking thread, into a `.partial` file that
//! becomes the output only when every check passed.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use sealpost_crypto::{DecryptingWriter, Decryptor, MediaKey, ciphertext_len};
use sealpost_proto::MediaRef;
use sha2::{Digest, Sha256};

use crate::{Client, ClientError, check};

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
        let mut partial = out.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let result = self.download_into(media, &partial).await;
        match result {
            Ok(()) => Ok(tokio::fs::rename(&partial, out).await?),
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                Err(e)
            }
        }
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
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let (target, reference) = (partial.to_path_buf(), media.clone());
        let opener = tokio::task::spawn_blocking(move || open_into(&target, &reference, &mut rx));
        let mut body = res.bytes_stream();
        let mut failed = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                // A closed channel means the opener stopped on an error, reported below.
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
        let opened = opener.await.map_err(std::io::Error::other)?;
        if let Some(e) = failed {
            return Err(e);
        }
        let (sealed, plain) = opened?;
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
