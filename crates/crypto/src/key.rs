//! The media key and the per-file header.

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::layout::{HEADER_BYTES, NONCE_PREFIX_LEN, SALT_LEN};
use crate::{ASSOCIATED_DATA, CryptoError};

/// The header's first byte: its own length.
const HEADER_LENGTH_BYTE: u8 = 40;

/// A file's 32-byte media key (Tink's key value). Zeroed when dropped; never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct MediaKey([u8; 32]);

impl MediaKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// The key with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The AES-256 key for one file: HKDF-SHA256 over this key with the header's salt and the
    /// associated data as info.
    pub(crate) fn derive(&self, salt: &[u8; SALT_LEN]) -> DerivedKey {
        let mut out = [0u8; 32];
        let expanded = Hkdf::<Sha256>::new(Some(salt), &self.0).expand(ASSOCIATED_DATA, &mut out);
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
        debug_assert!(expanded.is_ok());
        DerivedKey(out)
    }
}

impl fmt::Debug for MediaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MediaKey(…)")
    }
}

/// A per-file AES-256 key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct DerivedKey(pub(crate) [u8; 32]);

/// The per-file random values at the start of every ciphertext. Together with the key they
/// determine the whole ciphertext, so a resumed upload can reproduce the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// HKDF salt.
    pub salt: [u8; SALT_LEN],
    /// The first 7 bytes of every segment nonce.
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl Header {
    /// Fresh random values.
    pub fn generate() -> Self {
        Self {
            salt: rand::random(),
            nonce_prefix: rand::random(),
        }
    }

    /// The header's bytes: the length byte (40), the salt, the nonce prefix.
    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[0] = HEADER_LENGTH_BYTE;
        out[1..1 + SALT_LEN].copy_from_slice(&self.salt);
        out[1 + SALT_LEN..].copy_from_slice(&self.nonce_prefix);
        out
    }

    /// Parses a header.
    ///
    /// # Errors
    /// [`CryptoError::Truncated`] if `bytes` is short, [`CryptoError::BadHeader`] if its length
    /// byte is not 40.
    pub fn parse(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes = bytes.get(..HEADER_BYTES).ok_or(CryptoError::Truncated)?;
        if bytes[0] != HEADER_LENGTH_BYTE {
            return Err(CryptoError::BadHeader);
        }
        let mut header = Self {
            salt: [0; SALT_LEN],
            nonce_prefix: [0; NONCE_PREFIX_LEN],
        };
        header.salt.copy_from_slice(&bytes[1..1 + SALT_LEN]);
        header.nonce_prefix.copy_from_slice(&bytes[1 + SALT_LEN..]);
        Ok(header)
    }
}
