//! The key directory (`/v1/keys`): each device publishes its Olm identity keys, a signed
//! fallback key and one-time keys; a sender claims one one-time key per device of the account
//! it writes to and starts an Olm session with it (docs/e2e.md). Keys are standard base64 of
//! their 32 bytes, with or without padding (vodozemac writes them without).

use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The `N` bytes of a key (32) or signature (64) in the key directory's base64 (standard,
/// padded or not); `None` if it is not that.
pub fn key_bytes<const N: usize>(base64: &str) -> Option<[u8; N]> {
    crate::BASE64
        .decode(base64)
        .ok()
        .and_then(|bytes| <[u8; N]>::try_from(bytes).ok())
}

/// A device's long-term Olm keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OlmIdentity {
    /// The Curve25519 identity key (sessions are made with it).
    pub curve25519: String,
    /// The Ed25519 key that signs the fallback key.
    pub ed25519: String,
}

/// A one-time key: used for one Olm session, then gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OneTimeKey {
    /// The device's id for it, 1 to 64 characters.
    pub key_id: String,
    /// The Curve25519 public key.
    pub key: String,
}

/// The key a sender uses when a device has no one-time key left, signed by the device's Olm
/// Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FallbackKey {
    /// The device's id for it, 1 to 64 characters.
    pub key_id: String,
    /// The Curve25519 public key.
    pub key: String,
    /// Ed25519 signature (standard base64) by `identity.ed25519` over the UTF-8 of
    /// `sealpost-fallback-key-v1:{key_id}:{key}`.
    pub signature: String,
}

/// What a device publishes (`PUT /v1/keys`). The identity is fixed once published; a fallback
/// key replaces the one before; one-time keys are added to those the server holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishKeys {
    /// The device's Olm identity keys.
    pub identity: OlmIdentity,
    /// Ed25519 signature (standard base64) by the device's login key (the identity key it
    /// registered or was linked with) over the UTF-8 of
    /// `sealpost-olm-identity-v1:{account_id}:{device_id}:{curve25519}:{ed25519}`: binds the
    /// Olm keys to the device.
    pub identity_signature: String,
    /// A new fallback key.
    #[serde(default)]
    pub fallback_key: Option<FallbackKey>,
    /// One-time keys to add.
    #[serde(default)]
    pub one_time_keys: Vec<OneTimeKey>,
}

/// What the server holds for a device after a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyStock {
    /// One-time keys not yet claimed.
    pub one_time_keys: u64,
    /// Whether a fallback key is published.
    pub fallback_key: bool,
}

/// One device's keys as a sender gets them, with a one-time key claimed for the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceKeyBundle {
    /// The device's number.
    pub device_id: u32,
    /// The device's Ed25519 login key (as `GET /v1/devices` shows it), standard base64.
    pub login_key: String,
    /// The device's Olm identity keys.
    pub identity: OlmIdentity,
    /// The login key's signature over the identity (see `PublishKeys`).
    pub identity_signature: String,
    /// A one-time key claimed for this sender; absent when the device has none left (use the
    /// fallback key).
    pub one_time_key: Option<OneTimeKey>,
    /// The device's fallback key.
    pub fallback_key: Option<FallbackKey>,
}

/// The keys of an account's devices (`GET /v1/keys/{account_id}`); devices that have not
/// published keys are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyBundles {
    /// The account.
    pub account_id: String,
    /// Its devices with published keys, by number.
    pub devices: Vec<DeviceKeyBundle>,
}

/// The message the login key signs to bind a device's Olm identity to it.
pub fn identity_binding(account_id: &str, device_id: u32, identity: &OlmIdentity) -> String {
    format!(
        "sealpost-olm-identity-v1:{account_id}:{device_id}:{}:{}",
        identity.curve25519, identity.ed25519
    )
}

/// The message the Olm Ed25519 key signs for a fallback key.
pub fn fallback_binding(key_id: &str, key: &str) -> String {
    format!("sealpost-fallback-key-v1:{key_id}:{key}")
}
