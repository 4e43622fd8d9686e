//! Wire types shared by the Sealpost server and its clients: request and response bodies,
//! problem details, upload and media-processing status, and the `MediaRef` an encrypted
//! message carries. Pure data (serde + utoipa schemas), no I/O.

mod accounts;
mod blobs;
mod chat;
mod groups;
mod keys;
mod media;
mod message;
mod problem;
mod processing;
mod uploads;

pub use accounts::{
    Account, AccountKeys, ChallengeRequest, ChallengeResponse, Device, LinkCode, LinkDevice,
    RegisterAccount, TokenRequest, TokenResponse,
};
pub use blobs::{LinkRequest, SignedLink};
pub use chat::{ClientFrame, DeviceKey, Envelope, ReceiptStatus, Sender, ServerFrame, TypingState};
pub use groups::{
    CreateGroup, Group, GroupAdds, GroupChange, GroupEnvelope, GroupMember, GroupRole,
    MemberDevice, MemberDeviceKey, Privacy, SetGroupMember,
};
pub use keys::{
    DeviceKeyBundle, FallbackKey, KeyBundles, KeyStock, OlmIdentity, OneTimeKey, PublishKeys,
    fallback_binding, identity_binding, key_bytes,
};
pub use media::{InvalidMediaRef, MediaRef, Thumbnail, ThumbnailBlob};
pub use message::Plaintext;
pub use problem::{PROBLEM_JSON, Problem};
pub use processing::{MediaState, MediaStatus, Rendition};
pub use uploads::{StoredUsage, UnfinishedUsage, UploadKind, UploadState, UploadStatus, Usage};

use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Standard base64 as Sealpost reads what another implementation may have written (keys,
/// signatures, envelope and Olm bodies): with or without padding, since libolm and vodozemac
/// write none. Sealpost itself writes it padded.
pub const BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[cfg(test)]
mod tests {
    use base64::Engine;

    #[test]
    fn base64_is_read_with_or_without_padding() {
        for text in ["YWJjZA==", "YWJjZA"] {
            assert_eq!(
                super::BASE64.decode(text).ok().as_deref(),
                Some(&b"abcd"[..])
            );
        }
        assert_eq!(super::BASE64.encode(b"abcd"), "YWJjZA==", "written padded");
        assert!(super::BASE64.decode("YWJj!A").is_err());
    }
}
