//! One file's segment cipher: AES-256-GCM under the derived key, nonce = prefix || segment
//! number (4 bytes, big-endian) || last-segment flag (1 byte), no associated data.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};

use crate::CryptoError;
use crate::key::{Header, MediaKey};
use crate::layout::{NONCE_PREFIX_LEN, TAG_BYTES};

/// Segment numbers tried when a segment fails, to tell reordering from damage.
const REORDER_WINDOW: u64 = 64;

/// Encrypts and decrypts the segments of one file.
pub(crate) struct SegmentCipher {
    aes: Aes256Gcm,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl SegmentCipher {
    pub(crate) fn new(key: &MediaKey, header: &Header) -> Self {
        let derived = key.derive(&header.salt);
        Self {
            aes: Aes256Gcm::new(&Key::<Aes256Gcm>::from(derived.0)),
            nonce_prefix: header.nonce_prefix,
        }
    }

    fn nonce(&self, index: u64, last: bool) -> Option<Nonce<aes_gcm::aead::consts::U12>> {
        let index = u32::try_from(index).ok()?;
        let mut nonce = [0u8; 12];
        nonce[..NONCE_PREFIX_LEN].copy_from_slice(&self.nonce_prefix);
        nonce[NONCE_PREFIX_LEN..11].copy_from_slice(&index.to_be_bytes());
        nonce[11] = u8::from(last);
        Some(Nonce::from(nonce))
    }

    /// Encrypts `plaintext` in place as segment `index` and appends the tag.
    pub(crate) fn seal(&self, index: u64, last: bool, buf: &mut Vec<u8>) {
        // 2^32 segments of 64 KiB is 256 TiB: callers never get near it.
        let nonce = self.nonce(index, last).unwrap_or_default();
        let tag = self
            .aes
            .encrypt_inout_detached(&nonce, &[], buf.as_mut_slice().into())
            .unwrap_or_default();
        buf.extend_from_slice(&tag);
    }

    /// Encrypts `plaintext` as segment `index` straight into `out` (ciphertext, then tag),
    /// without an intermediate copy.
    pub(crate) fn seal_into(&self, index: u64, last: bool, plaintext: &[u8], out: &mut Vec<u8>) {
        let nonce = self.nonce(index, last).unwrap_or_default();
        let start = out.len();
        out.resize(start + plaintext.len(), 0);
        let target = &mut out[start..];
        let tag = aes_gcm::aead::inout::InOutBuf::new(plaintext, target)
            .ok()
            .and_then(|buf| self.aes.encrypt_inout_detached(&nonce, &[], buf).ok())
            .unwrap_or_default();
        out.extend_from_slice(&tag);
    }

    fn try_open(&self, index: u64, last: bool, body: &[u8], tag: &Tag) -> Option<Vec<u8>> {
        let nonce = self.nonce(index, last)?;
        let mut out = body.to_vec();
        self.aes
            .decrypt_inout_detached(&nonce, &[], out.as_mut_slice().into(), tag)
            .ok()?;
        Some(out)
    }

    /// Decrypts `segment` (ciphertext and tag) found at position `index`; `last` says whether
    /// it must be the last segment. On failure, works out what happened.
    pub(crate) fn open(
        &self,
        index: u64,
        last: bool,
        segment: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let split = segment
            .len()
            .checked_sub(TAG_BYTES)
            .ok_or(CryptoError::Truncated)?;
        let (body, tag) = segment.split_at(split);
        let tag = Tag::try_from(tag).map_err(|_| CryptoError::Truncated)?;
        if let Some(plain) = self.try_open(index, last, body, &tag) {
            return Ok(plain);
        }
        if self.try_open(index, !last, body, &tag).is_some() {
            // Marked last but more data follows: something was appended or moved; expected to
            // be last but is not: the rest was cut off.
            return Err(if last {
                CryptoError::Truncated
            } else {
                CryptoError::Reordered {
                    position: index,
                    found: index,
                }
            });
        }
        let window = index.saturating_sub(REORDER_WINDOW)..index + REORDER_WINDOW;
        for other in window.filter(|i| *i != index) {
            if [false, true]
                .iter()
                .any(|l| self.try_open(other, *l, body, &tag).is_some())
            {
                return Err(CryptoError::Reordered {
                    position: index,
                    found: other,
                });
            }
        }
        Err(if index == 0 {
            CryptoError::WrongKey
        } else {
            CryptoError::Corrupted { segment: index }
        })
    }
}
