use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Registers an account with the Ed25519 identity key of its first device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAccount {
    /// Phone number in E.164 form, e.g. `+4915112345678`.
    #[schema(example = "+4915112345678", pattern = r"^\+[1-9][0-9]{6,14}$")]
    pub phone: String,
    /// Display name, 1 to 64 characters.
    #[schema(example = "Ada", min_length = 1, max_length = 64)]
    pub name: String,
    /// The device's Ed25519 public key, standard base64 of the 32 raw bytes.
    #[schema(
        example = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        pattern = "^[A-Za-z0-9+/]{43}=$"
    )]
    pub identity_key: String,
}

/// A registered account. `id` is the immutable identity; the phone number is only a lookup key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Account {
    /// Immutable account id.
    #[schema(example = "4f9c1d2e-8a7b-4c3d-9e0f-1a2b3c4d5e6f")]
    pub id: String,
    /// Phone number in E.164 form.
    pub phone: String,
    /// Display name.
    pub name: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
}

/// Asks for a login challenge for one device of the account registered with `phone`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// Phone number in E.164 form.
    #[schema(example = "+4915112345678", pattern = r"^\+[1-9][0-9]{6,14}$")]
    pub phone: String,
    /// The device that will sign: 1 (the default) for the one the account registered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, example = 1)]
    pub device_id: Option<u32>,
}

/// A single-use login challenge.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChallengeResponse {
    /// Standard base64 of the challenge bytes; the client signs the decoded bytes.
    pub challenge: String,
    /// Expiry time, RFC 3339.
    pub expires_at: String,
}

/// Exchanges a signed challenge for a bearer token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Phone number in E.164 form.
    #[schema(pattern = r"^\+[1-9][0-9]{6,14}$")]
    pub phone: String,
    /// The challenge exactly as returned by `POST /v1/auth/challenge`.
    pub challenge: String,
    /// Standard base64 of the 64-byte Ed25519 signature over the decoded challenge bytes.
    pub signature: String,
}

/// A bearer token for `Authorization: Bearer <token>`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The token; shown once, stored by the server only as a hash.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Expiry time, RFC 3339.
    pub expires_at: String,
    /// The account the token authenticates.
    pub account_id: String,
    /// The device it authenticates.
    pub device_id: u32,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A single-use code that lets a new device join the account of the device that made it.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct LinkCode {
    /// The code, to be carried to the new device (shown as a QR code by apps).
    pub code: String,
    /// Expiry time, RFC 3339.
    pub expires_at: String,
}

impl std::fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkCode")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Links a new device to an account with a code from one of its devices
/// (`POST /v1/devices`).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkDevice {
    /// The account's phone number in E.164 form.
    #[schema(pattern = r"^\+[1-9][0-9]{6,14}$")]
    pub phone: String,
    /// The code from `POST /v1/devices/link-codes`.
    pub code: String,
    /// A name for the device, 1 to 64 characters.
    #[schema(example = "Laptop", min_length = 1, max_length = 64)]
    pub name: String,
    /// The new device's Ed25519 public key, standard base64 of the 32 raw bytes.
    #[schema(pattern = "^[A-Za-z0-9+/]{43}=$")]
    pub identity_key: String,
}

impl std::fmt::Debug for LinkDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkDevice")
            .field("phone", &self.phone)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// One device of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    /// Its number within the account (1: the device the account registered with). Numbers are
    /// never given again after a device is removed.
    pub device_id: u32,
    /// Its name.
    pub name: String,
    /// Its Ed25519 public key, standard base64.
    pub identity_key: String,
    /// When it was added, RFC 3339.
    pub created_at: String,
}

/// An account found by phone number, with the identity keys of its devices (to encrypt for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountKeys {
    /// The account.
    pub account_id: String,
    /// Its devices.
    pub devices: Vec<crate::DeviceKey>,
}
