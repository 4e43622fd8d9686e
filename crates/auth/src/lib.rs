//! Accounts, login challenges and bearer tokens, plus the axum extractor every authenticated
//! endpoint uses. Identity is the immutable account id, never the phone number.

mod error;
mod extract;
mod limiter;
mod service;
mod validate;

pub use error::AuthError;
pub use extract::{Authenticated, bearer_token};
pub use limiter::{RateLimiter, address_key};
pub use service::{AuthConfig, AuthService, Session, token_hash};
pub use validate::{validate_name, validate_phone};

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Unix seconds as an RFC 3339 UTC time (`2026-01-02T03:04:05Z`).
pub fn rfc3339(unix: i64) -> String {
    let secs = u64::try_from(unix).unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// Whole seconds of a duration as Unix-time arithmetic wants them (saturating).
pub fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}
