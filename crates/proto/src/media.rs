//! `MediaRef`: what an end-to-end encrypted chat message carries for one attachment. The server
//! never sees one: it travels inside the ciphertext of a message.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

/// One sealed attachment: where its ciphertext is, the key that opens it, and what it is.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaRef {
    /// The blob holding the ciphertext: lowercase hex SHA-256 of the ciphertext.
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub blob_id: String,
    /// The 32-byte media key, standard base64 (docs/media-encryption.md).
    #[serde(with = "key_b64")]
    #[schema(value_type = String, format = Byte, example = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=")]
    pub media_key: [u8; 32],
    /// Lowercase hex SHA-256 of the plaintext, checked after decryption.
    pub plaintext_sha256: String,
    /// Plaintext bytes (the ciphertext length follows from it).
    pub size: u64,
    /// Media type of the plaintext, e.g. `image/jpeg`.
    #[schema(example = "image/jpeg")]
    pub mime: String,
    /// The sender's file name, if it shared one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Image or video width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Image or video height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Audio or video duration in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// A preview to show before (or instead of) downloading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<Thumbnail>,
}

/// A preview of an attachment: tiny inline data, and optionally a larger image sealed as a blob
/// of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Thumbnail {
    /// A tiny JPEG (about 32 px wide, a few hundred bytes), standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_jpeg: Option<String>,
    /// A BlurHash of the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blurhash: Option<String>,
    /// A larger thumbnail, sealed and uploaded like the attachment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<ThumbnailBlob>,
}

/// A sealed thumbnail image.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThumbnailBlob {
    /// Lowercase hex SHA-256 of the thumbnail's ciphertext.
    pub blob_id: String,
    /// The thumbnail's own media key, standard base64.
    #[serde(with = "key_b64")]
    #[schema(value_type = String, format = Byte)]
    pub media_key: [u8; 32],
    /// Lowercase hex SHA-256 of the thumbnail's plaintext.
    pub plaintext_sha256: String,
    /// Plaintext bytes.
    pub size: u64,
    /// Media type, e.g. `image/jpeg`.
    pub mime: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Why a `MediaRef` is not well-formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMediaRef(pub &'static str);

impl fmt::Display for InvalidMediaRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid media reference: {}", self.0)
    }
}

impl std::error::Error for InvalidMediaRef {}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl MediaRef {
    /// The largest plaintext size a reference may state (1 PiB): a sender chooses it, and the
    /// receiver computes with it.
    pub const MAX_SIZE: u64 = 1 << 50;

    /// Checks the fields JSON alone cannot: hash spellings, a media type and sizes.
    ///
    /// # Errors
    /// The first field that is wrong.
    pub fn validate(&self) -> Result<(), InvalidMediaRef> {
        if !is_sha256_hex(&self.blob_id) {
            return Err(InvalidMediaRef("blob_id must be 64 lowercase hex digits"));
        }
        if !is_sha256_hex(&self.plaintext_sha256) {
            return Err(InvalidMediaRef(
                "plaintext_sha256 must be 64 lowercase hex digits",
            ));
        }
        let thumbnail_size = self
            .thumbnail
            .as_ref()
            .and_then(|t| t.blob.as_ref())
            .map_or(0, |b| b.size);
        if self.size > Self::MAX_SIZE || thumbnail_size > Self::MAX_SIZE {
            return Err(InvalidMediaRef("size must be at most 1 PiB"));
        }
        if !self.mime.contains('/') {
            return Err(InvalidMediaRef(
                "mime must be a media type such as image/jpeg",
            ));
        }
        if let Some(blob) = self.thumbnail.as_ref().and_then(|t| t.blob.as_ref())
            && !(is_sha256_hex(&blob.blob_id) && is_sha256_hex(&blob.plaintext_sha256))
        {
            return Err(InvalidMediaRef(
                "thumbnail hashes must be 64 lowercase hex digits",
            ));
        }
        Ok(())
    }
}

/// Everything but the key, which must never reach a log.
impl fmt::Debug for MediaRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaRef")
            .field("blob_id", &self.blob_id)
            .field("media_key", &"…")
            .field("plaintext_sha256", &self.plaintext_sha256)
            .field("size", &self.size)
            .field("mime", &self.mime)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ThumbnailBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThumbnailBlob")
            .field("blob_id", &self.blob_id)
            .field("media_key", &"…")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

mod key_b64 {
    use super::{Deserialize, Deserializer, Engine, STANDARD, Serializer};

    pub(super) fn serialize<S: Serializer>(key: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(key))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = STANDARD
            .decode(text.as_bytes())
            .map_err(|_| serde::de::Error::custom("media_key is not standard base64"))?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("media_key must be 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MediaRef {
        MediaRef {
            blob_id: "ab".repeat(32),
            media_key: [7; 32],
            plaintext_sha256: "cd".repeat(32),
            size: 12345,
            mime: "image/jpeg".into(),
            filename: None,
            width: Some(4032),
            height: Some(3024),
            duration_ms: None,
            thumbnail: Some(Thumbnail {
                inline_jpeg: Some("/9j/4AAQ".into()),
                blurhash: Some("LEHV6nWB2yk8pyo0adR*.7kCMdnj".into()),
                blob: None,
            }),
        }
    }

    #[test]
    fn json_round_trips_with_the_key_in_base64() {
        let json = serde_json::to_value(sample()).expect("json");
        assert_eq!(json["media_key"], STANDARD.encode([7u8; 32]));
        assert_eq!(json["size"], 12345);
        assert!(
            json.get("duration_ms").is_none(),
            "absent fields are left out"
        );
        let back: MediaRef = serde_json::from_value(json).expect("parse");
        assert_eq!(back, sample());
        assert_eq!(back.validate(), Ok(()));
    }

    #[test]
    fn bad_keys_hashes_and_unknown_fields_are_refused() {
        let mut json = serde_json::to_value(sample()).expect("json");
        json["media_key"] = STANDARD.encode([1u8; 31]).into();
        assert!(serde_json::from_value::<MediaRef>(json.clone()).is_err());
        json["media_key"] = "not base64!".into();
        assert!(serde_json::from_value::<MediaRef>(json.clone()).is_err());
        let mut json = serde_json::to_value(sample()).expect("json");
        json["extra"] = 1.into();
        assert!(serde_json::from_value::<MediaRef>(json).is_err());
        let mut bad = sample();
        bad.blob_id = "AB".repeat(32);
        assert!(bad.validate().is_err());
        let mut huge = sample();
        huge.size = u64::MAX;
        assert!(
            huge.validate().is_err(),
            "a size no receiver can compute with"
        );
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let text = format!("{:?}", sample());
        assert!(!text.contains(&STANDARD.encode([7u8; 32])) && !text.contains("[7, 7"));
    }
}
