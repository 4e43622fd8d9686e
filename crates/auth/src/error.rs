use sealpost_proto::Problem;

/// Why an account or auth request failed. Each variant has one status and one stable code.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The phone number is not E.164.
    #[error("phone must be E.164: '+' then 7 to 15 digits, no leading zero")]
    InvalidPhone,
    /// The display name is empty, too long or has control characters.
    #[error("name must be 1 to 64 characters without control characters")]
    InvalidName,
    /// The identity key is not a base64 Ed25519 public key.
    #[error("identity_key must be standard base64 of a 32-byte Ed25519 public key")]
    InvalidIdentityKey,
    /// Another account has this phone number.
    #[error("an account with this phone number already exists")]
    PhoneTaken,
    /// The challenge is unknown, used or expired.
    #[error("the challenge is unknown, already used or expired; request a new one")]
    InvalidChallenge,
    /// The signature does not verify against the device's identity key.
    #[error("the signature does not verify against the device's identity key")]
    InvalidSignature,
    /// No bearer token was sent.
    #[error("this endpoint needs an 'Authorization: Bearer <token>' header")]
    MissingToken,
    /// The bearer token is unknown, revoked or expired.
    #[error("the bearer token is invalid, revoked or expired")]
    InvalidToken,
    /// The link code is unknown, used, expired, or for another account.
    #[error("the link code is unknown, already used or expired; make a new one on a linked device")]
    InvalidLinkCode,
    /// The account has as many devices as it may.
    #[error("the account has {0} devices, the most it may have; remove one first")]
    TooManyDevices(u32),
    /// No account has this phone number.
    #[error("no account has this phone number")]
    NoSuchAccount,
    /// No such active device in the account.
    #[error("the account has no such device")]
    NoSuchDevice,
    /// The device may not do this to another device.
    #[error("{0}")]
    DeviceForbidden(&'static str),
    /// Too many attempts from this phone number or address.
    #[error("too many attempts; retry in {0} s")]
    RateLimited(u64),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sealpost_db::DbError),
}

impl AuthError {
    /// HTTP status and stable code.
    pub fn status_code(&self) -> (u16, &'static str) {
        match self {
            Self::InvalidPhone => (400, "invalid-phone"),
            Self::InvalidName => (400, "invalid-name"),
            Self::InvalidIdentityKey => (400, "invalid-identity-key"),
            Self::PhoneTaken => (409, "phone-taken"),
            Self::InvalidChallenge => (401, "invalid-challenge"),
            Self::InvalidSignature => (401, "invalid-signature"),
            Self::MissingToken => (401, "missing-token"),
            Self::InvalidToken => (401, "invalid-token"),
            Self::InvalidLinkCode => (403, "invalid-link-code"),
            Self::TooManyDevices(_) => (409, "too-many-devices"),
            Self::NoSuchDevice => (404, "no-such-device"),
            Self::NoSuchAccount => (404, "no-such-account"),
            Self::DeviceForbidden(_) => (403, "device-forbidden"),
            Self::RateLimited(_) => (429, "rate-limited"),
            Self::Db(_) => (500, "internal"),
        }
    }

    /// The problem body; internal details are logged here and never sent.
    pub fn to_problem(&self) -> Problem {
        let (status, code) = self.status_code();
        if status >= 500 {
            tracing::error!(error = %self, "auth request failed");
            return Problem::new(status, code, "internal error; see server logs");
        }
        Problem::new(status, code, self.to_string())
    }
}

impl axum::response::IntoResponse for AuthError {
    fn into_response(self) -> axum::response::Response {
        let mut response = self.to_problem().into_response();
        let headers = response.headers_mut();
        if let Self::RateLimited(secs) = self {
            headers.insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        if matches!(self, Self::MissingToken | Self::InvalidToken) {
            headers.insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
