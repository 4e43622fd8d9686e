use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Asks for a signed download link (`POST /v1/blobs/{blob_id}/links`); the body is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// Seconds until the link expires; the server's default when absent, at most its maximum.
    #[schema(minimum = 1, example = 3600)]
    pub expires_in: Option<u64>,
}

/// A signed link to one blob: anyone holding it can `GET` or `HEAD` the blob until it expires.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignedLink {
    /// The link: `/v1/blobs/{blob_id}?expires=UNIX&kid=KEY&sig=HMAC`, absolute when the server
    /// knows its public (or CDN) base URL.
    pub url: String,
    /// Expiry time, RFC 3339.
    pub expires_at: String,
}
