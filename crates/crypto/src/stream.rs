//! Incremental sealing and opening with constant memory (one segment buffered), as push APIs
//! and as `std::io` adapters.

use std::io::{self, Read, Write};

use crate::CryptoError;
use crate::key::{Header, MediaKey};
use crate::layout::{FIRST_PLAINTEXT, HEADER_LEN, PLAINTEXT_SEGMENT, SEGMENT_SIZE, plaintext_len};
use crate::segment::SegmentCipher;

fn plaintext_capacity(index: u64) -> usize {
    let n = if index == 0 {
        FIRST_PLAINTEXT
    } else {
        PLAINTEXT_SEGMENT
    };
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn ciphertext_capacity(index: u64) -> usize {
    let n = if index == 0 {
        SEGMENT_SIZE - HEADER_LEN
    } else {
        SEGMENT_SIZE
    };
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Seals a plaintext pushed in pieces. A full segment is sealed only once more plaintext
/// arrives, so that the last segment is always marked as such (as Tink does).
pub struct Encryptor {
    cipher: SegmentCipher,
    index: u64,
    buf: Vec<u8>,
    header: Option<Header>,
}

impl Encryptor {
    /// Starts sealing under `key` with `header` (fresh for every file: [`Header::generate`];
    /// the same values again reproduce the same ciphertext).
    pub fn new(key: &MediaKey, header: Header) -> Self {
        Self {
            cipher: SegmentCipher::new(key, &header),
            index: 0,
            buf: Vec::with_capacity(plaintext_capacity(0) + 16),
            header: Some(header),
        }
    }

    /// Resumes sealing at segment `resume.segment` (see [`crate::resume_at`]): feed it the
    /// plaintext from `resume.plaintext_offset` on; it yields the ciphertext from that segment's
    /// start (from the header if `resume.with_header`).
    pub fn resume(key: &MediaKey, header: Header, resume: &crate::Resume) -> Self {
        let mut encryptor = Self::new(key, header);
        if !resume.with_header {
            encryptor.header = None;
            encryptor.index = resume.segment;
            encryptor.buf = Vec::with_capacity(plaintext_capacity(resume.segment) + 16);
        }
        encryptor
    }

    /// Takes `input`, appending whatever ciphertext is complete (the header first) to `out`.
    pub fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        if let Some(header) = self.header.take() {
            out.extend_from_slice(&header.to_bytes());
        }
        while !input.is_empty() {
            let capacity = plaintext_capacity(self.index);
            if self.buf.len() == capacity {
                self.seal_segment(false, out);
                continue;
            }
            // A whole segment with more plaintext after it: seal it straight from the input.
            if self.buf.is_empty() && input.len() > capacity {
                let (segment, rest) = input.split_at(capacity);
                self.cipher.seal_into(self.index, false, segment, out);
                self.index += 1;
                input = rest;
                continue;
            }
            let take = (capacity - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            input = &input[take..];
        }
    }

    /// Seals what is left as the last segment.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.update(&[], out);
        self.seal_segment(true, out);
    }

    fn seal_segment(&mut self, last: bool, out: &mut Vec<u8>) {
        self.cipher.seal(self.index, last, &mut self.buf);
        out.extend_from_slice(&self.buf);
        self.buf.clear();
        self.index += 1;
    }
}

/// Opens a ciphertext pushed in pieces, from its start (header first) or from a segment
/// boundary ([`Decryptor::from_segment`]). Without the total length it holds back one byte past
/// each full segment to learn whether that segment is the last, and a ciphertext cut inside its
/// last segment then reads as damage to that segment; with the length
/// ([`Decryptor::expecting`]) any cut is [`CryptoError::Truncated`].
pub struct Decryptor {
    key: MediaKey,
    cipher: Option<SegmentCipher>,
    index: u64,
    /// Ciphertext bytes from the start of segment `index` (or of the header).
    buf: Vec<u8>,
    /// Ciphertext bytes left from the start of `buf`, when known.
    remaining: Option<u64>,
    /// Only some segments are wanted (random access): ending early is fine.
    partial: bool,
}

impl Decryptor {
    /// Opens a whole ciphertext under `key`.
    pub fn new(key: &MediaKey) -> Self {
        Self {
            key: key.clone(),
            cipher: None,
            index: 0,
            buf: Vec::new(),
            remaining: None,
            partial: false,
        }
    }

    /// Opens a whole ciphertext of `len` bytes (known, e.g. from the plaintext size a
    /// `MediaRef` carries: [`crate::ciphertext_len`]).
    pub fn expecting(key: &MediaKey, len: u64) -> Self {
        Self {
            remaining: Some(len),
            ..Self::new(key)
        }
    }

    /// Opens ciphertext that starts at segment `first` of a ciphertext of `total_len` bytes
    /// with `header` (random access: the ciphertext range from [`crate::span`]).
    pub fn from_segment(key: &MediaKey, header: &Header, first: u64, total_len: u64) -> Self {
        Self {
            key: key.clone(),
            cipher: Some(SegmentCipher::new(key, header)),
            index: first,
            buf: Vec::new(),
            remaining: Some(total_len.saturating_sub(crate::layout::segment_start(first))),
            partial: true,
        }
    }

    /// Takes `input`, appending the plaintext of every segment it completes to `out`.
    ///
    /// # Errors
    /// Whatever damage a completed segment shows; the decryptor is unusable afterwards.
    pub fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.buf.extend_from_slice(input);
        if self.cipher.is_none() {
            if self.buf.len() < crate::layout::HEADER_BYTES {
                return Ok(());
            }
            let header = Header::parse(&self.buf)?;
            self.cipher = Some(SegmentCipher::new(&self.key, &header));
            self.buf.drain(..crate::layout::HEADER_BYTES);
            if let Some(left) = &mut self.remaining {
                *left = left.checked_sub(HEADER_LEN).ok_or(CryptoError::Truncated)?;
            }
        }
        loop {
            let full = ciphertext_capacity(self.index);
            let last = match self.remaining {
                Some(left) if left <= full as u64 => {
                    if (self.buf.len() as u64) < left {
                        return Ok(());
                    }
                    true
                }
                Some(_) => false,
                // A full segment is the last only if nothing follows it.
                None if self.buf.len() > full => false,
                None => return Ok(()),
            };
            let len = if last {
                usize::try_from(self.remaining.unwrap_or(0)).unwrap_or(full)
            } else {
                full
            };
            if self.buf.len() < len {
                return Ok(());
            }
            self.open_segment(len, last, out)?;
            if last {
                if !self.buf.is_empty() {
                    return Err(CryptoError::Reordered {
                        position: self.index,
                        found: self.index,
                    });
                }
                self.remaining = Some(0);
                return Ok(());
            }
        }
    }

    /// Ends the ciphertext: opens what is left as the last segment.
    ///
    /// # Errors
    /// [`CryptoError::Truncated`] if the ciphertext ended early; other damage as in `update`.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if self.remaining == Some(0) || (self.partial && self.buf.is_empty()) {
            return Ok(());
        }
        if self.cipher.is_none() || self.remaining.is_some() {
            return Err(CryptoError::Truncated);
        }
        let len = self.buf.len();
        self.open_segment(len, true, out)
    }

    fn open_segment(
        &mut self,
        len: usize,
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let cipher = self.cipher.as_ref().ok_or(CryptoError::Truncated)?;
        let plain = cipher.open(self.index, last, &self.buf[..len])?;
        out.extend_from_slice(&plain);
        self.buf.drain(..len);
        if let Some(left) = &mut self.remaining {
            *left -= len as u64;
        }
        self.index += 1;
        Ok(())
    }
}

/// Reads plaintext from `R` and yields the sealed ciphertext.
pub struct EncryptingReader<R> {
    inner: R,
    encryptor: Option<Encryptor>,
    out: Vec<u8>,
    pos: usize,
    chunk: Vec<u8>,
}

impl<R: Read> EncryptingReader<R> {
    /// Seals what `inner` yields under `key` with `header`.
    pub fn new(inner: R, key: &MediaKey, header: Header) -> Self {
        Self {
            inner,
            encryptor: Some(Encryptor::new(key, header)),
            out: Vec::new(),
            pos: 0,
            chunk: vec![0; 1 << 20],
        }
    }
}

impl<R: Read> Read for EncryptingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            self.out.clear();
            self.pos = 0;
            let Some(encryptor) = self.encryptor.as_mut() else {
                return Ok(0);
            };
            let n = self.inner.read(&mut self.chunk)?;
            if n == 0 {
                if let Some(encryptor) = self.encryptor.take() {
                    encryptor.finish(&mut self.out);
                }
            } else {
                encryptor.update(&self.chunk[..n], &mut self.out);
            }
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Takes ciphertext and writes the opened plaintext to `W`; call [`DecryptingWriter::finish`]
/// at the end (dropping it without does not check that the ciphertext was complete).
pub struct DecryptingWriter<W> {
    inner: W,
    decryptor: Decryptor,
    out: Vec<u8>,
}

fn invalid(e: CryptoError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<W: Write> DecryptingWriter<W> {
    /// Opens into `inner` under `key`.
    pub fn new(inner: W, decryptor: Decryptor) -> Self {
        Self {
            inner,
            decryptor,
            out: Vec::new(),
        }
    }

    /// Checks that the ciphertext is complete, writes the last plaintext, returns `W`.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidData`] wrapping the [`CryptoError`], or the writer's error.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.clear();
        self.decryptor.finish(&mut self.out).map_err(invalid)?;
        self.inner.write_all(&self.out)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for DecryptingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.clear();
        self.decryptor.update(buf, &mut self.out).map_err(invalid)?;
        self.inner.write_all(&self.out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Seals a whole plaintext in memory (tests, small files).
pub fn seal(key: &MediaKey, header: Header, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        usize::try_from(crate::layout::ciphertext_len(plaintext.len() as u64)).unwrap_or(0),
    );
    let mut encryptor = Encryptor::new(key, header);
    encryptor.update(plaintext, &mut out);
    encryptor.finish(&mut out);
    out
}

/// Opens a whole ciphertext in memory (tests, small files).
///
/// # Errors
/// Whatever damage the ciphertext shows.
pub fn open(key: &MediaKey, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(
        usize::try_from(plaintext_len(ciphertext.len() as u64).unwrap_or(0)).unwrap_or(0),
    );
    let mut decryptor = Decryptor::new(key);
    decryptor.update(ciphertext, &mut out)?;
    decryptor.finish(&mut out)?;
    Ok(out)
}

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryptor")
            .field("segment", &self.index)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("segment", &self.index)
            .finish_non_exhaustive()
    }
}

impl<R> std::fmt::Debug for EncryptingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptingReader").finish_non_exhaustive()
    }
}

impl<W> std::fmt::Debug for DecryptingWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptingWriter")
            .field("decryptor", &self.decryptor)
            .finish_non_exhaustive()
    }
}
