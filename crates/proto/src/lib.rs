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
    CreateGroup, Group, GroupChange, GroupEnvelope, GroupMember, GroupRole, MemberDevice,
    MemberDeviceKey, SetGroupMember,
};
pub use keys::{
    DeviceKeyBundle, FallbackKey, KeyBundles, KeyStock, OlmIdentity, OneTimeKey, PublishKeys,
    fallback_binding, identity_binding, key_bytes,
};
pub use media::{InvalidMediaRef, MediaRef, Thumbnail, ThumbnailBlob};
pub use message::Plaintext;
pub use problem::{PROBLEM_JSON, Problem};
pub use processing::{MediaState, MediaStatus, Rendition};
pub use uploads::{UploadKind, UploadState, UploadStatus};
