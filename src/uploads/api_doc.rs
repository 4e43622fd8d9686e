//! OpenAPI descriptions of the upload protocol headers. Documentation only: the handlers read
//! the raw headers, because both protocols share each route.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The tus protocol version.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub enum TusVersion {
    /// tus 1.0.0.
    #[serde(rename = "1.0.0")]
    V1,
}

/// A structured-field boolean.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub enum SfBoolean {
    /// True.
    #[serde(rename = "?1")]
    True,
    /// False.
    #[serde(rename = "?0")]
    False,
}

/// Raw bytes.
#[derive(Debug, Clone, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BinaryBody(pub Vec<u8>);

/// Selects the protocol: exactly one of the two is sent.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ProtocolHeaders {
    /// `1.0.0` on tus requests; omitted on draft requests.
    #[serde(rename = "Tus-Resumable")]
    #[param(nullable = false, inline)]
    pub tus_resumable: Option<TusVersion>,
    /// `3` to `9` on IETF draft requests (docs/uploads.md has what differs); omitted on tus
    /// requests.
    #[serde(rename = "Upload-Draft-Interop-Version")]
    #[param(nullable = false, minimum = 3, maximum = 9)]
    pub upload_draft_interop_version: Option<u32>,
}

/// Headers of a creation request.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct CreateHeaders {
    /// Total length in bytes, if known.
    #[serde(rename = "Upload-Length")]
    #[param(nullable = false, minimum = 0)]
    pub upload_length: Option<u64>,
    /// tus: `1` when the length is not known yet (instead of `Upload-Length`).
    #[serde(rename = "Upload-Defer-Length")]
    #[param(nullable = false, minimum = 1, maximum = 1)]
    pub upload_defer_length: Option<u8>,
    /// Draft from interop version 4 (required there): `?1` if this request carries the last
    /// byte.
    #[serde(rename = "Upload-Complete")]
    #[param(nullable = false, inline)]
    pub upload_complete: Option<SfBoolean>,
    /// Draft interop version 3 (required there): `?1` if more bytes follow, `?0` if this request
    /// carries the last byte.
    #[serde(rename = "Upload-Incomplete")]
    #[param(nullable = false, inline)]
    pub upload_incomplete: Option<SfBoolean>,
    /// tus concatenation: `partial`, or `final;<url> <url> …` (the partial uploads, in order;
    /// then no `Upload-Length` and no body).
    #[serde(rename = "Upload-Concat")]
    #[param(nullable = false)]
    pub upload_concat: Option<String>,
    /// Comma-separated `key base64(value)` pairs: `filename`, `content_type`, `sha256` (the
    /// SHA-256 of the whole upload, verified on completion: its 32 bytes, or as text its hex or
    /// base64, which is what string-based clients send), `kind` (`encrypted` or `preview`).
    #[serde(rename = "Upload-Metadata")]
    #[param(nullable = false)]
    pub upload_metadata: Option<String>,
    /// `sha1 <base64>` or `sha256 <base64>` over this request's body.
    #[serde(rename = "Upload-Checksum")]
    #[param(nullable = false, pattern = "^(sha1|sha256) [A-Za-z0-9+/]+={0,2}$")]
    pub upload_checksum: Option<String>,
}

/// Headers of an append request.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct AppendHeaders {
    /// Where this body starts: the upload's current offset.
    #[serde(rename = "Upload-Offset")]
    #[param(minimum = 0)]
    pub upload_offset: u64,
    /// Declares a deferred length.
    #[serde(rename = "Upload-Length")]
    #[param(nullable = false, minimum = 0)]
    pub upload_length: Option<u64>,
    /// Draft from interop version 4: `?1` if this request carries the last byte (required from
    /// version 7; before, a missing header means it does).
    #[serde(rename = "Upload-Complete")]
    #[param(nullable = false, inline)]
    pub upload_complete: Option<SfBoolean>,
    /// Draft interop version 3: `?1` if more bytes follow (missing means none do).
    #[serde(rename = "Upload-Incomplete")]
    #[param(nullable = false, inline)]
    pub upload_incomplete: Option<SfBoolean>,
    /// `sha1 <base64>` or `sha256 <base64>` over this body; on mismatch nothing is kept (460).
    #[serde(rename = "Upload-Checksum")]
    #[param(nullable = false, pattern = "^(sha1|sha256) [A-Za-z0-9+/]+={0,2}$")]
    pub upload_checksum: Option<String>,
}
