//! The sealed-media format: a file encrypted on the device under a fresh 32-byte media key, as
//! Google Tink's AES-GCM-HKDF streaming AEAD (HKDF-SHA256, 32-byte derived key, 65 536-byte
//! ciphertext segments) with the associated data [`ASSOCIATED_DATA`]. Tink opens what this
//! seals and the other way round. Pure: no I/O beyond the `std::io` adapters' own reader or
//! writer, constant memory, random access by segment. The format is specified in
//! `docs/media-encryption.md`.

mod error;
mod key;
mod layout;
mod segment;
mod stream;

pub use error::CryptoError;
pub use key::{Header, MediaKey};
pub use layout::{
    HEADER_LEN, Resume, SEGMENT_SIZE, Span, TAG_LEN, ciphertext_len, plaintext_len, resume_at,
    segment_count, span,
};
pub use stream::{DecryptingWriter, Decryptor, EncryptingReader, Encryptor, open, seal};

/// The associated data every sealed file is bound to (HKDF info).
pub const ASSOCIATED_DATA: &[u8] = b"sealpost-media-v1";
